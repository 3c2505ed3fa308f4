//! HTTP handlers of the data plane. Each is thin: read the body, then run the request pipeline.
//!
//! Pipeline order (each stage may stop the request with an error in the caller's format):
//! 1. authenticate the virtual key (format/checksum, cache, api-server);
//! 2. read and parse the body (size limit → 413, bad JSON → 400);
//! 3. authorise: client IP against the key's allowlist, model against `allowed_models`;
//! 4. dispatch: route, translate, send, retry, fall back;
//! 5. respond: pass through or translate, JSON or stream; on end, record usage.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::audit::AuditRecord;
use crate::auth::{KeyInfo, client_ip};
use crate::dispatch::{Call, dispatch};
use crate::error::{ApiFormat, ProxyError};
use crate::guardrails::{self, Context as GuardContext};
use crate::metrics::{ModelLabels, TokenLabels};
use crate::pricing;
use crate::respond::{Respond, Summary, respond};
use crate::state::ProxyState;
use crate::translate::Usage;
use crate::upstream::{ANTHROPIC_PASSTHROUGH_HEADERS, Endpoint};
use crate::upstream::{UpstreamBody, UpstreamResponse};
use std::sync::{Arc, Mutex, PoisonError};

/// The body as a JSON object, and its size in bytes.
async fn read_json(state: &ProxyState, body: Body) -> Result<(Value, usize), ProxyError> {
    let bytes = axum::body::to_bytes(body, state.max_body_bytes).await.map_err(|error| {
        let too_large =
            std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ProxyError::PayloadTooLarge { limit: state.max_body_bytes }
        } else {
            ProxyError::bad_request(format!("cannot read request body: {error}"))
        }
    })?;
    if bytes.is_empty() {
        return Err(ProxyError::bad_request("request body is empty; expected a JSON object"));
    }
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|error| ProxyError::bad_request(format!("invalid JSON: {error}")))?;
    if !value.is_object() {
        return Err(ProxyError::bad_request("request body must be a JSON object"));
    }
    Ok((value, bytes.len()))
}

fn authorize(
    state: &ProxyState,
    key: &KeyInfo,
    peer: SocketAddr,
    headers: &HeaderMap,
    model: &str,
) -> Result<(), ProxyError> {
    let ip = client_ip(peer.ip(), headers, &state.trusted_proxies);
    if !key.allows_ip(ip) {
        return Err(ProxyError::Forbidden(format!("client address {ip} is not allowed for this key")));
    }
    if !key.allows_model(model) {
        return Err(ProxyError::Forbidden(format!("this key may not use model `{model}`")));
    }
    Ok(())
}

/// The whole pipeline for one request. `draft` is the request's audit record: filled in as the
/// request goes, and taken (to be finished when the response ends) on success.
async fn handle(
    state: ProxyState,
    format: ApiFormat,
    endpoint: Endpoint,
    peer: SocketAddr,
    request: Request,
    draft: &mut Option<Draft>,
) -> Result<Response, ProxyError> {
    let (parts, body) = request.into_parts();
    if let Some(draft) = draft.as_mut() {
        draft.record.client_ip = Some(client_ip(peer.ip(), &parts.headers, &state.trusted_proxies).to_string());
    }
    let key = state.auth.authenticate(&parts.headers).await?;
    if let Some(draft) = draft.as_mut() {
        draft.record.key_id = Some(key.key.id.clone());
        draft.record.tenant_id = Some(key.key.tenant_id.clone());
    }
    let (mut body, body_len) = read_json(&state, body).await?;
    if let Some(draft) = draft.as_mut() {
        draft.record.model_requested = body.get("model").and_then(Value::as_str).map(str::to_owned);
        draft.record.stream = body.get("stream") == Some(&Value::Bool(true));
    }
    let mut model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        Some(_) => {
            return Err(ProxyError::BadRequest {
                message: "`model` must be a non-empty string".into(),
                param: Some("model".into()),
            });
        }
        None => {
            return Err(ProxyError::BadRequest { message: "`model` is required".into(), param: Some("model".into()) });
        }
    };
    authorize(&state, &key, peer, &parts.headers, &model)?;
    if endpoint == Endpoint::Chat && body.get("messages").is_none_or(|m| m.as_array().is_none_or(Vec::is_empty)) {
        return Err(ProxyError::BadRequest {
            message: "`messages` must be a non-empty array".into(),
            param: Some("messages".into()),
        });
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => {
            return Err(ProxyError::BadRequest {
                message: "`stream` must be a boolean".into(),
                param: Some("stream".into()),
            });
        }
    };
    if stream && endpoint != Endpoint::Chat {
        return Err(ProxyError::BadRequest {
            message: "streaming is supported for chat only".into(),
            param: Some("stream".into()),
        });
    }
    let include_usage = body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
    let cache_control = crate::cache::control(&parts.headers, &mut body);
    if !state.table.load().contains(&model) {
        return Err(ProxyError::ModelNotFound(model));
    }
    let route = draft.as_ref().map(|d| d.record.route.clone()).unwrap_or_default();
    let policy = key.guardrail_policy()?;
    let asked = guardrails::requested(&body, &parts.headers)?;
    let mut plan = guardrails::plan(&state.catalog, policy, &asked)?;
    // Guarded answers depend on policies that may change: they are not cached.
    let cacheable = state.cache.enabled() && plan.is_empty();
    if !plan.is_empty() {
        if stream {
            guardrails::stream_supported(&plan)?;
        }
        let context = GuardContext { key_id: &key.key.id, tenant_id: &key.key.tenant_id, model: &model, route: &route };
        let result = guardrails::pre_call(&state.guard, &mut plan, &mut body, context).await;
        if let Some(draft) = draft.as_mut() {
            draft.record.guardrail_actions.clone_from(&plan.actions);
        }
        result?;
        if let Some(target) = plan.reroute.take() {
            if !state.table.load().contains(&target) {
                return Err(ProxyError::GuardrailUnavailable {
                    message: format!("policy rerouted to unknown model `{target}`"),
                });
            }
            body["model"] = Value::String(target.clone());
            model = target;
        }
    }
    // Tenants that store prompts get the prompt as sent (after guardrails), redacted later.
    let stored_prompt = (key.key.tenant_store_prompts && draft.is_some()).then(|| guardrails::prompt_document(&body));
    let (prompt_estimate, cost_estimate) = estimate(&state, &model, &body, body_len);
    let admission = state.limiter.admit(&key, prompt_estimate, cost_estimate).await?;
    let limit_headers = admission.headers;
    let cache_key = cacheable.then(|| crate::cache::ResponseCache::key(&key.key.tenant_id, format, endpoint, &body));
    if let Some(entry) = &cache_key
        && cache_control.read
        && let Some(hit) = state.cache.lookup(entry).await
    {
        // No tokens were used: the request counts for the rate limits, nothing for the budget.
        admission.settle(Some((Usage::default(), 0)));
        if let Some(mut draft) = draft.take() {
            draft.record.status = 200;
            draft.record.cache_hit = true;
            draft.record.model_used = Some(model.clone());
            state.audit.record(draft.finish());
        }
        let mut response = hit.response();
        limit_headers.apply(response.headers_mut());
        return Ok(response);
    }
    let passthrough = if format == ApiFormat::Anthropic {
        ANTHROPIC_PASSTHROUGH_HEADERS
            .iter()
            .filter_map(|name| Some(((*name).to_owned(), parts.headers.get(*name)?.to_str().ok()?.to_owned())))
            .collect()
    } else {
        Vec::new()
    };
    let call = Call { format, endpoint, model: &model, body: &body, stream, passthrough };
    let mut dispatched = dispatch(&state, &call).await?;
    let guarded_answer = plan.restore_output && !plan.restore.is_empty()
        || plan.active.iter().any(|a| a.guardrail.supports("post_call") || a.guardrail.supports("during_call"));
    if guarded_answer && let UpstreamBody::Full(bytes) = &dispatched.response.body {
        // Bring the answer into the client's format, then check it before it leaves.
        let (translated, usage) =
            crate::respond::full_body(format, dispatched.response.format, endpoint, bytes.clone())?;
        let context = GuardContext { key_id: &key.key.id, tenant_id: &key.key.tenant_id, model: &model, route: &route };
        let result = guardrails::post_call_json(&state.guard, &mut plan, format, &translated, context).await;
        if let Some(draft) = draft.as_mut() {
            draft.record.guardrail_actions.clone_from(&plan.actions);
        }
        match result {
            Ok(processed) => {
                dispatched.response = UpstreamResponse { format, body: UpstreamBody::Full(processed) };
            }
            Err(error) => {
                // The answer was produced: charge for it even though it is withheld.
                let cost = pricing::cost_nanos(&dispatched.deployment, usage);
                admission.settle(Some((usage, cost)));
                return Err(error);
            }
        }
    }
    tracing::debug!(deployment = %dispatched.deployment.id, attempts = dispatched.attempts, "dispatched");
    let metrics = state.metrics.clone();
    let model_label = model.clone();
    let deployment = dispatched.deployment.clone();
    let mut draft = draft.take();
    if let Some(draft) = draft.as_mut() {
        let record = &mut draft.record;
        record.model_used = Some(deployment.model_name.clone());
        record.deployment = Some(deployment.id.clone());
        record.provider = Some(format!("{:?}", deployment.provider).to_lowercase());
        record.upstream_latency_ms = Some(dispatched.upstream_latency.as_secs_f64() * 1000.0);
        record.retries = i64::from(dispatched.attempts.saturating_sub(1));
        record.fallbacks.clone_from(&dispatched.fallbacks);
        record.status = 200;
    }
    let audit = state.audit.clone();
    let stored_prompt = stored_prompt.map(|prompt| (prompt, state.guard.clone(), state.audit.hold()));
    let stream_outcome: Arc<Mutex<guardrails::StreamOutcome>> = Arc::default();
    let outcome = stream_outcome.clone();
    let collect_answer = stored_prompt.is_some();
    let on_end = Box::new(move |summary: Summary| {
        let usage = summary.usage;
        let mut cost = pricing::cost_nanos(&deployment, usage);
        if !summary.completed {
            // An abandoned stream is charged at least its prompt: disconnecting must not be free.
            cost = cost
                .max(pricing::cost_nanos(&deployment, Usage { prompt_tokens: prompt_estimate, completion_tokens: 0 }));
        }
        admission.settle(Some((usage, cost)));
        metrics
            .tokens
            .get_or_create(&TokenLabels { model: model_label.clone(), kind: "prompt" })
            .inc_by(usage.prompt_tokens);
        metrics
            .tokens
            .get_or_create(&TokenLabels { model: model_label.clone(), kind: "completion" })
            .inc_by(usage.completion_tokens);
        if let Some(ttft) = summary.ttft {
            metrics.ttft.get_or_create(&ModelLabels { model: model_label }).observe(ttft.as_secs_f64());
        }
        if let Some(mut draft) = draft {
            let record = &mut draft.record;
            record.prompt_tokens = i64::try_from(usage.prompt_tokens).unwrap_or(i64::MAX);
            record.completion_tokens = i64::try_from(usage.completion_tokens).unwrap_or(i64::MAX);
            record.cost_nanos = cost;
            record.ttft_ms = summary.ttft.map(|t| t.as_secs_f64() * 1000.0);
            let outcome = outcome.lock().unwrap_or_else(PoisonError::into_inner);
            record.guardrail_actions.extend(outcome.actions.iter().cloned());
            if outcome.blocked {
                record.error_code = Some("guardrail_blocked".to_owned());
            } else if !summary.completed {
                record.error_code = Some("incomplete".to_owned());
            }
            drop(outcome);
            metrics.count_guardrail_actions(&record.guardrail_actions);
            let mut record = draft.finish();
            match stored_prompt {
                // Redaction is a compliance scan: done on a task, the record written after it.
                Some((prompt, guard, hold)) => drop(tokio::spawn(async move {
                    let tenant_id = record.tenant_id.clone().unwrap_or_default();
                    let answer = summary.answer.unwrap_or_default();
                    if let Some((prompt, answer)) =
                        guardrails::redact_for_storage(&guard, &prompt, &answer, &tenant_id).await
                    {
                        record.prompt = Some(prompt);
                        record.response = Some(answer);
                    }
                    audit.record(record);
                    drop(hold);
                })),
                None => audit.record(record),
            }
        }
    });
    let streamed = matches!(dispatched.response.body, UpstreamBody::Stream(_)) && stream;
    let how = Respond { format, endpoint, include_usage, stream_timeout: state.stream_timeout, collect_answer };
    let mut response = respond(how, dispatched, on_end);
    if guarded_answer && streamed {
        let context = GuardContext { key_id: &key.key.id, tenant_id: &key.key.tenant_id, model: &model, route: &route };
        response = guardrails::guard_stream(response, state.guard.clone(), plan, format, context, stream_outcome);
    }
    if let Some(entry) = cache_key {
        if cache_control.write {
            response = state.cache.store_after(response, entry);
        } else {
            response.headers_mut().insert("x-flowgate-cache", axum::http::HeaderValue::from_static("miss"));
        }
    }
    limit_headers.apply(response.headers_mut());
    Ok(response)
}

/// Output tokens assumed for the budget reservation when a request sets no `max_tokens`.
const DEFAULT_OUTPUT_ESTIMATE: u64 = 1024;

/// (prompt tokens, cost in nano-dollars) a request is estimated at before it is sent: about four
/// bytes of request body per prompt token (no re-serialisation on the hot path), and `max_tokens`
/// (or a default) of output, at the model's highest price.
fn estimate(state: &ProxyState, model: &str, body: &Value, body_len: usize) -> (u64, i64) {
    let prompt_tokens = (body_len as u64).div_ceil(4);
    let output_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|field| body.get(*field).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
    let (input_price, output_price) = state.table.load().max_prices(model);
    #[expect(clippy::cast_precision_loss, reason = "token counts are far below 2^53")]
    let cost = prompt_tokens as f64 * input_price + output_tokens as f64 * output_price;
    #[expect(clippy::cast_possible_truncation, reason = "clamped first")]
    let cost = cost.ceil().clamp(0.0, i64::MAX as f64) as i64;
    (prompt_tokens, cost)
}

/// An audit record in the making.
#[derive(Debug)]
pub(crate) struct Draft {
    started: std::time::Instant,
    record: AuditRecord,
}

impl Draft {
    fn new(route: &str) -> Self {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            started: std::time::Instant::now(),
            record: AuditRecord {
                request_id: uuid::Uuid::now_v7().to_string(),
                ts,
                route: route.to_owned(),
                ..AuditRecord::default()
            },
        }
    }

    fn finish(mut self) -> AuditRecord {
        self.record.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.record
    }
}

/// Runs the pipeline and makes sure exactly one audit record is written: here for errors, at the
/// end of the response for successes.
async fn run(state: ProxyState, format: ApiFormat, endpoint: Endpoint, peer: SocketAddr, request: Request) -> Response {
    // Nested routers see the path without their prefix; the audit trail wants the one asked for.
    let path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path().to_owned(), |uri| uri.path().to_owned());
    let draft = Draft::new(&path);
    let request_id = draft.record.request_id.clone();
    let mut slot = Some(draft);
    let mut response = match handle(state.clone(), format, endpoint, peer, request, &mut slot).await {
        Ok(response) => response,
        Err(error) => {
            let code = error.body(ApiFormat::OpenAi)["error"]["code"].as_str().unwrap_or("error").to_owned();
            state.metrics.rejected.get_or_create(&crate::metrics::CodeLabels { code: code.clone() }).inc();
            if let Some(mut draft) = slot.take() {
                draft.record.status = i64::from(error.status().as_u16());
                draft.record.error_code = Some(code);
                state.metrics.count_guardrail_actions(&draft.record.guardrail_actions);
                state.audit.record(draft.finish());
            }
            error.into_response_for(format)
        }
    };
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

macro_rules! data_route {
    ($name:ident, $format:expr, $endpoint:expr) => {
        #[tracing::instrument(name = "proxy.request", skip_all, fields(route = stringify!($name)))]
        pub(crate) async fn $name(
            State(state): State<ProxyState>,
            ConnectInfo(peer): ConnectInfo<SocketAddr>,
            request: Request,
        ) -> Response {
            run(state, $format, $endpoint, peer, request).await
        }
    };
}

data_route!(chat_completions, ApiFormat::OpenAi, Endpoint::Chat);
data_route!(completions, ApiFormat::OpenAi, Endpoint::Completions);
data_route!(embeddings, ApiFormat::OpenAi, Endpoint::Embeddings);
data_route!(anthropic_messages, ApiFormat::Anthropic, Endpoint::Chat);

/// The key of a read-only request (model and guardrail listings), with its IP allowlist checked.
async fn authenticated(state: &ProxyState, headers: &HeaderMap, peer: SocketAddr) -> Result<Arc<KeyInfo>, ProxyError> {
    let key = state.auth.authenticate(headers).await?;
    let ip = client_ip(peer.ip(), headers, &state.trusted_proxies);
    if !key.allows_ip(ip) {
        return Err(ProxyError::Forbidden(format!("client address {ip} is not allowed for this key")));
    }
    Ok(key)
}

async fn models_for(state: &ProxyState, headers: &HeaderMap, peer: SocketAddr) -> Result<Vec<String>, ProxyError> {
    let key = authenticated(state, headers, peer).await?;
    let table = state.table.load();
    Ok(table.names.iter().filter(|name| key.allows_model(name)).cloned().collect())
}

/// `GET /v1/models`: the models this key may use, OpenAI format.
pub(crate) async fn list_models(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match models_for(&state, &headers, peer).await {
        Ok(names) => {
            let data: Vec<Value> = names
                .iter()
                .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "flowgate"}))
                .collect();
            Json(json!({"object": "list", "data": data})).into_response()
        }
        Err(error) => error.into_response_for(ApiFormat::OpenAi),
    }
}

/// `GET /anthropic/v1/models`: the models this key may use, Anthropic format.
pub(crate) async fn list_models_anthropic(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match models_for(&state, &headers, peer).await {
        Ok(names) => {
            let data: Vec<Value> = names
                .iter()
                .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"}))
                .collect();
            Json(json!({"data": data, "has_more": false, "first_id": names.first(), "last_id": names.last()}))
                .into_response()
        }
        Err(error) => error.into_response_for(ApiFormat::Anthropic),
    }
}

/// `GET /v1/guardrails`: the guardrails this key may use (forbidden ones are hidden).
pub(crate) async fn list_guardrails(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let key = authenticated(&state, &headers, peer).await?;
        let policy = key.guardrail_policy()?;
        Ok::<_, ProxyError>(state.catalog.visible(policy))
    }
    .await;
    match result {
        Ok(items) => Json(json!({"object": "list", "data": items})).into_response(),
        Err(error) => error.into_response_for(ApiFormat::OpenAi),
    }
}
