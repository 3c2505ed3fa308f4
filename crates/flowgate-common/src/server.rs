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

use crate::internal::{HEALTH_PATH_PREFIX, InternalToken};
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
    /// Extra, I/O-free facts shown under the check's `detail` in `/readyz` (a worker job's last
    /// run, duration and outcome).
    fn detail(&self) -> Option<serde_json::Value> {
        None
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

/// The outcome of a service's readiness checks: what `/readyz` answers and what drives the gRPC
/// health status.
struct Readiness {
    ready: bool,
    /// `(name, required, result)` of each check, in order.
    results: Vec<(String, bool, Result<(), String>)>,
}

/// Runs `state`'s checks (concurrently, each bounded) and records each dependency's state in the
/// `dependency_up` metric.
async fn readiness(state: &BaseState) -> Readiness {
    let required: std::collections::HashMap<String, bool> =
        state.checks.iter().map(|c| (c.name().to_owned(), c.required())).collect();
    let results: Vec<(String, bool, Result<(), String>)> = futures_join_all(state.checks.iter().cloned())
        .await
        .into_iter()
        .map(|(name, result)| {
            let required = required.get(&name).copied().unwrap_or(true);
            (name, required, result)
        })
        .collect();
    let ready = results.iter().all(|(_, required, result)| result.is_ok() || !required);
    for (name, _, result) in &results {
        let labels = crate::metrics::DependencyLabels { service: state.service, dependency: name.clone() };
        state.metrics.dependency_up.get_or_create(&labels).set(i64::from(result.is_ok()));
    }
    Readiness { ready, results }
}

async fn readyz(State(state): State<BaseState>) -> Response {
    let Readiness { ready, results } = readiness(&state).await;
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .zip(state.checks.iter())
        .map(|((name, required, result), check)| {
            let mut value = match result {
                Ok(()) => serde_json::json!({"status": "ok"}),
                Err(reason) if !required => serde_json::json!({"status": "degraded", "reason": reason}),
                Err(reason) => serde_json::json!({"status": "down", "reason": reason}),
            };
            if let (Some(detail), Some(object)) = (check.detail(), value.as_object_mut()) {
                object.insert("detail".to_owned(), detail);
            }
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
    base: BaseState,
    grpc_health: Option<GrpcHealth>,
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
        let router = instrument(router.merge(base_routes(base.clone())).fallback(not_found), name, metrics);
        let listener = bind(host, port).await?;
        Ok(Self { name, listener, router, grace, base, grpc_health: None })
    }

    /// Reports this service's readiness (the `/readyz` checks) through the standard gRPC health
    /// service of [`grpc_routes`]: `SERVING` while ready, `NOT_SERVING` otherwise and while
    /// draining.
    #[must_use]
    pub fn with_grpc_health(mut self, health: GrpcHealth) -> Self {
        self.grpc_health = Some(health);
        self
    }

    /// The bound address (the real port when 0 was asked).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then drains for the grace period. With gRPC health, the readiness
    /// checks run once before the first request is accepted and every
    /// [`GRPC_HEALTH_INTERVAL`] beside the server.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Some(health) = self.grpc_health else {
            return serve(self.name, self.listener, self.router, shutdown, self.grace).await;
        };
        health.refresh(&self.base).await;
        let follower = health.follow(self.base, shutdown.clone());
        let server = serve(self.name, self.listener, self.router, shutdown, self.grace);
        tokio::pin!(follower, server);
        tokio::select! {
            // Stopped (drained, or failed): nothing left to report.
            result = &mut server => result,
            // Asked to stop: NOT_SERVING is reported; the drain goes on.
            () = &mut follower => server.await,
        }
    }
}

/// How often a service's readiness checks drive its gRPC health status.
pub const GRPC_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// The gRPC health status of a service's gRPC services (and of the whole server, the empty name),
/// driven by the same checks as `/readyz` (see [`ServiceHost::with_grpc_health`]). Until the first
/// check has run, everything is `NOT_SERVING`.
#[derive(Clone)]
pub struct GrpcHealth {
    reporter: tonic_health::server::HealthReporter,
    names: Arc<[&'static str]>,
    serving: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for GrpcHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcHealth").field("names", &self.names).finish_non_exhaustive()
    }
}

impl GrpcHealth {
    /// Sets every name to `SERVING` or `NOT_SERVING` (watchers hear of it).
    async fn publish(&self, serving: bool) {
        let status =
            if serving { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
        for name in std::iter::once(&"").chain(self.names.iter()) {
            self.reporter.set_service_status(*name, status).await;
        }
    }

    /// Reports `serving` when it differs from what was reported; returns whether it did.
    async fn set(&self, serving: bool) -> bool {
        let changed = self.serving.swap(serving, std::sync::atomic::Ordering::Relaxed) != serving;
        if changed {
            self.publish(serving).await;
        }
        changed
    }

    /// Runs the readiness checks of `base` and reports the outcome; logs a change.
    async fn refresh(&self, base: &BaseState) {
        let Readiness { ready, results } = readiness(base).await;
        if !self.set(ready).await {
            return;
        }
        if ready {
            tracing::info!(service = base.service, "ready: gRPC health reports SERVING");
        } else {
            let down: Vec<&str> = results
                .iter()
                .filter(|(_, required, result)| *required && result.is_err())
                .map(|(name, _, _)| name.as_str())
                .collect();
            tracing::warn!(service = base.service, ?down, "not ready: gRPC health reports NOT_SERVING");
        }
    }

    /// Refreshes every [`GRPC_HEALTH_INTERVAL`] until `shutdown`, then reports `NOT_SERVING` for
    /// the drain.
    async fn follow(self, base: BaseState, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(GRPC_HEALTH_INTERVAL) => self.refresh(&base).await,
            }
        }
        self.set(false).await;
    }
}

/// Turns tonic services into an axum router, adding the standard gRPC health service with every
/// named service (and the empty name, for the whole server). Every call but the health service's
/// must carry the internal token ([`InternalToken::verify`]); one without it, or with another,
/// is answered `UNAUTHENTICATED` before it reaches the service. The health status starts
/// `NOT_SERVING`; hand the returned [`GrpcHealth`] to [`ServiceHost::with_grpc_health`] so the
/// readiness checks drive it.
pub async fn grpc_routes(
    routes: tonic::service::Routes,
    names: &[&'static str],
    token: &InternalToken,
) -> (Router, GrpcHealth) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let health = GrpcHealth {
        reporter,
        names: names.to_vec().into(),
        serving: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    health.publish(false).await;
    let token = token.clone();
    let router = routes.add_service(service).into_axum_router().layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let token = token.clone();
            async move {
                if !request.uri().path().starts_with(HEALTH_PATH_PREFIX)
                    && let Err(status) = token.verify(request.headers())
                {
                    tracing::warn!(
                        path = request.uri().path(),
                        reason = status.message(),
                        "internal gRPC call refused"
                    );
                    return status.into_http::<axum::body::Body>();
                }
                next.run(request).await
            }
        },
    ));
    (router, health)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use secrecy::SecretString;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;

    /// A dependency the test turns on and off.
    struct Switch(Arc<AtomicBool>);

    #[async_trait::async_trait]
    impl ReadinessCheck for Switch {
        fn name(&self) -> &str {
            "switch"
        }

        async fn check(&self) -> Result<(), String> {
            if self.0.load(Ordering::Relaxed) { Ok(()) } else { Err("switched off".to_owned()) }
        }
    }

    const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

    /// Polls the gRPC health of `service` until it is `expected` (at most three check intervals).
    async fn await_status(client: &mut HealthClient<tonic::transport::Channel>, service: &str, expected: i32) {
        let deadline = tokio::time::Instant::now() + 3 * GRPC_HEALTH_INTERVAL;
        loop {
            let request = HealthCheckRequest { service: service.to_owned() };
            let status = client.check(request).await.unwrap().into_inner().status;
            if status == expected {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "`{service}` reports {status}, not {expected}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn grpc_health_follows_the_readiness_checks() {
        let up = Arc::new(AtomicBool::new(false));
        let token = InternalToken::new(SecretString::from("unit-test-internal-token".to_owned())).unwrap();
        let (grpc, health) = grpc_routes(tonic::service::Routes::default(), &["test.v1.Service"], &token).await;
        let checks: Vec<Arc<dyn ReadinessCheck>> = vec![Arc::new(Switch(up.clone()))];
        let base = BaseState { service: "test", metrics: Metrics::new(), checks: Arc::new(checks), details: None };
        let host = ServiceHost::bind(base, "127.0.0.1", 0, grpc, Duration::from_secs(1))
            .await
            .unwrap()
            .with_grpc_health(health);
        let url = format!("http://{}", host.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let probe = async {
            let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
            let mut client = HealthClient::new(channel);
            // Not ready from the first request on: the checks ran before the port accepted it.
            for service in ["", "test.v1.Service"] {
                let request = HealthCheckRequest { service: service.to_owned() };
                assert_eq!(client.check(request).await.unwrap().into_inner().status, NOT_SERVING, "{service:?}");
            }
            up.store(true, Ordering::Relaxed);
            await_status(&mut client, "", SERVING).await;
            await_status(&mut client, "test.v1.Service", SERVING).await;
            up.store(false, Ordering::Relaxed);
            await_status(&mut client, "test.v1.Service", NOT_SERVING).await;
            await_status(&mut client, "", NOT_SERVING).await;
            up.store(true, Ordering::Relaxed);
            await_status(&mut client, "", SERVING).await;
            shutdown.cancel();
        };
        let (result, ()) = tokio::join!(host.run_until_stopped(shutdown.clone()), probe);
        result.unwrap();
    }
}
