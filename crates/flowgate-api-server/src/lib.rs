//! Management plane: the admin HTTP API (keys, tenants, guardrails, policies, routing, audit,
//! analytics) and the gRPC key-resolution service the proxies call on a cache miss.
//!
//! # Layout
//! - [`routes`]: the route table (shared with the OpenAPI test) and the admin-key layer; a leaf
//!   that only maps paths to handlers. `state`: `AppState`; `events`: publications on
//!   `keys:invalidate`, `guardrails:changed`, `policies:changed` after a committed change.
//! - One folder per resource, each with `handlers` (thin: validate, call the store, publish,
//!   answer), `model` (request and response documents and their validation) and `store` (its
//!   SQL, as functions over `Database`; handlers never run a statement): `keys`, `tenants`,
//!   `guardrails` (+ `schema`: each built-in kind's `runtime_config` schema, the schema check and
//!   the built-ins seeded at start), `policies` (rule sets checked by
//!   `flowgate_contracts::rules`), `audit` (the trail query and its streamed CSV/NDJSON export),
//!   `analytics` (spend and provider performance over the trail), `routing` (deployments at
//!   run time, the file's read-only, with the proxies' live view), `credentials` (provider keys
//!   sealed by `flowgate_db::credentials`, write-only), `a2a` (the A2A agents registered at run
//!   time, their headers sealed), `mcp_servers` (the upstream MCP servers registered at run
//!   time, likewise).
//! - `fields`: conventions every document shares (money, timestamps, PATCH nulls, paging);
//!   `sql`: the data-access helpers every store uses (numbered placeholders, `UPDATE`s from
//!   changes, keyset pages); `extract`: JSON and query extractors whose rejections are 400s;
//!   [`ApiError`]: every failure and its one mapping to HTTP.
//! - Shared facts (channel names, guardrail kinds and policy, rule-set schema, audit record)
//!   come from `flowgate_contracts`.
//! - `access`: roles, the gate on every management route (admin key, user API tokens, session
//!   cookie with CSRF token; role and tenant scope), sign-in and users; `admin_audit`: the log of
//!   every management action (`/api/admin/audit`).
//! - `portal`: the web portal at `/ui`, server-rendered pages that call the management API
//!   through the gate with the browser's session.
//! - `health`: the comprehensive health check and the cache statistics.
//! - `grpc`: `KeyService::ResolveKey` for the proxies (typed guardrail policy, or marked
//!   unreadable).

mod a2a;
mod access;
mod admin_audit;
mod alerts;
mod analytics;
mod audit;
mod credentials;
mod error;
mod events;
mod extract;
mod fields;
mod grpc;
mod guardrails;
mod health;
mod keys;
mod mcp_servers;
mod metacache;
mod policies;
mod portal;
pub mod routes;
mod routing;
mod sql;
mod state;
mod targets;
mod tenants;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use flowgate_common::Settings;
use flowgate_common::metrics::Metrics;
use flowgate_common::secretbox::{A2A_HEADERS_CONTEXT, GUARDRAIL_TOKEN_CONTEXT, MCP_HEADERS_CONTEXT, SealKey};
use flowgate_common::server::{BaseState, ReadinessCheck, ServiceHost, grpc_routes};
use flowgate_db::Database;
use flowgate_proto::keys::key_service_server::KeyServiceServer;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

pub use crate::error::ApiError;
pub use crate::grpc::KeyResolver;
pub use crate::keys::KeyWithSecret;
pub use crate::keys::{Bootstrap, bootstrap};

/// Service name used in logs, metrics and the `x-flowgate-service` header.
pub const SERVICE: &str = "api-server";

/// Why the service could not start.
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
    /// The built-in guardrails could not be written to the catalog.
    #[error("cannot seed the built-in guardrails: {0}")]
    Seed(flowgate_db::sqlx::Error),
    /// The HTTP client for health checks could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// The stored provider credentials cannot be opened with the configured key-encryption key.
    #[error("{0}")]
    Credentials(flowgate_db::credentials::CredentialError),
}

/// What the api-server needs from the process.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// The SQL store (migrated).
    pub database: Database,
    /// Shared state: key-invalidation messages to the proxies go out through it.
    pub shared: flowgate_db::SharedState,
    /// Keyed hash of virtual keys (the same secret as the proxies'). Also derives the key that
    /// seals HTTP guardrail tokens ([`flowgate_common::secretbox::GUARDRAIL_TOKEN_CONTEXT`]).
    pub hasher: flowgate_common::keys::KeyHasher,
    /// Admin bearer token for the management API.
    pub admin_key: Arc<SecretString>,
    /// Every gRPC call but the health service's must carry it.
    pub internal_token: flowgate_common::internal::InternalToken,
    /// Process metrics.
    pub metrics: Metrics,
}

/// The api-server, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    host: ServiceHost,
    resolver: KeyResolver,
}

impl Application {
    /// Seeds the built-in guardrails (idempotent), binds the port and builds the HTTP and gRPC
    /// routes. The other services' addresses for `/api/health/comprehensive` come from
    /// `settings` (see `HealthTargets::from_settings` in the `health` module).
    pub async fn build(settings: &Settings, deps: Dependencies) -> Result<Self, InitError> {
        let seeded = guardrails::store::seed_builtins(&deps.database).await.map_err(InitError::Seed)?;
        if seeded > 0 {
            tracing::info!(seeded, "built-in guardrails added to the catalog");
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| InitError::HttpClient(error.to_string()))?;
        let keyring = flowgate_db::credentials::keyring_from_settings(&settings.credentials)
            .map_err(InitError::Credentials)?
            .map(Arc::new);
        // A wrong key-encryption key stops the start here, before anything is served.
        let sealed = flowgate_db::credentials::check(&deps.database, keyring.as_deref())
            .await
            .map_err(InitError::Credentials)?;
        if let Some(keyring) = &keyring {
            tracing::info!(kek = %keyring.current().key_id(), credentials = sealed, "provider credentials can be opened");
        }
        let resolver = KeyResolver::new(deps.database.clone());
        let (grpc, grpc_health) = grpc_routes(
            tonic::service::Routes::new(KeyServiceServer::new(resolver.clone())),
            &[<KeyServiceServer<KeyResolver> as tonic::server::NamedService>::NAME],
            &deps.internal_token,
        )
        .await;
        let state = state::AppState {
            database: deps.database.clone(),
            shared: deps.shared.clone(),
            seal_key: Arc::new(SealKey::from_hasher(&deps.hasher, GUARDRAIL_TOKEN_CONTEXT)),
            a2a_seal_key: Arc::new(SealKey::from_hasher(&deps.hasher, A2A_HEADERS_CONTEXT)),
            config_agents: Arc::new(settings.a2a_agents.keys().cloned().collect()),
            mcp_seal_key: Arc::new(SealKey::from_hasher(&deps.hasher, MCP_HEADERS_CONTEXT)),
            config_mcp_servers: Arc::new(settings.mcp_servers.keys().cloned().collect()),
            admin_key: deps.admin_key.clone(),
            hasher: deps.hasher.clone(),
            http: http.clone(),
            targets: Arc::new(health::HealthTargets::from_settings(settings)),
            file_deployments: Arc::new(routing::FileDeployments::new(&settings.model_list)),
            keyring,
            archive: audit::archived::Archive::from_settings(settings)
                .map_err(|error| InitError::HttpClient(format!("audit archive: {error}")))?
                .map(Arc::new),
            session_ttl_secs: settings.api_server.session_ttl_secs,
            secure_cookies: settings.api_server.secure_cookies,
            oidc: access::oidc::Oidc::from_settings(&settings.api_server.oidc, http.clone()).map(Arc::new),
        };
        let router = Router::new().merge(grpc).merge(routes::router(state));
        let checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(deps.database.clone())];
        let base = BaseState { service: SERVICE, metrics: deps.metrics, checks: Arc::new(checks), details: None };
        let port = settings.api_server.port;
        let host = ServiceHost::bind(
            base,
            &settings.server.host,
            port,
            router,
            Duration::from_secs(settings.server.shutdown_grace_secs),
        )
        .await
        .map_err(|source| InitError::Bind { service: SERVICE, port, source })?
        .with_grpc_health(grpc_health);
        Ok(Self { host, resolver })
    }

    /// The key resolver, for `all` mode to hand to the proxy without a network hop.
    pub fn key_resolver(&self) -> KeyResolver {
        self.resolver.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.host.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}
