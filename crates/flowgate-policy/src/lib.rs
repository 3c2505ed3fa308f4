//! Policy service: evaluates guardrail rule sets into allow / deny / redact / flag / reroute
//! decisions, over gRPC for the proxy and over HTTP (`/api/policy/*`, admin key required).
//!
//! # Rule sets
//! Rule sets live in the `policies` table (written by the api-server's `/api/policies`) and are
//! evaluated by name (`policy_id`). They are compiled into memory at start, reloaded one by one
//! when their name is published on `policies:changed` (every api-server write does), all of them
//! on a Redis resynchronisation and every 30 s as a safety net. Evaluation never touches the
//! database: it reads an immutable snapshot and takes microseconds.
//!
//! An empty `policy_id` means `default`: the stored policy named `default` if there is one, else
//! the built-in default ([`rules::builtin_default`]). An unknown name is `NOT_FOUND` (gRPC) or
//! 404 (HTTP). A stored document that fails validation is logged and ignored; the last good
//! version stays in use.
//!
//! # HTTP API
//! - `POST /api/policy/evaluate` `{policy_id? | policy?, key_id, tenant_id, model, route, stage,
//!   findings: [{type, count, max_score}]}` → `{decision, reason, matched_rule, reroute_model,
//!   policy, version, explanation}`. `policy` is an inline rule set, for trying rules before saving.
//! - `GET /api/policy/policies` → the rule sets loaded in this process, with their versions.

pub mod rules;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flowgate_common::Settings;
use flowgate_common::auth::json_error;
use flowgate_common::metrics::Metrics;
use flowgate_common::server::{BaseState, ServiceHost, grpc_routes};
use flowgate_contracts::GuardrailStage;
use flowgate_contracts::channels::POLICIES_CHANGED;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::text::text;
use flowgate_db::{Database, Notification, SharedState};
use flowgate_proto::policy::policy_service_server::{PolicyService, PolicyServiceServer};
use flowgate_proto::policy::{self as pb};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::rules::{Action, Context, Evaluate, FindingSummary, RuleSet};

/// Service name used in logs, metrics and the `x-flowgate-service` header.
pub const SERVICE: &str = "policy";

/// How often every rule set is reloaded, whatever the notifications.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Name of the rule set used when a request names none.
pub const DEFAULT_POLICY: &str = "default";

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
    /// The rule sets could not be read (database down, or the schema not migrated).
    #[error("cannot load policies from the database (is it reachable and migrated? run `flowgate migrate`): {0}")]
    Load(#[from] sqlx::Error),
}

/// What the service needs from the process.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// Where rule sets are stored (`policies`).
    pub database: Database,
    /// Carries `policies:changed`.
    pub shared: SharedState,
    /// Gates the HTTP API.
    pub admin_key: Arc<SecretString>,
    /// Every gRPC call but the health service's must carry it.
    pub internal_token: flowgate_common::internal::InternalToken,
    /// Process metrics.
    pub metrics: Metrics,
}

/// A rule set as loaded from the database.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The rule set.
    pub set: Arc<RuleSet>,
    /// Its `version` column (0 for the built-in default).
    pub version: i64,
}

type Snapshot = HashMap<String, Arc<LoadedPolicy>>;

#[derive(Debug)]
struct Loader {
    database: Database,
    /// Serialises reloads, so an older read never overwrites a newer one.
    lock: tokio::sync::Mutex<()>,
}

/// The gRPC implementation, also used in-process by `all` mode. Cheap to clone; clones share the
/// loaded rule sets.
#[derive(Debug, Clone)]
pub struct Evaluator {
    builtin: Arc<LoadedPolicy>,
    policies: Arc<ArcSwap<Snapshot>>,
    loader: Option<Arc<Loader>>,
}

impl Default for Evaluator {
    /// Only the built-in default; no database.
    fn default() -> Self {
        Self {
            builtin: Arc::new(LoadedPolicy { set: Arc::new(rules::builtin_default()), version: 0 }),
            policies: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            loader: None,
        }
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

/// Parses a stored document. A document without `name` gets the row's.
fn parse_document(name: &str, document: &str) -> Result<RuleSet, rules::ValidationError> {
    let value: serde_json::Value = serde_json::from_str(document)
        .map_err(|e| rules::ValidationError { field: String::new(), message: e.to_string() })?;
    RuleSet::from_document(name, value)
}

impl Evaluator {
    /// An evaluator over the `policies` table of `database` (nothing loaded until
    /// [`Evaluator::reload_all`]).
    pub fn with_database(database: Database) -> Self {
        Self { loader: Some(Arc::new(Loader { database, lock: tokio::sync::Mutex::new(()) })), ..Self::default() }
    }

    /// The rule set named `policy_id` (empty = default), or `None` when unknown.
    pub fn rule_set(&self, policy_id: &str) -> Option<Arc<LoadedPolicy>> {
        let name = if policy_id.is_empty() { DEFAULT_POLICY } else { policy_id };
        let snapshot = self.policies.load();
        match snapshot.get(name) {
            Some(found) => Some(found.clone()),
            None if name == DEFAULT_POLICY => Some(self.builtin.clone()),
            None => None,
        }
    }

    /// Names and versions of the loaded rule sets.
    pub fn loaded(&self) -> Vec<(String, i64, usize)> {
        let snapshot = self.policies.load();
        let mut out: Vec<(String, i64, usize)> =
            snapshot.iter().map(|(name, p)| (name.clone(), p.version, p.set.rules.len())).collect();
        out.sort();
        out
    }

    fn accept(&self, name: &str, version: i64, document: &str, into: &mut Snapshot) {
        match parse_document(name, document) {
            Ok(set) => {
                into.insert(name.to_owned(), Arc::new(LoadedPolicy { set: Arc::new(set), version }));
            }
            Err(error) => {
                // Keep the last good version, if any.
                let kept = self.policies.load().get(name).cloned();
                tracing::error!(policy = name, version, %error, kept = kept.as_ref().map(|p| p.version), "stored policy is invalid; ignored");
                if let Some(kept) = kept {
                    into.insert(name.to_owned(), kept);
                }
            }
        }
    }

    /// Reloads every rule set from the database.
    pub async fn reload_all(&self) -> Result<usize, sqlx::Error> {
        let Some(loader) = &self.loader else { return Ok(0) };
        let _serial = loader.lock.lock().await;
        let rows = sqlx::query(&loader.database.sql("SELECT name, version, document FROM policies"))
            .fetch_all(loader.database.pool())
            .await?;
        let mut next = Snapshot::with_capacity(rows.len());
        for row in &rows {
            let name: String = row.try_get("name")?;
            let version: i64 = row.try_get("version")?;
            let document = text(row, "document")?;
            self.accept(&name, version, &document, &mut next);
        }
        let count = next.len();
        self.policies.store(Arc::new(next));
        Ok(count)
    }

    /// Reloads the rule set `name` (removing it when its row is gone).
    pub async fn reload_one(&self, name: &str) -> Result<(), sqlx::Error> {
        let Some(loader) = &self.loader else { return Ok(()) };
        let _serial = loader.lock.lock().await;
        let row = sqlx::query(&loader.database.sql("SELECT name, version, document FROM policies WHERE name = $1"))
            .bind(name)
            .fetch_optional(loader.database.pool())
            .await?;
        let mut next: Snapshot = (**self.policies.load()).clone();
        match row {
            Some(row) => {
                let version: i64 = row.try_get("version")?;
                let document = text(&row, "document")?;
                self.accept(name, version, &document, &mut next);
                tracing::info!(policy = name, version, "policy reloaded");
            }
            None => {
                next.remove(name);
                tracing::info!(policy = name, "policy removed");
            }
        }
        self.policies.store(Arc::new(next));
        Ok(())
    }

    /// Follows `changes` (and reloads everything every [`REFRESH_INTERVAL`]) until `shutdown`.
    async fn follow(self, mut changes: broadcast::Receiver<Notification>, shutdown: CancellationToken) {
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH_INTERVAL, REFRESH_INTERVAL);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reload_all = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = refresh.tick() => true,
                message = changes.recv() => match message {
                    Ok(Notification::Message(name)) => {
                        if let Err(error) = self.reload_one(&name).await {
                            tracing::warn!(policy = %name, %error, "cannot reload policy; retrying with a full reload");
                            true
                        } else {
                            false
                        }
                    }
                    Ok(Notification::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if reload_all && let Err(error) = self.reload_all().await {
                tracing::warn!(%error, "cannot reload policies; keeping the loaded ones");
            }
        }
    }
}

#[tonic::async_trait]
impl PolicyService for Evaluator {
    #[tracing::instrument(
        name = "policy.evaluate",
        skip_all,
        fields(stage = %request.get_ref().stage, policy = %request.get_ref().policy_id, decision, rule)
    )]
    async fn evaluate(
        &self,
        request: tonic::Request<pb::EvaluateRequest>,
    ) -> Result<tonic::Response<pb::EvaluateResponse>, tonic::Status> {
        let request = request.into_inner();
        let Some(policy) = self.rule_set(&request.policy_id) else {
            return Err(tonic::Status::not_found(format!("unknown policy `{}`", request.policy_id)));
        };
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
        let decision = policy.set.evaluate(&context);
        let span = tracing::Span::current();
        span.record("decision", tracing::field::debug(decision.action));
        span.record("rule", decision.matched_rule.as_deref().unwrap_or(""));
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
    #[serde(rename = "type", alias = "kind")]
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
    /// A stored rule set to evaluate (empty = default).
    #[serde(default)]
    policy_id: Option<String>,
    /// An inline rule set to evaluate instead (for trying rules before saving).
    #[serde(default)]
    policy: Option<serde_json::Value>,
}

fn pre_call() -> String {
    GuardrailStage::PreCall.as_str().to_owned()
}

async fn evaluate_http(
    State(evaluator): State<Evaluator>,
    body: Result<Json<EvaluateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => return json_error(StatusCode::BAD_REQUEST, "invalid_request", &rejection.body_text()),
    };
    let policy = match (body.policy, body.policy_id) {
        (Some(_), Some(_)) => {
            return json_error(StatusCode::BAD_REQUEST, "invalid_request", "send `policy_id` or `policy`, not both");
        }
        (Some(document), None) => match RuleSet::from_value(&document) {
            Ok(set) => Arc::new(LoadedPolicy { set: Arc::new(set), version: 0 }),
            Err(error) => return json_error(StatusCode::BAD_REQUEST, "invalid_policy", &error.to_string()),
        },
        (None, id) => match evaluator.rule_set(id.as_deref().unwrap_or_default()) {
            Some(policy) => policy,
            None => {
                let message = format!("unknown policy `{}`", id.unwrap_or_default());
                return json_error(StatusCode::NOT_FOUND, "policy_not_found", &message);
            }
        },
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
    let decision = policy.set.evaluate(&context);
    Json(serde_json::json!({
        "decision": decision.action,
        "reason": decision.reason,
        "matched_rule": decision.matched_rule,
        "reroute_model": decision.reroute_model,
        "policy": policy.set.name,
        "version": (policy.version > 0).then_some(policy.version),
        "explanation": policy.set.explain(&decision),
    }))
    .into_response()
}

async fn loaded_http(State(evaluator): State<Evaluator>) -> Json<serde_json::Value> {
    let data: Vec<serde_json::Value> = evaluator
        .loaded()
        .into_iter()
        .map(|(name, version, rules)| serde_json::json!({"name": name, "version": version, "rules": rules}))
        .collect();
    let default = evaluator.rule_set(DEFAULT_POLICY).map(|p| p.version > 0).unwrap_or_default();
    Json(serde_json::json!({"data": data, "default": if default { "stored" } else { "builtin" }}))
}

/// The policy service, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    host: ServiceHost,
    evaluator: Evaluator,
    changes: broadcast::Receiver<Notification>,
}

impl Application {
    /// Loads every stored rule set, subscribes to `policies:changed`, binds the port and builds
    /// the HTTP and gRPC routes.
    pub async fn build(settings: &Settings, deps: Dependencies) -> Result<Self, InitError> {
        let evaluator = Evaluator::with_database(deps.database);
        // Subscribe before loading, so a change made meanwhile is not missed.
        let changes = deps.shared.subscribe(POLICIES_CHANGED);
        let loaded = evaluator.reload_all().await?;
        tracing::info!(policies = loaded, "policies loaded");
        let (grpc, grpc_health) = grpc_routes(
            tonic::service::Routes::new(PolicyServiceServer::new(evaluator.clone())),
            &[<PolicyServiceServer<Evaluator> as tonic::server::NamedService>::NAME],
            &deps.internal_token,
        )
        .await;
        let admin_key = deps.admin_key;
        let http = Router::new()
            .route("/api/policy/evaluate", post(evaluate_http))
            .route("/api/policy/policies", get(loaded_http))
            .with_state(evaluator.clone())
            .layer(axum::middleware::from_fn(move |request, next| {
                flowgate_common::auth::require_admin(admin_key.clone(), request, next)
            }));
        let base = BaseState { service: SERVICE, metrics: deps.metrics, checks: Arc::new(Vec::new()), details: None };
        let port = settings.policy.port;
        let host = ServiceHost::bind(
            base,
            &settings.server.host,
            port,
            http.merge(grpc),
            Duration::from_secs(settings.server.shutdown_grace_secs),
        )
        .await
        .map_err(|source| InitError::Bind { service: SERVICE, port, source })?
        .with_grpc_health(grpc_health);
        Ok(Self { host, evaluator, changes })
    }

    /// The evaluator, for `all` mode to hand to the proxy without a network hop.
    pub fn evaluator(&self) -> Evaluator {
        self.evaluator.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.host.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains; follows policy changes meanwhile.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        // Run beside the server, not on a detached task: both end with `shutdown`.
        let follower = self.evaluator.clone().follow(self.changes, shutdown.clone());
        let (result, ()) = tokio::join!(self.host.run_until_stopped(shutdown), follower);
        result
    }
}

#[cfg(test)]
mod tests;
