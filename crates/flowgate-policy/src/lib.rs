//! Policy service: evaluates guardrail rule sets into allow / deny / redact / flag / reroute
//! decisions, over gRPC for the proxy and over HTTP (`/api/policy/*`, admin key required).

pub mod rules;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use flowgate_common::Settings;
use flowgate_common::auth::json_error;
use flowgate_common::metrics::Metrics;
use flowgate_common::server::{BaseState, ServiceHost, grpc_routes};
use flowgate_proto::policy::policy_service_server::{PolicyService, PolicyServiceServer};
use flowgate_proto::policy::{self as pb};
use secrecy::SecretString;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::rules::{Action, Context, FindingSummary, RuleSet};

/// Service name used in logs, metrics and the `x-flowgate-service` header.
pub const SERVICE: &str = "policy";

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
#[derive(Debug, Clone)]
pub struct Evaluator {
    default: Arc<RuleSet>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Self { default: Arc::new(RuleSet::builtin_default()) }
    }
}

fn to_pb(action: Action) -> pb::Decision {
    match action {
        Action::Allow => pb::Decision::Allow,
        Action::Deny => pb::Decision::Deny,
        Action::Redact => pb::Decision::Redact,
        Action::Flag => pb::Decision::Flag,
        Action::Reroute => pb::Decision::Reroute,
    }
}

impl Evaluator {
    fn rule_set(&self, policy_id: &str) -> Result<Arc<RuleSet>, String> {
        if policy_id.is_empty() || policy_id == self.default.name {
            Ok(self.default.clone())
        } else {
            Err(format!("unknown policy `{policy_id}`"))
        }
    }
}

#[tonic::async_trait]
impl PolicyService for Evaluator {
    #[tracing::instrument(name = "policy.evaluate", skip_all, fields(stage = %request.get_ref().stage))]
    async fn evaluate(
        &self,
        request: tonic::Request<pb::EvaluateRequest>,
    ) -> Result<tonic::Response<pb::EvaluateResponse>, tonic::Status> {
        let request = request.into_inner();
        let set = self.rule_set(&request.policy_id).map_err(tonic::Status::not_found)?;
        let findings: Vec<FindingSummary> = request
            .findings
            .iter()
            .map(|f| FindingSummary { kind: f.kind.clone(), count: f.count, max_score: f.max_score })
            .collect();
        let context = Context {
            key_id: &request.key_id,
            tenant_id: &request.tenant_id,
            model: &request.model,
            route: &request.route,
            stage: &request.stage,
            findings: &findings,
        };
        let decision = set.evaluate(&context);
        Ok(tonic::Response::new(pb::EvaluateResponse {
            decision: to_pb(decision.action).into(),
            reason: decision.reason,
            matched_rule: decision.matched_rule.unwrap_or_default(),
            reroute_model: decision.reroute_model.unwrap_or_default(),
        }))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    max_score: f32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateBody {
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    route: String,
    #[serde(default = "pre_call")]
    stage: String,
    #[serde(default)]
    findings: Vec<FindingBody>,
    /// An inline rule set to evaluate instead of the default (for trying rules before saving).
    #[serde(default)]
    policy: Option<serde_json::Value>,
}

fn pre_call() -> String {
    "pre_call".to_owned()
}

async fn evaluate_http(
    State(evaluator): State<Evaluator>,
    body: Result<Json<EvaluateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return json_error(axum::http::StatusCode::BAD_REQUEST, "invalid_request", &rejection.body_text());
        }
    };
    let set = match body.policy {
        Some(document) => match serde_json::from_value::<RuleSet>(document) {
            Ok(set) => match set.validate() {
                Ok(()) => Arc::new(set),
                Err(error) => {
                    return json_error(axum::http::StatusCode::BAD_REQUEST, "invalid_policy", &error.to_string());
                }
            },
            Err(error) => return json_error(axum::http::StatusCode::BAD_REQUEST, "invalid_policy", &error.to_string()),
        },
        None => evaluator.default.clone(),
    };
    let findings: Vec<FindingSummary> = body
        .findings
        .into_iter()
        .map(|f| FindingSummary { kind: f.kind, count: f.count, max_score: f.max_score })
        .collect();
    let context = Context {
        key_id: &body.key_id,
        tenant_id: &body.tenant_id,
        model: &body.model,
        route: &body.route,
        stage: &body.stage,
        findings: &findings,
    };
    let decision = set.evaluate(&context);
    Json(serde_json::json!({
        "decision": decision.action,
        "reason": decision.reason,
        "matched_rule": decision.matched_rule,
        "reroute_model": decision.reroute_model,
        "policy": set.name,
    }))
    .into_response()
}

/// The policy service, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    host: ServiceHost,
    evaluator: Evaluator,
}

impl Application {
    /// Binds the port and builds the HTTP and gRPC routes.
    pub async fn build(settings: &Settings, admin_key: Arc<SecretString>, metrics: Metrics) -> Result<Self, InitError> {
        let evaluator = Evaluator::default();
        let grpc = grpc_routes(
            tonic::service::Routes::new(PolicyServiceServer::new(evaluator.clone())),
            &[<PolicyServiceServer<Evaluator> as tonic::server::NamedService>::NAME],
        )
        .await;
        let http = Router::new()
            .route("/api/policy/evaluate", post(evaluate_http))
            .with_state(evaluator.clone())
            .layer(axum::middleware::from_fn(move |request, next| {
                flowgate_common::auth::require_admin(admin_key.clone(), request, next)
            }));
        let base = BaseState { service: SERVICE, metrics, checks: Arc::new(Vec::new()), details: None };
        let port = settings.policy.port;
        let host = ServiceHost::bind(
            base,
            &settings.server.host,
            port,
            http.merge(grpc),
            Duration::from_secs(settings.server.shutdown_grace_secs),
        )
        .await
        .map_err(|source| InitError::Bind { service: SERVICE, port, source })?;
        Ok(Self { host, evaluator })
    }

    /// The evaluator, for `all` mode to hand to the proxy without a network hop.
    pub fn evaluator(&self) -> Evaluator {
        self.evaluator.clone()
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
