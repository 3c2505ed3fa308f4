//! Management plane: the admin HTTP API (keys, tenants, guardrails, policies, routing, audit,
//! analytics) and the gRPC key-resolution service the proxies call on a cache miss.
//!
//! # Layout
//! - [`routes`]: the route table (shared with the OpenAPI test), the admin-key layer, and the
//!   `keys:invalidate` publication.
//! - `keys`, `tenants`: thin handlers; `store`: their SQL; `model`: request and response
//!   documents and validation; `extract`: JSON and query extractors whose rejections are 400s;
//!   [`ApiError`]: every failure and its one mapping to HTTP.
//! - `grpc`: `KeyService::ResolveKey` for the proxies.

mod error;
mod extract;
mod grpc;
mod keys;
mod model;
pub mod routes;
mod store;
mod tenants;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use flowgate_common::Settings;
use flowgate_common::metrics::Metrics;
use flowgate_common::server::{BaseState, ReadinessCheck, ServiceHost, grpc_routes};
use flowgate_db::Database;
use flowgate_proto::keys::key_service_server::KeyServiceServer;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

pub use crate::error::ApiError;
pub use crate::grpc::KeyResolver;
pub use crate::keys::{Bootstrap, bootstrap};
pub use crate::model::KeyWithSecret;

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
}

/// What the api-server needs from the process.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// The SQL store (migrated).
    pub database: Database,
    /// Shared state: key-invalidation messages to the proxies go out through it.
    pub shared: flowgate_db::SharedState,
    /// Keyed hash of virtual keys (the same secret as the proxies').
    pub hasher: flowgate_common::keys::KeyHasher,
    /// Admin bearer token for the management API.
    pub admin_key: Arc<SecretString>,
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
    /// Binds the port and builds the HTTP and gRPC routes.
    pub async fn build(settings: &Settings, deps: Dependencies) -> Result<Self, InitError> {
        let resolver = KeyResolver::new(deps.database.clone());
        let grpc = grpc_routes(
            tonic::service::Routes::new(KeyServiceServer::new(resolver.clone())),
            &[<KeyServiceServer<KeyResolver> as tonic::server::NamedService>::NAME],
        )
        .await;
        let state = routes::AppState {
            database: deps.database.clone(),
            shared: deps.shared.clone(),
            hasher: deps.hasher.clone(),
        };
        let router = Router::new().merge(grpc).merge(routes::router(state, deps.admin_key.clone()));
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
        .map_err(|source| InitError::Bind { service: SERVICE, port, source })?;
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
