//! The proxy's shared state, built once at start and cloned (cheaply) into every handler. Its
//! parts are private; stages reach them through small accessors, and `forward` gets only the
//! routing table and the [`Upstream`] handle.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use flowgate_common::tasks::Tasks;

use crate::audit::AuditSink;
use crate::auth::Authenticator;
use crate::cache::ResponseCache;
use crate::conversations::Conversations;
use crate::guardrails::{Catalog, Services};
use crate::limits::Limiter;
use crate::metrics::ProxyMetrics;
use crate::routing::{HealthRegistry, RoutingTable};

/// What the forward stage needs besides the routing table: the pooled HTTP client and the
/// upstream metrics.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    /// Pooled upstream HTTP client.
    pub(crate) http: reqwest::Client,
    /// Pooled client for OpenAI-compatible, Azure and Anthropic deployments.
    pub(crate) direct: crate::upstream::DirectClient,
    /// Metric families (attempts, latency, cooldowns, fallbacks).
    pub(crate) metrics: ProxyMetrics,
    /// Shared state, for deployment rpm / tpm counted across replicas.
    pub(crate) limiter: Limiter,
}

/// Request-shape limits.
#[derive(Debug, Clone)]
pub(crate) struct RequestLimits {
    /// Largest accepted request body.
    pub(crate) max_body_bytes: usize,
    /// Longest a stream may last.
    pub(crate) stream_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub(crate) trusted_proxies: Vec<(IpAddr, u8)>,
    /// The edge pre-filter's shared secret: a request carrying it has its client-IP and
    /// request-id headers believed.
    pub(crate) edge_token: Option<secrecy::SecretString>,
    /// Most answers (`n`, `best_of`) one request may ask for.
    pub(crate) max_n: u64,
    /// Refuse unpriced models to keys under a budget (`budgets.unpriced: deny`).
    pub(crate) deny_unpriced: bool,
}

/// The parts the state is built from.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) tasks: Tasks,
    pub(crate) table: RoutingTable,
    pub(crate) health: HealthRegistry,
    pub(crate) upstream: Upstream,
    pub(crate) auth: Authenticator,
    pub(crate) catalog: Catalog,
    pub(crate) guard: Services,
    pub(crate) audit: AuditSink,
    pub(crate) limiter: Limiter,
    pub(crate) cache: ResponseCache,
    pub(crate) conversations: Conversations,
    pub(crate) limits: RequestLimits,
}

#[derive(Debug)]
struct Inner {
    /// Background work under supervision.
    tasks: Tasks,
    /// The routing table; swapped whole when deployments change.
    table: ArcSwap<RoutingTable>,
    /// Deployment health, kept across table swaps.
    health: HealthRegistry,
    upstream: Upstream,
    auth: Authenticator,
    catalog: Catalog,
    guard: Services,
    audit: AuditSink,
    limiter: Limiter,
    cache: ResponseCache,
    conversations: Conversations,
    limits: RequestLimits,
}

/// Cheap-to-clone handle on the proxy's state.
#[derive(Debug, Clone)]
pub(crate) struct ProxyState(Arc<Inner>);

impl ProxyState {
    /// The state made of `parts`.
    pub(crate) fn new(parts: Parts) -> Self {
        let Parts {
            tasks,
            table,
            health,
            upstream,
            auth,
            catalog,
            guard,
            audit,
            limiter,
            cache,
            conversations,
            limits,
        } = parts;
        Self(Arc::new(Inner {
            tasks,
            table: ArcSwap::from_pointee(table),
            health,
            upstream,
            auth,
            catalog,
            guard,
            audit,
            limiter,
            cache,
            conversations,
            limits,
        }))
    }

    /// Background work under supervision.
    pub(crate) fn tasks(&self) -> &Tasks {
        &self.0.tasks
    }

    /// The current routing table.
    pub(crate) fn table(&self) -> Arc<RoutingTable> {
        self.0.table.load_full()
    }

    /// Replaces the routing table, keeping deployment health.
    pub(crate) fn swap_table(&self, build: impl FnOnce(&HealthRegistry) -> RoutingTable) {
        self.0.table.store(Arc::new(build(&self.0.health)));
    }

    /// The upstream client and metrics.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.0.upstream
    }

    /// Metric families.
    pub(crate) fn metrics(&self) -> &ProxyMetrics {
        &self.0.upstream.metrics
    }

    /// Virtual-key authentication.
    pub(crate) fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    /// The guardrail catalog.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }

    /// What the guardrail stage calls (compliance, policy, HTTP guardrails).
    pub(crate) fn guard(&self) -> &Services {
        &self.0.guard
    }

    /// The audit trail.
    pub(crate) fn audit(&self) -> &AuditSink {
        &self.0.audit
    }

    /// Rate limits and budgets.
    pub(crate) fn limiter(&self) -> &Limiter {
        &self.0.limiter
    }

    /// The exact-match response cache.
    pub(crate) fn cache(&self) -> &ResponseCache {
        &self.0.cache
    }

    /// The Responses API's conversation state.
    pub(crate) fn conversations(&self) -> &Conversations {
        &self.0.conversations
    }

    /// Request-shape limits.
    pub(crate) fn limits(&self) -> &RequestLimits {
        &self.0.limits
    }
}
