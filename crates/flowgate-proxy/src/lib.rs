//! Data plane: the OpenAI- and Anthropic-compatible API. Authenticates virtual keys, routes to a
//! deployment with retries, fallbacks and cooldowns, translates between the two API formats (tool
//! calls and streams included) and streams answers back without buffering.
//!
//! # Layout
//! - `pipeline`: the routes and the request pipeline, one module per stage (read `pipeline/mod.rs`
//!   top to bottom to follow a request); `context`: one request's context and its audit guard.
//! - `translate`: one codec per wire format (`openai`, `anthropic`) and the hub translation.
//! - `auth`: virtual keys (cache, invalidation, IP allowlists); `limits`: rate limits and budgets;
//!   `guardrails`: the guardrail stage's catalog, plan, scans and stream guard; `cache`: the
//!   exact-match response cache; `audit`: the audit writer.
//! - `forward` and `routing`: deployment choice, retries, fallbacks, health, prices.
//! - `upstream`: provider calls, and (`upstream/providers.rs`) the providers with a wire format of
//!   their own (Gemini, Bedrock, Vertex AI); [`aws`]: SigV4 and the event-stream framing;
//!   `google_auth`: service-account tokens; [`mock`]: the built-in `mock` provider; [`mock_server`]: the same
//!   answers over HTTP.
//! - `mcp`: the MCP gateway at `/api/mcp` (when `mcp.enabled`): upstream MCP servers' tools
//!   aggregated, per-key tool permissions, audit, the tool-call cache; `a2a`: A2A agent routing
//!   at `/a2a/{agent}` and the agent cards (also when `mcp.enabled`).
//! - Leaves: `wire` (endpoint, usage, clock), `rate_headers`, `sse`, `error`, `aws`, `google_auth`.

mod a2a;
mod audit;
mod auth;
pub mod aws;
mod cache;
mod context;
mod conversations;
mod error;
mod forward;
#[cfg(test)]
mod fuzz;
mod google_auth;
mod guardrails;
mod limits;
mod mcp;
mod metrics;
pub mod mock;
pub mod mock_server;
pub mod peers;
mod pipeline;
mod rate_headers;
mod routing;
mod semantic;
mod sse;
mod state;
mod translate;
mod upstream;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use flowgate_common::Settings;
use flowgate_common::metrics::Metrics;
use flowgate_common::server::{BaseState, ReadinessCheck, ServiceHost};
use flowgate_common::tasks::Tasks;
use flowgate_db::SharedState;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::metrics::ProxyMetrics;
use crate::peers::{CompliancePeer, KeysPeer, PeerCheck, PolicyPeer};
use crate::routing::{HealthRegistry, RoutingTable};
use crate::state::{Parts, ProxyState, RequestLimits, Upstream};

/// Service name used in logs, metrics and the `x-flowgate-service` header.
pub const SERVICE: &str = "proxy";

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The port could not be bound.
    #[error("cannot bind {service} on port {port}: {source}")]
    Bind {
        /// Which service.
        service: &'static str,
        /// The port asked.
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The upstream HTTP client could not be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    HttpClient(String),
    /// The response cache could not start (the semantic cache's model).
    #[error("cannot start the response cache: {0}")]
    Cache(String),
    /// An upstream MCP server could not be set up.
    #[error("cannot start the MCP gateway: {0}")]
    Mcp(String),
    /// The stored provider credentials cannot be opened with the configured key-encryption key.
    #[error("{0}")]
    Credentials(flowgate_db::credentials::CredentialError),
}

/// What the proxy needs from the process.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// Rate-limit windows, spend reservations, caches: Redis or in process.
    pub shared: SharedState,
    /// The SQL store: settled spend is persisted here.
    pub database: flowgate_db::Database,
    /// Key resolution.
    pub keys: KeysPeer,
    /// Keyed hash of virtual keys (the same secret as the api-server's).
    pub hasher: flowgate_common::keys::KeyHasher,
    /// Content scanning.
    pub compliance: CompliancePeer,
    /// Rule-set evaluation.
    pub policy: PolicyPeer,
    /// Process metrics.
    pub metrics: Metrics,
}

/// The proxy, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    host: ServiceHost,
    state: ProxyState,
}

/// The data-plane routes under one prefix (`/v1`, `/oai/v1`, `/cursor/v1`).
fn openai_routes() -> Router<ProxyState> {
    Router::new()
        .route("/chat/completions", post(pipeline::chat_completions))
        .route("/completions", post(pipeline::completions))
        .route("/responses", post(pipeline::responses).get(pipeline::responses_websocket))
        .route("/responses/{id}", get(pipeline::get_response).delete(pipeline::delete_response))
        .route("/responses/{id}/input_items", get(pipeline::response_input_items))
        .route("/embeddings", post(pipeline::embeddings))
        .route("/models", get(pipeline::list_models_openai))
        .route("/guardrails", get(pipeline::list_guardrails))
        .fallback(pipeline::unknown_route)
        .method_not_allowed_fallback(pipeline::method_not_allowed)
}

/// The Anthropic routes, under `/anthropic`: errors here, unknown paths included, are Anthropic's.
fn anthropic_routes() -> Router<ProxyState> {
    Router::new()
        .route("/v1/messages", post(pipeline::anthropic_messages))
        .route("/v1/messages/count_tokens", post(pipeline::anthropic_count_tokens))
        .route("/v1/models", get(pipeline::list_models_anthropic))
        .fallback(pipeline::unknown_route)
        .method_not_allowed_fallback(pipeline::method_not_allowed)
}

/// `/health` summary of the deployments: counts by state, and each deployment's state.
fn provider_summary(state: &ProxyState) -> serde_json::Value {
    let table = state.table();
    let mut healthy = 0;
    let mut cooling = 0;
    let deployments: Vec<serde_json::Value> = table
        .deployments()
        .map(|d| {
            let (requests, errors) = d.stats.totals();
            let status = if let Some(left) = d.stats.cooldown_remaining() {
                cooling += 1;
                serde_json::json!({"state": "cooling_down", "seconds_left": left.as_secs()})
            } else {
                healthy += 1;
                serde_json::json!({"state": "healthy"})
            };
            serde_json::json!({
                "id": d.id, "model": d.model_name, "provider": d.provider.as_str(),
                "status": status, "requests": requests, "errors": errors,
                "latency_ms": d.stats.latency().map(|l| l.as_secs_f64() * 1000.0),
            })
        })
        .collect();
    // Models whose requests would cost $0 (no configured or built-in price); a warning was logged.
    let mut unpriced: Vec<&str> = table.unpriced_deployments().map(|d| d.model_name.as_str()).collect();
    unpriced.dedup();
    serde_json::json!({
        "providers": {"healthy": healthy, "cooling_down": cooling, "deployments": deployments},
        "unpriced_models": unpriced,
    })
}

impl Application {
    /// Binds the port and builds the routes.
    pub async fn build(settings: &Settings, deps: Dependencies) -> Result<Self, InitError> {
        let health = HealthRegistry::default();
        // The file's deployments and those written through /api/routing, with their credentials.
        let source = routing::live::Source::new(settings, deps.database.clone()).map_err(InitError::Credentials)?;
        let (table, revision) = match source.first_load(Duration::from_secs(3)).await.map_err(InitError::Credentials)? {
            Some(loaded) => {
                health.keep(&loaded.versions);
                (RoutingTable::build(&loaded.settings, &health), loaded.revision)
            }
            None => (RoutingTable::build(settings, &health), -1),
        };
        table.warn_unpriced();
        let http = upstream::http_client().map_err(|e| InitError::HttpClient(e.to_string()))?;
        let direct = upstream::direct_client().map_err(|e| InitError::HttpClient(e.to_string()))?;
        // Background work (catalog reloads, key invalidation, the spend and audit writers, prompt
        // redaction) runs under supervision; a writer that died makes `/readyz` fail.
        let tasks = Tasks::default();
        let limiter = crate::limits::Limiter::new(
            deps.shared.clone(),
            deps.database.clone(),
            settings.limits.requests_per_hour,
            &deps.metrics,
            &tasks,
            // A reservation never given back outlives the longest request it can belong to.
            crate::limits::RESERVATION_TTL
                .max(Duration::from_secs(settings.proxy.stream_timeout_secs) + Duration::from_secs(60)),
        );
        let state = ProxyState::new(Parts {
            tasks: tasks.clone(),
            table,
            health,
            upstream: Upstream {
                http: http.clone(),
                direct,
                metrics: ProxyMetrics::register(&deps.metrics),
                limiter: limiter.clone(),
            },
            auth: Authenticator::new(deps.hasher.clone(), deps.keys.clone(), &deps.shared, &tasks),
            catalog: crate::guardrails::Catalog::start(deps.database.clone(), &deps.shared, &deps.hasher, &tasks),
            guard: crate::guardrails::Services {
                compliance: deps.compliance.clone(),
                policy: deps.policy.clone(),
                http: http.clone(),
                timeout: Duration::from_secs(settings.compliance.timeout_secs),
            },
            audit: crate::audit::AuditSink::start(
                deps.database.clone(),
                settings.storage.data_dir.join("audit-spool"),
                settings.audit.enabled,
                &deps.metrics,
                &tasks,
            ),
            limiter: limiter.clone(),
            cache: crate::cache::ResponseCache::new(&settings.cache, &deps.shared, &deps.metrics, &tasks)
                .map_err(|e| InitError::Cache(e.to_string()))?,
            conversations: crate::conversations::Conversations::new(
                deps.database.clone(),
                &deps.hasher,
                settings.responses.retention_hours,
                &tasks,
            ),
            limits: RequestLimits {
                max_body_bytes: settings.proxy.max_body_bytes,
                stream_timeout: Duration::from_secs(settings.proxy.stream_timeout_secs),
                trusted_proxies: settings.proxy.trusted_proxies.iter().map(|c| (c.addr(), c.prefix_len())).collect(),
                edge_token: settings.proxy.edge_token().cloned(),
                max_n: u64::from(settings.limits.max_n),
                deny_unpriced: settings.budgets.unpriced == flowgate_common::settings::UnpricedModels::Deny,
            },
        });
        routing::live::Follower::start(
            source,
            state.clone(),
            deps.shared.clone(),
            revision,
            Duration::from_millis(settings.routing.refresh_ms),
            &tasks,
        );
        let checks: Vec<Arc<dyn ReadinessCheck>> = vec![
            Arc::new(deps.shared.clone()),
            Arc::new(tasks),
            Arc::new(PeerCheck::new("api-server", &deps.keys)),
            Arc::new(PeerCheck::new("compliance", &deps.compliance)),
            Arc::new(PeerCheck::new("policy", &deps.policy)),
        ];
        let summary_state = state.clone();
        let base = BaseState {
            service: SERVICE,
            metrics: deps.metrics.clone(),
            checks: Arc::new(checks),
            details: Some(Arc::new(move || provider_summary(&summary_state))),
        };
        let router = Router::new()
            .nest("/v1", openai_routes())
            .nest("/oai/v1", openai_routes())
            .nest("/cursor/v1", openai_routes())
            .nest("/anthropic", anthropic_routes())
            .route("/chat/completions", post(pipeline::chat_completions))
            .method_not_allowed_fallback(pipeline::method_not_allowed)
            .with_state(state.clone());
        let router = if settings.mcp.enabled {
            let mcp = mcp::router(state.clone(), settings, http.clone(), &deps).map_err(InitError::Mcp)?;
            let a2a = a2a::router(state.clone(), settings, http.clone(), &deps).map_err(InitError::Mcp)?;
            router.merge(mcp).merge(a2a)
        } else {
            router
        };
        let port = settings.proxy.port;
        let host = ServiceHost::bind(
            base,
            &settings.server.host,
            port,
            router,
            Duration::from_secs(settings.server.shutdown_grace_secs),
        )
        .await
        .map_err(|source| InitError::Bind { service: SERVICE, port, source })?;
        Ok(Self { host, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.host.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let result = self.host.run_until_stopped(shutdown).await;
        // Requests have drained: write the spend they settled and their audit records.
        self.state.limiter().flush().await;
        self.state.audit().flush().await;
        result
    }
}
