//! One A2A call through the gateway: the key authenticated and allowed to reach the agent, the
//! key's guardrails on the request's text parts (pre-call), its rate limits claimed, the call
//! sent to the JSON-RPC endpoint the agent's card names with the agent's own credentials (never
//! the caller's), and the answer passed back: a JSON answer with the guardrails on its text parts
//! (post-call), an event stream (`message/stream`, `SendStreamingMessage`, resubscriptions) as it
//! arrives, never buffered. One audit record and the metrics per call, refused ones included.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flowgate_contracts::GuardrailStage;
use flowgate_contracts::audit::AuditRecord;
use futures_util::Stream;
use serde_json::{Value, json};

use super::{A2aState, AgentLabels, CallLabels, parts, rpc_error};
use crate::auth::KeyInfo;
use crate::error::ProxyError;
use crate::guardrails::{self, Plan};
use crate::limits::Admission;
use crate::mcp::jsonrpc::{self, Id, Message};

/// The largest JSON answer read from an agent.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// Client headers passed on to the agent (protocol version and extensions).
const PASSED_HEADERS: [&str; 3] = ["a2a-version", "a2a-extensions", "x-a2a-extensions"];
/// The methods counted by name in the metrics (anything else is forwarded, counted as `(other)`).
const KNOWN_METHODS: [&str; 22] = [
    "message/send",
    "message/stream",
    "tasks/get",
    "tasks/cancel",
    "tasks/resubscribe",
    "tasks/list",
    "tasks/pushNotificationConfig/set",
    "tasks/pushNotificationConfig/get",
    "tasks/pushNotificationConfig/list",
    "tasks/pushNotificationConfig/delete",
    "agent/getAuthenticatedExtendedCard",
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
];

fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS.iter().find(|m| **m == method).copied().unwrap_or("(other)")
}

/// `POST /a2a/{agent}`.
#[tracing::instrument(name = "a2a.call", skip_all, fields(agent = %agent))]
pub(super) async fn call(
    State(state): State<A2aState>,
    Path(agent): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (key, client_ip) = match super::authenticate(&state, &headers, peer).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let Some(found) = state.registry.get(&agent) else { return super::unknown_agent(&agent) };
    let limit = state.proxy.limits().max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        let message = format!("the request body is larger than {limit} bytes (proxy.max_body_bytes)");
        return rpc_error(StatusCode::PAYLOAD_TOO_LARGE, None, jsonrpc::INVALID_REQUEST, &message);
    };
    let (id, method, params) = match jsonrpc::parse(&body) {
        Ok(Message::Request { id, method, params }) => (id, method, params),
        Ok(Message::Notification { .. } | Message::Response) => return super::needs_id(),
        Err(bad) => return rpc_error(StatusCode::BAD_REQUEST, bad.id.as_ref(), bad.code, &bad.message),
    };
    let mut audit = CallAudit {
        state: state.clone(),
        key: key.clone(),
        agent: agent.clone(),
        method: method_label(&method),
        client_ip,
        started,
        request_bytes: body.len(),
        actions: Vec::new(),
        upstream: None,
        stream: false,
    };
    if let Err(owner) = super::may_reach(&key.key, &agent) {
        audit.finish(403, Some("agent_not_allowed"), 0, "refused");
        return super::not_allowed(&agent, owner, Some(&id));
    }
    let mut plan = match plan(&state, &key) {
        Ok(plan) => plan,
        Err(error) => return refused_by_guardrail(&mut audit, &id, &error),
    };
    let mut params = Value::Object(params);
    if let Some(plan) = &mut plan {
        let pointers = parts::text_pointers(&params, "user");
        let checked = check(&state, &key, &agent, plan, GuardrailStage::PreCall, &mut params, pointers).await;
        audit.actions.clone_from(&plan.actions);
        if let Err(error) = checked {
            return refused_by_guardrail(&mut audit, &id, &error);
        }
    }
    let admission = match state.proxy.limiter().admit(&key, 0, 0).await {
        Ok(admission) => admission,
        Err(error) => {
            audit.finish(i64::from(error.status().as_u16()), Some(error.code()), 0, "limited");
            let answer =
                jsonrpc::error_with_data(&id, jsonrpc::LIMITED, &error.to_string(), json!({"code": error.code()}));
            return (error.status(), Json(answer)).into_response();
        }
    };
    let card = match state.registry.card(&found).await {
        Ok(card) => card,
        Err(error) => {
            tracing::warn!(%agent, %error, "an A2A agent's card is unavailable");
            admission.settle(None);
            audit.finish(502, Some("agent_unavailable"), 0, "upstream_error");
            let message = format!("the A2A agent `{agent}` is unavailable: {error}");
            return rpc_error(StatusCode::BAD_GATEWAY, Some(&id), jsonrpc::UPSTREAM_UNAVAILABLE, &message);
        }
    };
    let forwarded = json!({"jsonrpc": "2.0", "id": id.to_value(), "method": method, "params": params});
    let mut request = state
        .registry
        .client()
        .post(card.endpoint.clone())
        .headers(found.headers.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    for name in PASSED_HEADERS {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.clone());
        }
    }
    let upstream_started = Instant::now();
    let sent = tokio::time::timeout(found.timeout, request.body(forwarded.to_string()).send()).await;
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let reason = super::describe_error(&error);
            admission.settle(None);
            audit.upstream = Some(upstream_started.elapsed());
            audit.finish(502, Some("upstream_error"), 0, "upstream_error");
            let message = format!("the A2A agent `{agent}` did not answer: {reason}");
            return rpc_error(StatusCode::BAD_GATEWAY, Some(&id), jsonrpc::UPSTREAM_UNAVAILABLE, &message);
        }
        Err(_) => {
            admission.settle(None);
            audit.upstream = Some(upstream_started.elapsed());
            audit.finish(504, Some("upstream_timeout"), 0, "timeout");
            let message = format!("the A2A agent `{agent}` did not answer within {} s", found.timeout.as_secs());
            return rpc_error(StatusCode::GATEWAY_TIMEOUT, Some(&id), jsonrpc::UPSTREAM_UNAVAILABLE, &message);
        }
    };
    let waited = upstream_started.elapsed();
    audit.upstream = Some(waited);
    state.metrics.latency.get_or_create(&AgentLabels { agent: agent.clone() }).observe(waited.as_secs_f64());
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let is_stream = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
    if is_stream {
        audit.stream = true;
        // Each event is checked at the during-call stage (or post-call, for a plan without it).
        let guard = plan.filter(|p| p.has(GuardrailStage::DuringCall) || p.has(GuardrailStage::PostCall)).map(|plan| {
            let stage = if plan.has(GuardrailStage::DuringCall) {
                GuardrailStage::DuringCall
            } else {
                GuardrailStage::PostCall
            };
            StreamGuard { state: state.clone(), key: key.clone(), agent: agent.clone(), plan, stage }
        });
        return passthrough(response, audit, admission, guard);
    }
    let remaining = found.timeout.saturating_sub(waited).max(Duration::from_secs(1));
    let body = match tokio::time::timeout(remaining, super::read_limited(response, MAX_ANSWER_BYTES)).await {
        Ok(Ok(body)) => body,
        Ok(Err(reason)) => {
            audit.finish(502, Some("upstream_error"), 0, "upstream_error");
            let message = format!("the A2A agent `{agent}` broke off its answer: {reason}");
            return rpc_error(StatusCode::BAD_GATEWAY, Some(&id), jsonrpc::UPSTREAM_UNAVAILABLE, &message);
        }
        Err(_) => {
            audit.finish(504, Some("upstream_timeout"), 0, "timeout");
            let message =
                format!("the A2A agent `{agent}` did not finish its answer within {} s", found.timeout.as_secs());
            return rpc_error(StatusCode::GATEWAY_TIMEOUT, Some(&id), jsonrpc::UPSTREAM_UNAVAILABLE, &message);
        }
    };
    let answer_bytes = body.len();
    let Ok(mut answer) = serde_json::from_slice::<Value>(&body) else {
        audit.finish(502, Some("upstream_error"), answer_bytes, "upstream_error");
        let message = format!("the A2A agent `{agent}` answered HTTP {} with a body that is not JSON", status.as_u16());
        return rpc_error(StatusCode::BAD_GATEWAY, Some(&id), jsonrpc::UPSTREAM_UNAVAILABLE, &message);
    };
    admission.settle(Some((crate::wire::Usage::default(), 0)));
    if let Some(plan) = &mut plan {
        let pointers = parts::text_pointers(&answer, "assistant");
        let checked = check(&state, &key, &agent, plan, GuardrailStage::PostCall, &mut answer, pointers).await;
        audit.actions.clone_from(&plan.actions);
        if let Err(error) = checked {
            return refused_by_guardrail(&mut audit, &id, &error);
        }
    }
    if matches!(method.as_str(), "agent/getAuthenticatedExtendedCard" | "GetExtendedAgentCard")
        && let Some(result) = answer.get_mut("result")
    {
        *result = super::card::rewrite(result, &format!("{}/a2a/{agent}", super::base_url(&headers)));
    }
    let (code, outcome) = match super::error_code(&answer) {
        Some(code) => (Some(format!("agent_error_{code}")), "agent_error"),
        None => (None, "success"),
    };
    audit.finish(i64::from(status.as_u16()), code.as_deref(), answer_bytes, outcome);
    (status, Json(answer)).into_response()
}

/// The key's guardrail plan, `None` when no guardrail applies to it.
fn plan(state: &A2aState, key: &KeyInfo) -> Result<Option<Plan>, ProxyError> {
    let policy = key.guardrail_policy()?;
    let plan = guardrails::plan(state.proxy.catalog(), policy, &[])?;
    Ok((!plan.is_empty()).then_some(plan))
}

async fn check(
    state: &A2aState,
    key: &KeyInfo,
    agent: &str,
    plan: &mut Plan,
    stage: GuardrailStage,
    document: &mut Value,
    pointers: Vec<crate::translate::TextPointer>,
) -> Result<(), ProxyError> {
    let model = format!("a2a:{agent}");
    let context =
        guardrails::Context { key_id: &key.key.id, tenant_id: &key.key.tenant_id, model: &model, route: "/a2a" };
    guardrails::check_document(state.proxy.guard(), plan, stage, document, pointers, context).await
}

/// A call stopped by a guardrail (or an unreadable policy): audited, answered with a JSON-RPC
/// error that says why.
fn refused_by_guardrail(audit: &mut CallAudit, id: &Id, error: &ProxyError) -> Response {
    audit.state.proxy.metrics().count_guardrail_actions(&audit.actions);
    audit.finish(i64::from(error.status().as_u16()), Some(error.code()), 0, "refused");
    let answer = jsonrpc::error_with_data(id, jsonrpc::GUARDRAIL, &error.to_string(), json!({"code": error.code()}));
    (error.status(), Json(answer)).into_response()
}

/// An event stream passed on as it arrives; its audit record is written when it ends, breaks
/// or the client leaves. With a guardrail plan that checks answers, each event (one complete
/// JSON-RPC answer) has its text parts checked before it is sent on; a refusal ends the stream
/// with a JSON-RPC error event. Nothing is held back beyond the event being read.
fn passthrough(
    response: reqwest::Response,
    audit: CallAudit,
    admission: Admission,
    guard: Option<StreamGuard>,
) -> Response {
    let status = response.status();
    let verdict = Arc::new(std::sync::Mutex::new(Verdict::default()));
    let raw = response.bytes_stream();
    let inner: Chunks = match guard {
        None => Box::pin(futures_util::StreamExt::map(raw, |chunk| chunk.map_err(|e| super::describe_error(&e)))),
        Some(guard) => guarded(Box::pin(raw), guard, verdict.clone()),
    };
    let stream = Tracked { inner, audit: Some(audit), admission: Some(admission), bytes: 0, verdict };
    let mut answer = Response::new(Body::from_stream(stream));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    answer
}

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// What the guardrails did to a stream, for its audit record.
#[derive(Default)]
struct Verdict {
    actions: Vec<Value>,
    /// A refusal: status and code.
    refused: Option<(i64, String)>,
}

/// The guardrails of a streamed answer.
pub(super) struct StreamGuard {
    pub(super) state: A2aState,
    pub(super) key: Arc<KeyInfo>,
    pub(super) agent: String,
    pub(super) plan: Plan,
    pub(super) stage: GuardrailStage,
}

struct Guarding {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: crate::sse::SseParser,
    queue: std::collections::VecDeque<crate::sse::SseEvent>,
    guard: StreamGuard,
    verdict: Arc<std::sync::Mutex<Verdict>>,
    ended: bool,
}

/// The agent's events, each checked by the guardrails before it is passed on.
fn guarded(
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    guard: StreamGuard,
    verdict: Arc<std::sync::Mutex<Verdict>>,
) -> Chunks {
    let state = Guarding {
        body,
        parser: crate::sse::SseParser::default(),
        queue: Default::default(),
        guard,
        verdict,
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut at| async move {
        loop {
            if let Some(event) = at.queue.pop_front() {
                let Ok(mut document) = serde_json::from_str::<Value>(&event.data) else {
                    return Some((Ok(crate::sse::encode(event.event.as_deref(), &event.data)), at));
                };
                let pointers = parts::text_pointers(&document, "assistant");
                let g = &mut at.guard;
                let checked = check(&g.state, &g.key, &g.agent, &mut g.plan, g.stage, &mut document, pointers).await;
                let mut verdict = at.verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                verdict.actions.clone_from(&g.plan.actions);
                if let Err(error) = checked {
                    verdict.refused = Some((i64::from(error.status().as_u16()), error.code().to_owned()));
                    drop(verdict);
                    at.ended = true;
                    at.queue.clear();
                    let id = document.get("id").cloned().unwrap_or(Value::Null);
                    let refusal = json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": jsonrpc::GUARDRAIL, "message": error.to_string(), "data": {"code": error.code()}}});
                    return Some((Ok(crate::sse::encode_json(event.event.as_deref(), &refusal)), at));
                }
                drop(verdict);
                return Some((Ok(crate::sse::encode_json(event.event.as_deref(), &document)), at));
            }
            if at.ended {
                return None;
            }
            match futures_util::StreamExt::next(&mut at.body).await {
                None => {
                    at.ended = true;
                    if let Some(last) = at.parser.finish() {
                        at.queue.push_back(last);
                    }
                }
                Some(Err(error)) => {
                    at.ended = true;
                    return Some((Err(super::describe_error(&error)), at));
                }
                Some(Ok(chunk)) => match at.parser.push(&chunk) {
                    Ok(events) => at.queue.extend(events),
                    Err(_) => {
                        at.ended = true;
                        return Some((Err("an event of the agent's stream is too large".to_owned()), at));
                    }
                },
            }
        }
    }))
}

/// The agent's event stream, counted as it passes.
struct Tracked {
    inner: Chunks,
    audit: Option<CallAudit>,
    admission: Option<Admission>,
    bytes: usize,
    verdict: Arc<std::sync::Mutex<Verdict>>,
}

impl Tracked {
    fn finish(&mut self, status: i64, code: Option<&str>, outcome: &'static str) {
        if let Some(admission) = self.admission.take() {
            admission.settle(Some((crate::wire::Usage::default(), 0)));
        }
        if let Some(mut audit) = self.audit.take() {
            let verdict = self.verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !verdict.actions.is_empty() {
                audit.actions.clone_from(&verdict.actions);
            }
            match &verdict.refused {
                Some((status, code)) => audit.finish(*status, Some(code), self.bytes, "refused"),
                None => audit.finish(status, code, self.bytes, outcome),
            }
        }
    }
}

impl Stream for Tracked {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.bytes += chunk.len();
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(reason))) => {
                self.finish(502, Some("upstream_error"), "upstream_error");
                Poll::Ready(Some(Err(std::io::Error::other(reason))))
            }
            Poll::Ready(None) => {
                self.finish(200, None, "success");
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // The client left before the stream ended (dropping the body drops the agent's stream).
        self.finish(499, Some("client_disconnected"), "client_disconnected");
    }
}

/// The audit record and metrics of one call.
struct CallAudit {
    state: A2aState,
    key: Arc<KeyInfo>,
    agent: String,
    method: &'static str,
    client_ip: String,
    started: Instant,
    request_bytes: usize,
    actions: Vec<Value>,
    upstream: Option<Duration>,
    stream: bool,
}

impl CallAudit {
    /// Writes the record (the agent as the model and deployment, `a2a` as the provider; the
    /// method and sizes in `metadata`) and counts the call.
    fn finish(&self, status: i64, code: Option<&str>, answer_bytes: usize, outcome: &'static str) {
        self.state
            .metrics
            .calls
            .get_or_create(&CallLabels { agent: self.agent.clone(), method: self.method, outcome })
            .inc();
        let key = &self.key.key;
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("a2a_agent".to_owned(), self.agent.clone());
        metadata.insert("a2a_method".to_owned(), self.method.to_owned());
        metadata.insert("a2a_request_bytes".to_owned(), self.request_bytes.to_string());
        metadata.insert("a2a_response_bytes".to_owned(), answer_bytes.to_string());
        if self.stream {
            metadata.insert("a2a_stream".to_owned(), "true".to_owned());
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let model = format!("a2a:{}", self.agent);
        let record = AuditRecord {
            request_id: uuid::Uuid::now_v7().to_string(),
            ts: i64::try_from(now).unwrap_or(i64::MAX),
            tenant_id: Some(key.tenant_id.clone()),
            key_id: Some(key.id.clone()),
            client_ip: Some(self.client_ip.clone()),
            route: format!("/a2a/{}", self.agent),
            model_requested: Some(model.clone()),
            model_used: Some(model),
            deployment: Some(self.agent.clone()),
            provider: Some("a2a".to_owned()),
            status,
            error_code: code.map(str::to_owned),
            latency_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            upstream_latency_ms: self.upstream.map(|d| d.as_secs_f64() * 1000.0),
            guardrail_actions: self.actions.clone(),
            metadata,
            ..AuditRecord::default()
        };
        self.state.proxy.audit().record(record);
    }
}
