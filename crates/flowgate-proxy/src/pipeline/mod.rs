//! The request pipeline. [`handle`] runs the stages in order; each is a function in its own module
//! and each may stop the request with a [`ProxyError`], which is answered in the caller's format.
//!
//! 1. [`authenticate`]: the virtual key (format and checksum, cache, api-server); builds the
//!    [`RequestContext`];
//! 2. [`parse`]: the body (size limit → 413, JSON → 400) and the fields the codec reads;
//! 3. [`authorise`]: client IP against the key's allowlist, model against `allowed_models`, model
//!    routable; then [`conversation`]: a Responses continuation (`previous_response_id`) expanded
//!    from the stored conversation;
//! 4. [`guard`]: the guardrail plan and the pre-call scan (may rewrite the body or reroute);
//! 5. [`admit`]: rate limits and budgets, claimed together;
//! 6. [`cache`]: a hit in one of the metacache's phases (exact, shared, semantic) is answered here;
//! 7. [`crate::forward`]: route, translate, send, retry, fall back;
//! 8. [`respond`]: pass through or translate, guard post/during the answer, store in the cache;
//! 9. [`finish`]: settle the spend, count, write the audit record (when the answer ends).
//!
//! Exactly one audit record per request holds by construction: the context owns an
//! [`crate::context::AuditGuard`] that writes it when finished or dropped.

pub(crate) mod admit;
pub(crate) mod answer;
pub(crate) mod authenticate;
pub(crate) mod authorise;
pub(crate) mod cache;
pub(crate) mod conversation;
pub(crate) mod finish;
pub(crate) mod guard;
pub(crate) mod parse;
pub(crate) mod respond;

use flowgate_contracts::audit::{METADATA_SESSION_ID, SESSION_HEADERS};
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};

use crate::context::{AuditGuard, Ingress, RequestContext};
use crate::error::ProxyError;
use crate::forward::{Call, forward};
use crate::state::ProxyState;
use crate::translate::ApiFormat;
use crate::wire::Endpoint;

/// How the request ended before the answer: served from the cache, or forwarded.
#[expect(clippy::large_enum_variant, reason = "one per request, moved once; a box would cost an allocation")]
enum Outcome {
    Cached(Response),
    Forwarded(respond::Forwarding),
}

/// The agent session the client names in its headers (Claude Code, Codex), in the audit record's
/// metadata.
fn record_session(audit: &mut AuditGuard, headers: &axum::http::HeaderMap) {
    let session = SESSION_HEADERS.iter().find_map(|name| headers.get(*name)).and_then(|v| v.to_str().ok());
    if let Some(session) = session.filter(|s| !s.is_empty()) {
        audit.record().metadata.insert(METADATA_SESSION_ID.to_owned(), session.to_owned());
    }
}

/// Runs the pipeline for one request and answers it.
async fn handle(state: ProxyState, ingress: Ingress, peer: SocketAddr, request: Request) -> Response {
    // Nested routers see the path without their prefix; the audit trail wants the one asked for.
    let route = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path().to_owned(), |uri| uri.path().to_owned());
    let mut audit = AuditGuard::start(state.audit().clone(), route);
    let (parts, body) = request.into_parts();
    if let Some(id) = crate::auth::edge_request_id(&parts.headers, state.limits()) {
        audit.record().request_id = id;
    }
    let request_id = HeaderValue::from_str(audit.request_id()).ok();
    let client_ip = crate::auth::caller_ip(peer.ip(), &parts.headers, state.limits());
    audit.record().client_ip = Some(client_ip.to_string());
    record_session(&mut audit, &parts.headers);
    let mut response = match authenticate::authenticate(&state, &parts.headers).await {
        Ok(key) => {
            let cx = RequestContext::new(ingress, client_ip, key, audit);
            serve(&state, cx, &parts.headers, body).await
        }
        Err(error) => reject(&state, audit, ingress.format, error),
    };
    if let Some(value) = request_id {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The stages after authentication.
async fn serve(state: &ProxyState, mut cx: RequestContext, headers: &HeaderMap, body: Body) -> Response {
    match stages(state, &mut cx, headers, body).await {
        Ok(Outcome::Cached(response)) => response,
        Ok(Outcome::Forwarded(forwarding)) => respond::respond(state, cx, forwarding).await,
        Err(error) => reject(state, cx.audit, cx.ingress.format, error),
    }
}

/// Parse, authorise, guard, admit, look up the cache, forward.
async fn stages(
    state: &ProxyState,
    cx: &mut RequestContext,
    headers: &HeaderMap,
    body: Body,
) -> Result<Outcome, ProxyError> {
    // One view of the routing table for the whole request.
    let table = state.table();
    let mut request = parse::parse(state, cx, headers, body).await?;
    authorise::authorise(cx, &table)?;
    conversation::expand(state, cx, &mut request).await?;
    let plan = guard::pre_call(state, cx, headers, &mut request, &table).await?;
    let (admission, prompt_estimate) = admit::admit(state, cx, &request, &table).await?;
    let mut cache_key = cache::key(state, cx, &request, plan.as_ref());
    let admission = match cache::lookup(state, cx, &request, cache_key.as_mut(), admission).await {
        Ok(response) => return Ok(Outcome::Cached(response)),
        Err(admission) => admission,
    };
    let call = Call {
        format: cx.ingress.format,
        endpoint: cx.ingress.endpoint,
        model: &cx.model,
        body: &request.body,
        stream: request.fields.stream,
        passthrough: passthrough_headers(cx, headers),
        prompt_tokens: prompt_estimate,
        pinned: request.pinned.as_deref(),
    };
    let forwarded = forward(state.upstream(), &table, &call).await?;
    Ok(Outcome::Forwarded(respond::Forwarding { request, plan, admission, prompt_estimate, cache_key, forwarded }))
}

/// The client headers the codec passes on to an upstream of its own format.
fn passthrough_headers(cx: &RequestContext, headers: &HeaderMap) -> Vec<(String, String)> {
    cx.codec()
        .passthrough_headers()
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), headers.get(*name)?.to_str().ok()?.to_owned())))
        .collect()
}

/// Answers `error` in `format` and writes the request's record.
fn reject(state: &ProxyState, audit: AuditGuard, format: ApiFormat, error: ProxyError) -> Response {
    finish::rejected(state.metrics(), audit, &error);
    format.error_response(error)
}

macro_rules! data_route {
    ($name:ident, $format:expr, $endpoint:expr) => {
        #[tracing::instrument(name = "proxy.request", skip_all, fields(route = stringify!($name)))]
        pub(crate) async fn $name(
            State(state): State<ProxyState>,
            ConnectInfo(peer): ConnectInfo<SocketAddr>,
            request: Request,
        ) -> Response {
            // The pipeline's future is several kilobytes: boxed where it is made, it is not
            // copied again each time the layers above move the handler's future.
            Box::pin(handle(state, Ingress { format: $format, endpoint: $endpoint }, peer, request)).await
        }
    };
}

data_route!(chat_completions, ApiFormat::OpenAi, Endpoint::Chat);
data_route!(completions, ApiFormat::OpenAi, Endpoint::Completions);
data_route!(embeddings, ApiFormat::OpenAi, Endpoint::Embeddings);
data_route!(anthropic_messages, ApiFormat::Anthropic, Endpoint::Chat);
data_route!(responses, ApiFormat::Responses, Endpoint::Chat);

/// `GET /v1/responses`: the Codex CLI first tries the Responses API over a WebSocket (an upgrade
/// with `OpenAI-Beta: responses_websockets=...`). The gateway does not serve it: the upgrade is
/// answered 426 at once, without reading a key, so the client falls back to HTTP (`POST
/// /v1/responses`, streamed) with no wait. A plain GET is a 405, as for any POST-only route.
pub(crate) async fn responses_websocket(method: Method, OriginalUri(uri): OriginalUri, headers: HeaderMap) -> Response {
    let upgrade = headers
        .get(axum::http::header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return method_not_allowed(method, OriginalUri(uri)).await;
    }
    let body = serde_json::json!({"error": {
        "message": "this gateway serves the Responses API over HTTP only: POST /v1/responses (stream: true for events)",
        "type": "invalid_request_error", "param": null, "code": "websocket_not_supported",
    }});
    (axum::http::StatusCode::UPGRADE_REQUIRED, axum::Json(body)).into_response()
}

/// `GET /v1/models` and `GET /anthropic/v1/models`: the models this key may use, in the route's
/// format.
async fn list_models(state: ProxyState, format: ApiFormat, peer: SocketAddr, headers: HeaderMap) -> Response {
    match authenticate::authenticated(&state, &headers, peer).await {
        Ok(key) => {
            let table = state.table();
            let names: Vec<String> = table.names.iter().filter(|name| key.allows_model(name)).cloned().collect();
            axum::Json(format.codec().model_list(&names)).into_response()
        }
        Err(error) => format.error_response(error),
    }
}

/// `GET /v1/models`.
pub(crate) async fn list_models_openai(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    list_models(state, ApiFormat::OpenAi, peer, headers).await
}

/// `GET /anthropic/v1/models`.
pub(crate) async fn list_models_anthropic(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    list_models(state, ApiFormat::Anthropic, peer, headers).await
}

/// `GET /v1/responses/{id}`: a stored response of the key's tenant.
pub(crate) async fn get_response(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let key = authenticate::authenticated(&state, &headers, peer).await?;
        let stored = state.conversations().load(&key.key.tenant_id, &id).await?;
        stored.map(|stored| stored.response).ok_or(ProxyError::ResponseNotFound(id))
    }
    .await;
    match result {
        Ok(response) => axum::Json(response).into_response(),
        Err(error) => ApiFormat::Responses.error_response(error),
    }
}

/// `DELETE /v1/responses/{id}`: forgets a stored response of the key's tenant.
pub(crate) async fn delete_response(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let key = authenticate::authenticated(&state, &headers, peer).await?;
        if state.conversations().delete(&key.key.tenant_id, &id).await? {
            Ok(id)
        } else {
            Err(ProxyError::ResponseNotFound(id))
        }
    }
    .await;
    match result {
        Ok(id) => axum::Json(serde_json::json!({"id": id, "object": "response", "deleted": true})).into_response(),
        Err(error) => ApiFormat::Responses.error_response(error),
    }
}

/// The query of `GET /v1/responses/{id}/input_items`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct InputItemsQuery {
    order: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`: the input items a stored response answered.
pub(crate) async fn response_input_items(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<InputItemsQuery>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let key = authenticate::authenticated(&state, &headers, peer).await?;
        let stored = state.conversations().load(&key.key.tenant_id, &id).await?;
        stored.ok_or(ProxyError::ResponseNotFound(id))
    }
    .await;
    match result {
        Ok(stored) => {
            let asc = query.order.as_deref() == Some("asc");
            let limit = query.limit.unwrap_or(20).clamp(1, 100);
            axum::Json(crate::conversations::input_items_page(stored.input, asc, limit, query.after.as_deref()))
                .into_response()
        }
        Err(error) => ApiFormat::Responses.error_response(error),
    }
}

/// `POST /anthropic/v1/messages/count_tokens`: what Claude Code and the Anthropic SDKs ask before
/// a request. For a model served by Anthropic, Anthropic's own count (the request passed on, model
/// replaced, with the client's `anthropic-version` and `anthropic-beta`); for any other model an
/// estimate in the same shape: a quarter of the bytes of `system`, `messages` and `tools` as JSON
/// (the gateway's prompt estimate). Key, IP allowlist and `allowed_models` apply; nothing is
/// generated, so nothing is charged or audited.
pub(crate) async fn anthropic_count_tokens(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let key = authenticate::authenticated(&state, &headers, peer).await?;
        if body.len() > state.limits().max_body_bytes {
            return Err(ProxyError::PayloadTooLarge { limit: state.limits().max_body_bytes });
        }
        let mut request = parse::json_object(&body)?;
        let model = match request.get("model") {
            Some(serde_json::Value::String(model)) if !model.is_empty() => model.clone(),
            _ => {
                return Err(ProxyError::BadRequest {
                    message: "`model` is required".into(),
                    param: Some("model".into()),
                });
            }
        };
        if !key.allows_model(&model) {
            return Err(ProxyError::Forbidden(format!("this key may not use model `{model}`")));
        }
        let table = state.table();
        let deployment = table.pick(&model, &[]).ok_or_else(|| ProxyError::ModelNotFound(model.clone()))?;
        if deployment.provider != flowgate_common::settings::Provider::Anthropic {
            let bytes: usize = ["system", "messages", "tools"]
                .iter()
                .filter_map(|field| request.get(*field))
                .map(|value| serde_json::to_vec(value).map_or(0, |v| v.len()))
                .sum();
            return Ok(axum::Json(serde_json::json!({"input_tokens": bytes.div_ceil(4).max(1)})).into_response());
        }
        request["model"] = serde_json::Value::String(deployment.upstream_model_for(&model).into_owned());
        let mut call = state
            .upstream()
            .http
            .post(format!("{}/v1/messages/count_tokens", deployment.base_url))
            .json(&request)
            .timeout(deployment.timeout);
        if let Some(secret) = &deployment.api_key {
            use secrecy::ExposeSecret;
            call = call.header("x-api-key", secret.expose_secret());
        }
        let version = headers.get("anthropic-version").and_then(|v| v.to_str().ok()).unwrap_or("2023-06-01");
        call = call.header("anthropic-version", version);
        if let Some(beta) = headers.get("anthropic-beta").and_then(|v| v.to_str().ok()) {
            call = call.header("anthropic-beta", beta);
        }
        let answer = call.send().await.map_err(|error| ProxyError::Unavailable {
            message: format!("upstream unreachable: {}", error.without_url()),
            retry_after_secs: None,
        })?;
        let status =
            axum::http::StatusCode::from_u16(answer.status().as_u16()).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
        let bytes = answer.bytes().await.unwrap_or_default();
        Ok((status, [(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response())
    }
    .await;
    result.unwrap_or_else(|error| ApiFormat::Anthropic.error_response(error))
}

/// The format a path's errors are answered in: Anthropic's under `/anthropic/`, OpenAI's
/// elsewhere.
fn format_of_path(path: &str) -> ApiFormat {
    if path == "/anthropic" || path.starts_with("/anthropic/") { ApiFormat::Anthropic } else { ApiFormat::OpenAi }
}

/// A path the gateway does not serve, under one of its API prefixes: a 404 in that API's format.
pub(crate) async fn unknown_route(OriginalUri(uri): OriginalUri) -> Response {
    format_of_path(uri.path()).error_response(ProxyError::RouteNotFound(uri.path().to_owned()))
}

/// A known path asked with the wrong method: a 405 (with `Allow`) in the path's API format.
pub(crate) async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    format_of_path(uri.path())
        .error_response(ProxyError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() })
}

/// `GET /v1/guardrails`: the guardrails this key may use (forbidden ones are hidden).
pub(crate) async fn list_guardrails(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let key = authenticate::authenticated(&state, &headers, peer).await?;
        let policy = guard::policy_of(&key)?;
        Ok::<_, ProxyError>(state.catalog().visible(policy))
    }
    .await;
    match result {
        Ok(items) => axum::Json(serde_json::json!({"object": "list", "data": items})).into_response(),
        Err(error) => ApiFormat::OpenAi.error_response(error),
    }
}
