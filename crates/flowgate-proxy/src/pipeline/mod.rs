//! The request pipeline. [`handle`] runs the stages in order; each is a function in its own module
//! and each may stop the request with a [`ProxyError`], which is answered in the caller's format.
//!
//! 1. [`authenticate`]: the virtual key (format and checksum, cache, api-server); builds the
//!    [`RequestContext`];
//! 2. [`parse`]: the body (size limit → 413, JSON → 400) and the fields the codec reads;
//! 3. [`authorise`]: client IP against the key's allowlist, model against `allowed_models`, model
//!    routable;
//! 4. [`guard`]: the guardrail plan and the pre-call scan (may rewrite the body or reroute);
//! 5. [`admit`]: rate limits and budgets, claimed together;
//! 6. [`cache`]: an exact-match hit is answered here;
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
pub(crate) mod finish;
pub(crate) mod guard;
pub(crate) mod parse;
pub(crate) mod respond;

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

/// Runs the pipeline for one request and answers it.
async fn handle(state: ProxyState, ingress: Ingress, peer: SocketAddr, request: Request) -> Response {
    // Nested routers see the path without their prefix; the audit trail wants the one asked for.
    let route = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path().to_owned(), |uri| uri.path().to_owned());
    let mut audit = AuditGuard::start(state.audit().clone(), route);
    let request_id = HeaderValue::from_str(audit.request_id()).ok();
    let (parts, body) = request.into_parts();
    let client_ip = crate::auth::client_ip(peer.ip(), &parts.headers, &state.limits().trusted_proxies);
    audit.record().client_ip = Some(client_ip.to_string());
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
    let plan = guard::pre_call(state, cx, headers, &mut request, &table).await?;
    let (admission, prompt_estimate) = admit::admit(state, cx, &request, &table).await?;
    let cache_key = cache::key(state, cx, &request, plan.as_ref());
    let admission = match cache::lookup(state, cx, &request, cache_key.as_ref(), admission).await {
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
            handle(state, Ingress { format: $format, endpoint: $endpoint }, peer, request).await
        }
    };
}

data_route!(chat_completions, ApiFormat::OpenAi, Endpoint::Chat);
data_route!(completions, ApiFormat::OpenAi, Endpoint::Completions);
data_route!(embeddings, ApiFormat::OpenAi, Endpoint::Embeddings);
data_route!(anthropic_messages, ApiFormat::Anthropic, Endpoint::Chat);

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
