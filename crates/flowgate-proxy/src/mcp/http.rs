//! The Streamable HTTP transport, server side: one JSON-RPC message per POST, answered as JSON
//! (a request) or 202 (a notification or response). The virtual key authenticates every POST;
//! `initialize` opens a session (`Mcp-Session-Id`, signed, see `session`), and every later
//! request must carry it and, when it sends one, a supported `MCP-Protocol-Version`. `GET` with
//! the session opens the listening stream: server-initiated messages as SSE events
//! (`notifications/tools/list_changed` and its prompts and resources siblings, when upstream
//! servers are added or removed), a comment every 15 s while idle. `DELETE` is 405 (stateless
//! sessions end by expiring).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::McpState;
use super::jsonrpc::{self, Id, Message};
use crate::auth::KeyInfo;

/// Protocol versions served, newest first (the `initialize` handshake's).
pub(crate) const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// `Mcp-Session-Id`.
const SESSION_HEADER: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
const VERSION_HEADER: &str = "mcp-protocol-version";

/// A JSON-RPC error answer with an HTTP status.
pub(crate) fn rpc_error(status: StatusCode, id: Option<&Id>, code: i64, message: &str) -> Response {
    (status, Json(jsonrpc::error(id, code, message))).into_response()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The key of the request, with its IP allowlist checked; or the answer refusing it.
pub(crate) async fn authenticate(
    state: &McpState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(Arc<KeyInfo>, String), Response> {
    let key = state.proxy.auth().authenticate(headers).await.map_err(|error| {
        rpc_error(error.status(), None, jsonrpc::INVALID_REQUEST, &format!("{}: {error}", error.code()))
    })?;
    let ip = crate::auth::caller_ip(peer.ip(), headers, state.proxy.limits());
    if !key.allows_ip(ip) {
        return Err(rpc_error(
            StatusCode::FORBIDDEN,
            None,
            jsonrpc::FORBIDDEN,
            "this key may not be used from this address (ip_allowlist)",
        ));
    }
    Ok((key, ip.to_string()))
}

/// `POST /api/mcp`: the aggregate of every server the key may use.
#[tracing::instrument(name = "mcp.post", skip_all)]
pub(crate) async fn post_aggregate(
    State(state): State<McpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, None, peer, headers, body).await
}

/// `POST /api/mcp/{server}`: one server alone, its tools under their own names.
#[tracing::instrument(name = "mcp.post_server", skip_all, fields(server = %server))]
pub(crate) async fn post_server(
    State(state): State<McpState>,
    Path(server): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(state, Some(server), peer, headers, body).await
}

async fn handle(state: McpState, scope: Option<String>, peer: SocketAddr, headers: HeaderMap, body: Body) -> Response {
    let (key, client_ip) = match authenticate(&state, &headers, peer).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    // Only an authenticated caller learns which servers exist.
    if let Some(server) = &scope
        && !state.gateway.servers().contains_key(server)
    {
        return unknown_server(server);
    }
    let body = match read_body(&state, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let message = match jsonrpc::parse(&body) {
        Ok(message) => message,
        Err(bad) => return rpc_error(StatusCode::BAD_REQUEST, bad.id.as_ref(), bad.code, &bad.message),
    };
    let (id, method, params) = match message {
        Message::Notification { .. } | Message::Response => return StatusCode::ACCEPTED.into_response(),
        Message::Request { id, method, params } => (id, method, params),
    };
    if let Some(server) = &scope
        && let Err(refusal) = super::access::KeyAccess::of(&key.key).server(server)
    {
        return rpc_error(StatusCode::FORBIDDEN, Some(&id), jsonrpc::FORBIDDEN, &refusal.message(server, ""));
    }
    if method == "initialize" {
        return initialize(&state, &key, &id, &params);
    }
    let Some(session_id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Some(&id),
            jsonrpc::INVALID_REQUEST,
            "missing Mcp-Session-Id: send `initialize` first and pass the session id it returns",
        );
    };
    let Some(session) = state.gateway.signer.check(session_id, &key.key.id, now_secs()) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            Some(&id),
            jsonrpc::INVALID_REQUEST,
            "unknown or expired MCP session: initialize a new one",
        );
    };
    if let Some(version) = headers.get(VERSION_HEADER) {
        let version = version.to_str().unwrap_or_default();
        if !PROTOCOL_VERSIONS.contains(&version) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                &format!("unsupported MCP-Protocol-Version `{version}`; supported: {}", PROTOCOL_VERSIONS.join(", ")),
            );
        }
    }
    let call = super::methods::Call::new(&state, &key, scope.as_deref(), &client_ip);
    let answer = call.dispatch(&id, &method, params).await;
    let mut response = (StatusCode::OK, Json(answer)).into_response();
    if let Ok(value) = HeaderValue::from_str(&session.protocol_version) {
        response.headers_mut().insert(VERSION_HEADER, value);
    }
    response
}

/// `initialize`'s result: the version negotiated (the client's when served, else the newest) and
/// what the gateway offers.
pub(crate) fn initialize_result(params: &serde_json::Map<String, Value>) -> (Value, &'static str) {
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
    let version = PROTOCOL_VERSIONS.iter().find(|v| **v == asked).copied().unwrap_or(PROTOCOL_VERSIONS[0]);
    let result = serde_json::json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"subscribe": false, "listChanged": true},
        },
        "serverInfo": {"name": "flowgate", "version": env!("CARGO_PKG_VERSION")},
    });
    (result, version)
}

/// `initialize`: the negotiated version and a new session.
fn initialize(state: &McpState, key: &KeyInfo, id: &Id, params: &serde_json::Map<String, Value>) -> Response {
    let (result, version) = initialize_result(params);
    let session = state.gateway.signer.issue(&key.key.id, version, now_secs());
    let mut response = (StatusCode::OK, Json(jsonrpc::result(id, result))).into_response();
    if let Ok(value) = HeaderValue::from_str(&session) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// The request body, up to `proxy.max_body_bytes` (a larger one is a 413 in JSON-RPC's shape).
pub(crate) async fn read_body(state: &McpState, body: Body) -> Result<Bytes, Response> {
    let limit = state.proxy.limits().max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        let message = format!("the request body is larger than {limit} bytes (proxy.max_body_bytes)");
        rpc_error(StatusCode::PAYLOAD_TOO_LARGE, None, jsonrpc::INVALID_REQUEST, &message)
    })
}

/// 404 for a `{server}` that is not configured.
pub(crate) fn unknown_server(server: &str) -> Response {
    let message = format!("no MCP server named `{server}` is configured");
    rpc_error(StatusCode::NOT_FOUND, None, jsonrpc::INVALID_REQUEST, &message)
}

/// How often an idle listening stream gets a comment, so proxies in between keep it open.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /api/mcp`: the listening stream of a session.
#[tracing::instrument(name = "mcp.listen", skip_all)]
pub(crate) async fn listen_aggregate(
    State(state): State<McpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    listen(state, None, peer, headers).await
}

/// `GET /api/mcp/{server}`: the listening stream of a session with one server.
#[tracing::instrument(name = "mcp.listen_server", skip_all, fields(server = %server))]
pub(crate) async fn listen_server(
    State(state): State<McpState>,
    Path(server): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    listen(state, Some(server), peer, headers).await
}

async fn listen(state: McpState, scope: Option<String>, peer: SocketAddr, headers: HeaderMap) -> Response {
    let (key, _) = match authenticate(&state, &headers, peer).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    if let Some(server) = &scope {
        if !state.gateway.servers().contains_key(server) {
            return unknown_server(server);
        }
        if let Err(refusal) = super::access::KeyAccess::of(&key.key).server(server) {
            return rpc_error(StatusCode::FORBIDDEN, None, jsonrpc::FORBIDDEN, &refusal.message(server, ""));
        }
    }
    let accepts_events = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream") || v.contains("*/*"));
    if !accepts_events {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            None,
            jsonrpc::INVALID_REQUEST,
            "the listening stream is an event stream: send Accept: text/event-stream",
        );
    }
    let Some(session_id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "missing Mcp-Session-Id: send `initialize` first and pass the session id it returns",
        );
    };
    let Some(session) = state.gateway.signer.check(session_id, &key.key.id, now_secs()) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            None,
            jsonrpc::INVALID_REQUEST,
            "unknown or expired MCP session: initialize a new one",
        );
    };
    let receiver = state.gateway.announcements.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match tokio::time::timeout(KEEP_ALIVE, receiver.recv()).await {
                Ok(Ok(event)) => return Some((Ok::<_, std::convert::Infallible>(event), receiver)),
                // Fell behind: the notices skipped say only that lists changed, as the next one will.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                Err(_) => return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), receiver)),
            }
        }
    });
    let mut response =
        ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream))
            .into_response();
    if let Ok(value) = HeaderValue::from_str(&session.protocol_version) {
        response.headers_mut().insert(VERSION_HEADER, value);
    }
    response
}

/// `DELETE`: sessions are stateless and end by expiring.
pub(crate) async fn no_delete() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        Json(jsonrpc::error(None, jsonrpc::INVALID_REQUEST, "sessions cannot be ended by the client; they expire")),
    )
        .into_response()
}

/// `GET /api/mcp/cache/stats` (any valid virtual key).
#[tracing::instrument(name = "mcp.cache_stats", skip_all)]
pub(crate) async fn cache_stats(
    State(state): State<McpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = authenticate(&state, &headers, peer).await {
        return refusal;
    }
    Json(state.gateway.cache.stats().await).into_response()
}
