//! Compliance service: scans text for personal data and secrets, over gRPC for the proxy and over
//! HTTP (`/api/compliance/*`, admin key required) for operators.

pub mod detect;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use flowgate_common::Settings;
use flowgate_common::metrics::Metrics;
use flowgate_common::server::{BaseState, ServiceHost, grpc_routes};
use flowgate_proto::compliance::compliance_service_server::{ComplianceService, ComplianceServiceServer};
use flowgate_proto::compliance::{self as pb};
use secrecy::SecretString;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Service name used in logs, metrics and the `x-flowgate-service` header.
pub const SERVICE: &str = "compliance";

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

/// The gRPC implementation, also used in-process by `all` mode.
#[derive(Debug, Clone, Default)]
pub struct Scanner;

impl Scanner {
    /// Scans `text` with `detectors` (all when empty), optionally producing the redacted text.
    pub fn scan(&self, text: &str, detectors: &[String], redact: bool) -> pb::ScanResponse {
        let findings = detect::scan(text, detectors);
        let redacted_text = if redact { detect::redact(text, &findings) } else { String::new() };
        pb::ScanResponse {
            findings: findings
                .iter()
                .map(|f| pb::Finding {
                    kind: f.kind.to_owned(),
                    start: u32::try_from(f.start).unwrap_or(u32::MAX),
                    end: u32::try_from(f.end).unwrap_or(u32::MAX),
                    score: f.score,
                })
                .collect(),
            redacted_text,
        }
    }
}

#[tonic::async_trait]
impl ComplianceService for Scanner {
    #[tracing::instrument(name = "compliance.scan", skip_all, fields(bytes = request.get_ref().text.len()))]
    async fn scan(
        &self,
        request: tonic::Request<pb::ScanRequest>,
    ) -> Result<tonic::Response<pb::ScanResponse>, tonic::Status> {
        let request = request.into_inner();
        let unknown: Vec<&String> = request.detectors.iter().filter(|d| !detect::KINDS.contains(&d.as_str())).collect();
        if !unknown.is_empty() {
            return Err(tonic::Status::invalid_argument(format!(
                "unknown detectors {unknown:?}; known: {}",
                detect::KINDS.join(", ")
            )));
        }
        Ok(tonic::Response::new(self.scan(&request.text, &request.detectors, request.redact)))
    }
}

/// The compliance service, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    host: ServiceHost,
    scanner: Scanner,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    text: String,
    #[serde(default)]
    detectors: Vec<String>,
    #[serde(default)]
    redact: bool,
}

async fn scan_http(
    State(scanner): State<Scanner>,
    body: Result<Json<ScanBody>, axum::extract::rejection::JsonRejection>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return flowgate_common::auth::json_error(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_request",
                &rejection.body_text(),
            );
        }
    };
    if let Some(unknown) = body.detectors.iter().find(|d| !detect::KINDS.contains(&d.as_str())) {
        let message = format!("unknown detector `{unknown}`; known: {}", detect::KINDS.join(", "));
        return flowgate_common::auth::json_error(axum::http::StatusCode::BAD_REQUEST, "unknown_detector", &message);
    }
    let response = scanner.scan(&body.text, &body.detectors, body.redact);
    let findings: Vec<serde_json::Value> = response
        .findings
        .iter()
        .map(|f| serde_json::json!({"type": f.kind, "start": f.start, "end": f.end, "score": f.score}))
        .collect();
    let mut answer = serde_json::json!({"findings": findings, "count": findings.len()});
    if body.redact {
        answer["redacted_text"] = serde_json::Value::String(response.redacted_text);
    }
    Json(answer).into_response()
}

async fn intelligent_health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "service": SERVICE, "detectors": detect::KINDS}))
}

/// HTTP routes: `/api/compliance/*`, behind the admin key.
fn http_routes(admin_key: Arc<SecretString>) -> Router {
    Router::new()
        .route("/api/compliance/scan", post(scan_http))
        .route("/api/compliance/intelligent/health", get(intelligent_health))
        .with_state(Scanner)
        .layer(axum::middleware::from_fn(move |request, next| {
            flowgate_common::auth::require_admin(admin_key.clone(), request, next)
        }))
}

impl Application {
    /// Binds the port and builds the HTTP and gRPC routes.
    pub async fn build(settings: &Settings, admin_key: Arc<SecretString>, metrics: Metrics) -> Result<Self, InitError> {
        let grpc = grpc_routes(
            tonic::service::Routes::new(ComplianceServiceServer::new(Scanner)),
            &[<ComplianceServiceServer<Scanner> as tonic::server::NamedService>::NAME],
        )
        .await;
        let router = http_routes(admin_key).merge(grpc);
        let base = BaseState { service: SERVICE, metrics, checks: Arc::new(Vec::new()), details: None };
        let port = settings.compliance.port;
        let host = ServiceHost::bind(
            base,
            &settings.server.host,
            port,
            router,
            Duration::from_secs(settings.server.shutdown_grace_secs),
        )
        .await
        .map_err(|source| InitError::Bind { service: SERVICE, port, source })?;
        Ok(Self { host, scanner: Scanner })
    }

    /// The scanner, for `all` mode to hand to the proxy without a network hop.
    pub fn scanner(&self) -> Scanner {
        self.scanner.clone()
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
