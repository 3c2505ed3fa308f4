//! The proxy's shared state, built once at start and cloned (cheaply) into every handler.

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::metrics::ProxyMetrics;
use crate::routing::{HealthRegistry, RoutingTable};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Inner {
    /// The routing table; swapped whole when deployments change.
    pub table: ArcSwap<RoutingTable>,
    /// Deployment health, kept across table swaps.
    pub health: HealthRegistry,
    /// Pooled upstream HTTP client.
    pub http: reqwest::Client,
    /// Virtual-key authentication.
    pub auth: Authenticator,
    /// The guardrail catalog.
    pub catalog: crate::guardrails::Catalog,
    /// What the guardrail stage calls (compliance, policy, HTTP guardrails).
    pub guard: crate::guardrails::Services,
    /// The audit trail.
    pub audit: crate::audit::AuditSink,
    /// Rate limits and budgets.
    pub limiter: crate::limits::Limiter,
    /// The exact-match response cache.
    pub cache: crate::cache::ResponseCache,
    /// Metric families.
    pub metrics: ProxyMetrics,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest a stream may last.
    pub stream_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<(IpAddr, u8)>,
}

/// Cheap-to-clone handle on [`Inner`].
#[derive(Debug, Clone)]
pub struct ProxyState(pub Arc<Inner>);

impl Deref for ProxyState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
