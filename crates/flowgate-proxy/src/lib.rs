//! Data plane: the OpenAI- and Anthropic-compatible API. Authenticates virtual keys, applies
//! limits and guardrails, routes to a deployment and streams the answer back in the caller's
//! format.

pub mod peers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use flowgate_common::Settings;
use flowgate_common::metrics::Metrics;
use flowgate_common::server::{BaseState, ReadinessCheck, ServiceHost};
use flowgate_db::SharedState;
use tokio_util::sync::CancellationToken;

use crate::peers::{CompliancePeer, KeysPeer, PeerCheck, PolicyPeer};

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
}

/// What the proxy needs from the process.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// Rate-limit windows, spend reservations, caches: Redis or in process.
    pub shared: SharedState,
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
}

impl Application {
    /// Binds the port and builds the routes.
    pub async fn build(settings: &Settings, deps: Dependencies) -> Result<Self, InitError> {
        let checks: Vec<Arc<dyn ReadinessCheck>> = vec![
            Arc::new(deps.shared.clone()),
            Arc::new(PeerCheck::new("api-server", &deps.keys)),
            Arc::new(PeerCheck::new("compliance", &deps.compliance)),
            Arc::new(PeerCheck::new("policy", &deps.policy)),
        ];
        let base = BaseState { service: SERVICE, metrics: deps.metrics.clone(), checks: Arc::new(checks) };
        let router = Router::new();
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
        Ok(Self { host })
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
