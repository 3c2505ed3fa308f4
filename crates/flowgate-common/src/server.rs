//! The HTTP/gRPC surface every service shares.
//!
//! Each service serves one TCP port. HTTP/1.1 and HTTP/2 (including h2c prior knowledge, which is
//! what gRPC clients speak) are accepted on the same socket: gRPC requests are routed by path
//! (`/flowgate.keys.v1.KeyService/...`, `/grpc.health.v1.Health/...`) and everything else is plain
//! HTTP. One port per service keeps Caddy, Compose and Kubernetes wiring simple.
//!
//! Layer order, outermost first: service header → metrics → the service's routes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{HttpLabels, Metrics};

/// Header set on every response so operators (and the Caddy routing test) can tell which service
/// answered.
pub const SERVICE_HEADER: &str = "x-flowgate-service";

/// One dependency a service needs to be ready: the database, Redis, a gRPC peer.
#[async_trait::async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// Short name shown in `/readyz` (`database`, `redis`, `compliance`).
    fn name(&self) -> &str;
    /// `Ok` when the dependency answers; `Err` with a reason safe to show (no secrets) otherwise.
    async fn check(&self) -> Result<(), String>;
    /// Whether the service is unready without it. A dependency the service can work around (Redis
    /// for the proxy: in-process counters take over) reports `degraded` instead.
    fn required(&self) -> bool {
        true
    }
}

/// What `/health`, `/readyz` and `/metrics` need to answer.
#[derive(Clone)]
pub struct BaseState {
    /// Service name, e.g. `proxy`.
    pub service: &'static str,
    /// Process metrics.
    pub metrics: Metrics,
    /// Dependencies checked by `/readyz`.
    pub checks: Arc<Vec<Arc<dyn ReadinessCheck>>>,
    /// Extra, I/O-free fields merged into `/health` (the proxy's provider summary).
    pub details: Option<HealthDetails>,
}

/// Produces extra `/health` fields from in-memory state.
pub type HealthDetails = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

impl std::fmt::Debug for BaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseState").field("service", &self.service).finish_non_exhaustive()
    }
}

/// `/health` (liveness, no I/O), `/readyz` (dependencies) and `/metrics` (Prometheus text).
pub fn base_routes(state: BaseState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Wraps `router` with the service header and per-route metrics. Call once, on the full router.
pub fn instrument(router: Router, service: &'static str, metrics: Metrics) -> Router {
    let value = HeaderValue::from_static(service);
    router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let metrics = metrics.clone();
        let value = value.clone();
        async move {
            let started = Instant::now();
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
            let method = request.method().as_str().to_owned();
            let span = tracing::info_span!("request", otel.kind = "server", service, http.method = %method, http.route = %route);
            flowgate_telemetry::set_parent_from(&span, request.headers());
            let mut response = tracing::Instrument::instrument(next.run(request), span).await;
            let labels = HttpLabels { service, route, method, status: response.status().as_u16() };
            metrics.http_requests.get_or_create(&labels).inc();
            metrics.http_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            response.headers_mut().insert(SERVICE_HEADER, value);
            response
        }
    }))
}

/// JSON 404 in the shape OpenAI clients parse (and management clients too: `error.code`).
async fn not_found(uri: axum::http::Uri) -> Response {
    let body = serde_json::json!({"error": {
        "message": format!("no route for {}", uri.path()),
        "type": "invalid_request_error",
        "param": null,
        "code": "not_found",
    }});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn health(State(state): State<BaseState>) -> Json<serde_json::Value> {
    let mut body = serde_json::json!({
        "status": "ok",
        "service": state.service,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(details) = &state.details
        && let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), details())
    {
        body.extend(extra);
    }
    Json(body)
}

async fn readyz(State(state): State<BaseState>) -> Response {
    let required: std::collections::HashMap<String, bool> =
        state.checks.iter().map(|c| (c.name().to_owned(), c.required())).collect();
    let results = futures_join_all(state.checks.iter().cloned()).await;
    let ready = results.iter().all(|(name, result)| result.is_ok() || !required.get(name).copied().unwrap_or(true));
    for (name, result) in &results {
        let labels = crate::metrics::DependencyLabels { service: state.service, dependency: name.clone() };
        state.metrics.dependency_up.get_or_create(&labels).set(i64::from(result.is_ok()));
    }
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, result)| {
            let value = match result {
                Ok(()) => serde_json::json!({"status": "ok"}),
                Err(reason) if !required.get(&name).copied().unwrap_or(true) => {
                    serde_json::json!({"status": "degraded", "reason": reason})
                }
                Err(reason) => serde_json::json!({"status": "down", "reason": reason}),
            };
            (name, value)
        })
        .collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "service": state.service,
        "checks": checks,
    });
    (status, Json(body)).into_response()
}

/// Runs every readiness check concurrently, each bounded by two seconds.
async fn futures_join_all(checks: impl Iterator<Item = Arc<dyn ReadinessCheck>>) -> Vec<(String, Result<(), String>)> {
    let mut set = tokio::task::JoinSet::new();
    for (index, check) in checks.enumerate() {
        set.spawn(async move {
            let result = match tokio::time::timeout(Duration::from_secs(2), check.check()).await {
                Ok(result) => result,
                Err(_) => Err("timed out after 2s".to_owned()),
            };
            (index, check.name().to_owned(), result)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(error) => results.push((usize::MAX, "check".to_owned(), Err(error.to_string()))),
        }
    }
    results.sort_by_key(|(index, _, _)| *index);
    results.into_iter().map(|(_, name, result)| (name, result)).collect()
}

async fn metrics(State(state): State<BaseState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
        .into_response()
}

/// Binds `host:port` (port 0 picks a free one).
pub async fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((host, port)).await
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and drains
/// in-flight requests (streams included) for at most `grace`.
///
/// Accepted sockets get `TCP_NODELAY`: without it, keep-alive responses written in two parts wait
/// on Nagle's algorithm for tens of milliseconds.
pub async fn serve(
    service: &'static str,
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(service, %addr, "listening");
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let drain_started = shutdown.clone();
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned());
    let deadline = async move {
        drain_started.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => {
            tracing::info!(service, "drained");
            result
        }
        () = deadline => {
            tracing::warn!(service, grace_secs = grace.as_secs(), "grace period elapsed, closing remaining connections");
            Ok(())
        }
    }
}

/// A service's listener and full router, ready to serve: what each service's `Application` wraps.
#[derive(Debug)]
pub struct ServiceHost {
    name: &'static str,
    listener: TcpListener,
    router: Router,
    grace: Duration,
}

impl ServiceHost {
    /// Binds `host:port` for `router` (already holding the service's HTTP and gRPC routes), adding
    /// `/health`, `/readyz`, `/metrics`, the service header and request metrics.
    pub async fn bind(
        base: BaseState,
        host: &str,
        port: u16,
        router: Router,
        grace: Duration,
    ) -> std::io::Result<Self> {
        let name = base.service;
        let metrics = base.metrics.clone();
        // The gRPC router brings a fallback that answers any unknown path in gRPC; replace it so
        // REST clients get a JSON 404 (gRPC clients map HTTP 404 to UNIMPLEMENTED).
        let router = instrument(router.merge(base_routes(base)).fallback(not_found), name, metrics);
        let listener = bind(host, port).await?;
        Ok(Self { name, listener, router, grace })
    }

    /// The bound address (the real port when 0 was asked).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then drains for the grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        serve(self.name, self.listener, self.router, shutdown, self.grace).await
    }
}

/// Turns tonic services into an axum router, adding the standard gRPC health service with every
/// named service (and the empty name, for the whole server) reported as serving.
pub async fn grpc_routes(routes: tonic::service::Routes, names: &[&'static str]) -> Router {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    for name in names {
        reporter.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
    }
    routes.add_service(health).into_axum_router()
}
