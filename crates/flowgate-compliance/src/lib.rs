//! Compliance service: scans text for personal data, secrets, prompt injection and blocked terms,
//! over gRPC for the proxy and over HTTP (`/api/compliance/*`, admin key required) for operators.
//!
//! # HTTP API
//! - `POST /api/compliance/scan` `{text, detectors?, redact?, tenant_id?}` →
//!   `{findings: [{type, start, end, score}], count, redacted_text?, anomalies: [...]}`.
//! - `POST /api/compliance/feedback` `{tenant_id, kind, verdict: "false_positive" |
//!   "false_negative", score?}` → the tenant's new threshold for that kind (see [`tenants`]).
//! - `GET /api/compliance/baselines?tenant_id=` → the tenant's finding rates, elevated kinds,
//!   recent anomalies and thresholds; without `tenant_id`, every tracked tenant.
//! - `GET /api/compliance/intelligent/health` → detectors, classifier figures, tenants tracked.
//!
//! # Detectors
//! `detectors` names built-in kinds ([`detect::KINDS`]; empty = all of them) and, optionally, one
//! `blocked_terms:term one|term two` entry (see [`detect::terms`]). Offsets are bytes.
//!
//! Scanned text is never logged: logs and errors carry kinds, counts and tenant ids only.

pub mod detect;
pub mod injection;
pub mod store;
pub mod tenants;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flowgate_common::Settings;
use flowgate_common::auth::json_error;
use flowgate_common::metrics::Metrics;
use flowgate_common::server::{BaseState, ServiceHost, grpc_routes};
use flowgate_db::{Database, Notification, SharedState};
use flowgate_proto::compliance::compliance_service_server::{ComplianceService, ComplianceServiceServer};
use flowgate_proto::compliance::{self as pb};
use secrecy::SecretString;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::detect::{ALL_KINDS, DetectorSet, TRACKED_KINDS};
use crate::store::ThresholdStore;
use crate::tenants::{Anomaly, Tenants, Verdict};

/// Service name used in logs, metrics and the `x-flowgate-service` header.
pub const SERVICE: &str = "compliance";

/// Channel on which a tenant id is published when its thresholds change, so every replica reloads
/// them.
pub const THRESHOLDS_CHANGED: &str = "compliance:thresholds";

/// Texts longer than this (bytes) are scanned on the blocking pool.
const LARGE_TEXT: usize = 64 * 1024;

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

/// What the service needs from the process.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// Where per-tenant thresholds are persisted.
    pub database: Database,
    /// Carries threshold changes between replicas.
    pub shared: SharedState,
    /// Gates the HTTP API.
    pub admin_key: Arc<SecretString>,
    /// Every gRPC call but the health service's must carry it.
    pub internal_token: flowgate_common::internal::InternalToken,
    /// Process metrics.
    pub metrics: Metrics,
}

/// The result of one scan.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// Findings (and the redacted text when asked).
    pub response: pb::ScanResponse,
    /// Kinds whose count is far above the tenant's baseline.
    pub anomalies: Vec<Anomaly>,
}

#[derive(Debug, Default)]
struct ScannerState {
    tenants: Tenants,
    store: Option<ThresholdStore>,
    shared: Option<SharedState>,
    /// Serialises feedback, so two reports on one replica never lose an update.
    feedback: tokio::sync::Mutex<()>,
}

/// The gRPC implementation, also used in-process by `all` mode. Cheap to clone; clones share
/// tenant thresholds and baselines.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    state: Arc<ScannerState>,
}

/// Why feedback was refused.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// A field is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The database did not take it.
    #[error("feedback could not be saved: {0}")]
    Store(String),
}

impl Scanner {
    /// A scanner that persists thresholds in `store` and tells other replicas through `shared`.
    pub fn new(store: Option<ThresholdStore>, shared: Option<SharedState>) -> Self {
        Self { state: Arc::new(ScannerState { store, shared, ..ScannerState::default() }) }
    }

    /// The tenants' thresholds and baselines.
    pub fn tenants(&self) -> &Tenants {
        &self.state.tenants
    }

    /// Scans `text` with `detectors` (see [`DetectorSet::parse`]) under `tenant_id`'s thresholds,
    /// counts the scan in the tenant's baselines, and optionally produces the redacted text.
    pub fn scan(
        &self,
        text: &str,
        detectors: &[String],
        tenant_id: &str,
        redact: bool,
    ) -> Result<ScanOutcome, detect::DetectorError> {
        let set = DetectorSet::parse(detectors)?;
        let thresholds = self.state.tenants.thresholds(tenant_id);
        let findings = detect::scan_with(text, &set, &thresholds);
        let anomalies = if tenant_id.is_empty() {
            Vec::new()
        } else {
            let mut counts = [0u32; TRACKED_KINDS];
            for finding in &findings {
                if let Some(i) = detect::kind_index(finding.kind) {
                    counts[i] = counts[i].saturating_add(1);
                }
            }
            let ran: [bool; TRACKED_KINDS] = std::array::from_fn(|i| set.runs(ALL_KINDS[i]));
            let anomalies = self.state.tenants.observe(tenant_id, &counts, &ran, flowgate_db::now_millis());
            for a in &anomalies {
                tracing::warn!(
                    tenant_id,
                    kind = a.kind,
                    count = a.count,
                    expected = a.expected,
                    "finding rate anomaly"
                );
            }
            anomalies
        };
        let redacted_text = if redact { detect::redact(text, &findings) } else { String::new() };
        let response = pb::ScanResponse {
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
        };
        Ok(ScanOutcome { response, anomalies })
    }

    /// Applies a feedback report: persists the new threshold (when a database is configured),
    /// then uses it, and tells the other replicas. Returns the adjustment and whether it was
    /// persisted.
    pub async fn feedback(
        &self,
        tenant_id: &str,
        kind: &str,
        verdict: Verdict,
        score: Option<f32>,
    ) -> Result<(tenants::Adjustment, bool), FeedbackError> {
        let tenant_id = tenant_id.trim();
        if tenant_id.is_empty() || tenant_id.len() > 200 {
            return Err(FeedbackError::Invalid("`tenant_id` must be 1 to 200 characters".to_owned()));
        }
        let index = match detect::kind_index(kind) {
            Some(index) if kind != detect::BLOCKED_TERMS => index,
            _ => {
                return Err(FeedbackError::Invalid(format!("`kind` must be one of {}", detect::KINDS.join(", "))));
            }
        };
        if let Some(score) = score
            && !(0.0..=1.0).contains(&score)
        {
            return Err(FeedbackError::Invalid("`score` must be between 0 and 1".to_owned()));
        }
        let _serial = self.state.feedback.lock().await;
        let mut current = self.state.tenants.tenant_thresholds(tenant_id);
        let previous = current.values[index];
        current.values[index] = tenants::adjust(previous, verdict, score, tenants::min_threshold(index));
        match verdict {
            Verdict::FalsePositive => current.false_positives[index] += 1,
            Verdict::FalseNegative => current.false_negatives[index] += 1,
        }
        let adjustment = tenants::Adjustment {
            previous_threshold: previous,
            threshold: current.values[index],
            false_positives: current.false_positives[index],
            false_negatives: current.false_negatives[index],
        };
        let persisted = match &self.state.store {
            Some(store) => {
                store
                    .record(tenant_id, index, verdict, score, &adjustment)
                    .await
                    .map_err(|e| FeedbackError::Store(e.to_string()))?;
                true
            }
            None => false,
        };
        self.state.tenants.set_thresholds(tenant_id, current);
        if persisted
            && let Some(shared) = &self.state.shared
            && let Err(error) = shared.publish(THRESHOLDS_CHANGED, tenant_id).await
        {
            tracing::warn!(%error, "cannot tell other replicas about new thresholds; they pick them up on restart");
        }
        tracing::info!(
            tenant_id,
            kind,
            ?verdict,
            previous = adjustment.previous_threshold,
            threshold = adjustment.threshold,
            "compliance threshold adjusted"
        );
        Ok((adjustment, persisted))
    }

    /// Reloads every tenant's thresholds from the store.
    async fn reload_all(&self) {
        let Some(store) = &self.state.store else { return };
        match store.load_all().await {
            Ok(all) => {
                let count = all.len();
                for (tenant, thresholds) in all {
                    self.state.tenants.set_thresholds(&tenant, thresholds);
                }
                tracing::debug!(tenants = count, "compliance thresholds loaded");
            }
            Err(error) => tracing::warn!(%error, "cannot load compliance thresholds"),
        }
    }

    async fn reload_tenant(&self, tenant: &str) {
        let Some(store) = &self.state.store else { return };
        match store.load_tenant(tenant).await {
            Ok(thresholds) => self.state.tenants.set_thresholds(tenant, thresholds),
            Err(error) => tracing::warn!(%error, tenant_id = tenant, "cannot reload compliance thresholds"),
        }
    }

    /// Follows threshold changes made on other replicas until `shutdown`.
    async fn follow_changes(self, shutdown: CancellationToken) {
        let Some(shared) = self.state.shared.clone() else { return };
        let mut changes = shared.subscribe(THRESHOLDS_CHANGED);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = changes.recv() => match message {
                    Ok(Notification::Message(tenant)) => self.reload_tenant(&tenant).await,
                    Ok(Notification::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        self.reload_all().await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

#[tonic::async_trait]
impl ComplianceService for Scanner {
    #[tracing::instrument(
        name = "compliance.scan",
        skip_all,
        fields(bytes = request.get_ref().text.len(), tenant_id = %request.get_ref().tenant_id, findings)
    )]
    async fn scan(
        &self,
        request: tonic::Request<pb::ScanRequest>,
    ) -> Result<tonic::Response<pb::ScanResponse>, tonic::Status> {
        let request = request.into_inner();
        let large = request.text.len() > LARGE_TEXT;
        let scan = {
            let scanner = self.clone();
            move || Scanner::scan(&scanner, &request.text, &request.detectors, &request.tenant_id, request.redact)
        };
        // Scanning is CPU work: large texts go to the blocking pool, off the async workers.
        let outcome = if large {
            tokio::task::spawn_blocking(scan).await.map_err(|_| tonic::Status::internal("the scan did not finish"))?
        } else {
            scan()
        }
        .map_err(|error| tonic::Status::invalid_argument(error.to_string()))?;
        tracing::Span::current().record("findings", outcome.response.findings.len());
        Ok(tonic::Response::new(outcome.response))
    }
}

/// The compliance service, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    host: ServiceHost,
    scanner: Scanner,
}

fn bad_request(code: &str, message: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, code, message)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    text: String,
    #[serde(default)]
    detectors: Vec<String>,
    #[serde(default)]
    redact: bool,
    #[serde(default)]
    tenant_id: String,
}

async fn scan_http(
    State(scanner): State<Scanner>,
    body: Result<Json<ScanBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_request("invalid_request", &rejection.body_text()),
    };
    // Scanning is CPU work: keep it off the async workers for large texts.
    let outcome = if body.text.len() > LARGE_TEXT {
        let scanner = scanner.clone();
        match tokio::task::spawn_blocking(move || {
            scanner.scan(&body.text, &body.detectors, &body.tenant_id, body.redact).map(|o| (o, body.redact))
        })
        .await
        {
            Ok(result) => result,
            Err(_) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "scan_failed", "the scan did not finish"),
        }
    } else {
        scanner.scan(&body.text, &body.detectors, &body.tenant_id, body.redact).map(|o| (o, body.redact))
    };
    let (outcome, redact) = match outcome {
        Ok(outcome) => outcome,
        Err(error) => return bad_request("unknown_detector", &error.to_string()),
    };
    let findings: Vec<serde_json::Value> = outcome
        .response
        .findings
        .iter()
        .map(|f| serde_json::json!({"type": f.kind, "start": f.start, "end": f.end, "score": f.score}))
        .collect();
    let mut answer = serde_json::json!({"findings": findings, "count": findings.len(), "anomalies": outcome.anomalies});
    if redact {
        answer["redacted_text"] = serde_json::Value::String(outcome.response.redacted_text);
    }
    Json(answer).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    tenant_id: String,
    kind: String,
    verdict: Verdict,
    #[serde(default)]
    score: Option<f32>,
}

async fn feedback_http(
    State(scanner): State<Scanner>,
    body: Result<Json<FeedbackBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_request("invalid_request", &rejection.body_text()),
    };
    match scanner.feedback(&body.tenant_id, &body.kind, body.verdict, body.score).await {
        Ok((adjustment, persisted)) => Json(serde_json::json!({
            "tenant_id": body.tenant_id.trim(),
            "kind": body.kind,
            "verdict": body.verdict,
            "previous_threshold": adjustment.previous_threshold,
            "threshold": adjustment.threshold,
            "false_positives": adjustment.false_positives,
            "false_negatives": adjustment.false_negatives,
            "persisted": persisted,
        }))
        .into_response(),
        Err(FeedbackError::Invalid(message)) => bad_request("invalid_feedback", &message),
        Err(error @ FeedbackError::Store(_)) => {
            tracing::error!(%error, "compliance feedback not saved");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "feedback_not_saved", "the feedback could not be saved; retry")
        }
    }
}

#[derive(Debug, Deserialize)]
struct BaselineQuery {
    #[serde(default)]
    tenant_id: Option<String>,
}

fn thresholds_json(scanner: &Scanner, tenant: &str) -> serde_json::Value {
    let t = scanner.tenants().tenant_thresholds(tenant);
    let mut out = serde_json::Map::new();
    for (i, kind) in ALL_KINDS.iter().enumerate().filter(|(_, k)| **k != detect::BLOCKED_TERMS) {
        out.insert(
            (*kind).to_owned(),
            serde_json::json!({
                "threshold": t.values[i],
                "default": detect::DEFAULT_THRESHOLDS[i],
                "false_positives": t.false_positives[i],
                "false_negatives": t.false_negatives[i],
            }),
        );
    }
    serde_json::Value::Object(out)
}

async fn baselines_http(
    State(scanner): State<Scanner>,
    query: Result<Query<BaselineQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_request("invalid_request", &rejection.body_text()),
    };
    match query.tenant_id.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(tenant) => {
            let view = scanner.tenants().baseline(tenant);
            let mut body = match &view {
                Some(view) => serde_json::to_value(view).unwrap_or_default(),
                None => {
                    serde_json::json!({"tenant_id": tenant, "scans": 0, "kinds": {}, "elevated": [], "recent_anomalies": []})
                }
            };
            body["tracked"] = serde_json::Value::Bool(view.is_some());
            body["thresholds"] = thresholds_json(&scanner, tenant);
            Json(body).into_response()
        }
        None => {
            let data = scanner.tenants().all_baselines(100);
            Json(serde_json::json!({"data": data, "tenants_tracked": scanner.tenants().tenants_tracked()}))
                .into_response()
        }
    }
}

async fn intelligent_health(State(scanner): State<Scanner>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "service": SERVICE,
        "detectors": detect::KINDS,
        "parameterised_detectors": [format!("{}:<term>|<term>", detect::BLOCKED_TERMS)],
        "model": injection::stats(),
        "tenants_tracked": scanner.tenants().tenants_tracked(),
        "tenants_with_thresholds": scanner.tenants().tenants_with_thresholds(),
        "thresholds_persisted": scanner.state.store.is_some(),
        "baseline": {
            "slow_alpha": tenants::ALPHA,
            "fast_beta": tenants::BETA,
            "warm_up_scans": tenants::WARM_UP,
            "max_tenants": tenants::MAX_TENANTS,
        },
    }))
}

/// HTTP routes: `/api/compliance/*`, behind the admin key.
fn http_routes(scanner: Scanner, admin_key: Arc<SecretString>) -> Router {
    Router::new()
        .route("/api/compliance/scan", post(scan_http))
        .route("/api/compliance/feedback", post(feedback_http))
        .route("/api/compliance/baselines", get(baselines_http))
        .route("/api/compliance/intelligent/health", get(intelligent_health))
        .with_state(scanner)
        .layer(axum::middleware::from_fn(move |request, next| {
            flowgate_common::auth::require_admin(admin_key.clone(), request, next)
        }))
}

impl Application {
    /// Trains the injection classifier, loads tenant thresholds, binds the port and builds the
    /// HTTP and gRPC routes. Without the thresholds table (migrations not applied), feedback is
    /// kept in memory only, with a warning.
    pub async fn build(settings: &Settings, deps: Dependencies) -> Result<Self, InitError> {
        let stats = injection::warm_up();
        tracing::info!(
            training_examples = stats.training_examples,
            test_precision = stats.test.precision,
            test_recall = stats.test.recall,
            ms = stats.training_ms,
            "prompt-injection classifier trained"
        );
        let store = ThresholdStore::new(deps.database.clone());
        let scanner = match store.load_all().await {
            Ok(all) => {
                let scanner = Scanner::new(Some(store), Some(deps.shared.clone()));
                for (tenant, thresholds) in all {
                    scanner.tenants().set_thresholds(&tenant, thresholds);
                }
                scanner
            }
            Err(error) => {
                tracing::warn!(%error, "compliance thresholds table unavailable; feedback is kept in memory only (run `flowgate migrate`)");
                Scanner::new(None, None)
            }
        };
        let (grpc, grpc_health) = grpc_routes(
            tonic::service::Routes::new(ComplianceServiceServer::new(scanner.clone())),
            &[<ComplianceServiceServer<Scanner> as tonic::server::NamedService>::NAME],
            &deps.internal_token,
        )
        .await;
        let router = http_routes(scanner.clone(), deps.admin_key).merge(grpc);
        let base = BaseState { service: SERVICE, metrics: deps.metrics, checks: Arc::new(Vec::new()), details: None };
        let port = settings.compliance.port;
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
        Ok(Self { host, scanner })
    }

    /// The scanner, for `all` mode to hand to the proxy without a network hop.
    pub fn scanner(&self) -> Scanner {
        self.scanner.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.host.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains. Follows threshold changes made on other
    /// replicas meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        // Run beside the server, not on a detached task: both end with `shutdown`.
        let follower = self.scanner.clone().follow_changes(shutdown.clone());
        let (result, ()) = tokio::join!(self.host.run_until_stopped(shutdown), follower);
        result
    }
}

#[cfg(test)]
mod tests;
