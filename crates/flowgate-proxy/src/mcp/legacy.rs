//! The older HTTP+SSE transport (protocol 2024-11-05), for clients that still use it: `GET
//! /api/mcp/sse` (or `/api/mcp/{server}/sse`) opens an event stream whose first event
//! (`endpoint`) names where to POST messages (`/api/mcp/messages?session_id=…`); each POST is
//! answered 202 and its JSON-RPC answer is sent as a `message` event on the stream. The stream is
//! held by the replica that opened it, so a deployment with several replicas needs sticky routing
//! for this transport (the Streamable HTTP transport at `/api/mcp` does not).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::http::{authenticate, initialize_result, rpc_error};
use super::jsonrpc::{self, Message};
use super::{Gateway, McpState};

/// How often an idle stream gets a comment, so proxies in between keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Answers waiting to be sent on one stream.
const QUEUE: usize = 64;

/// One open stream.
#[derive(Debug)]
pub(crate) struct LegacySession {
    key_id: String,
    scope: Option<String>,
    client_ip: String,
    pub(super) events: mpsc::Sender<Bytes>,
}

/// The open streams of this process, by session id.
pub(crate) type LegacySessions = Mutex<HashMap<String, LegacySession>>;

/// Removes the session when its stream ends (the client left).
struct Registration {
    gateway: Arc<Gateway>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.gateway.legacy.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

/// `GET /api/mcp/sse`.
#[tracing::instrument(name = "mcp.sse", skip_all)]
pub(crate) async fn open_aggregate(
    State(state): State<McpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    open(state, None, peer, headers).await
}

/// `GET /api/mcp/{server}/sse`.
#[tracing::instrument(name = "mcp.sse_server", skip_all, fields(server = %server))]
pub(crate) async fn open_server(
    State(state): State<McpState>,
    Path(server): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    open(state, Some(server), peer, headers).await
}

async fn open(state: McpState, scope: Option<String>, peer: SocketAddr, headers: HeaderMap) -> Response {
    let (key, client_ip) = match authenticate(&state, &headers, peer).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    if let Some(server) = &scope {
        if !state.gateway.servers().contains_key(server) {
            return super::http::unknown_server(server);
        }
        if let Err(refusal) = super::access::KeyAccess::of(&key.key).server(server) {
            return rpc_error(StatusCode::FORBIDDEN, None, jsonrpc::FORBIDDEN, &refusal.message(server, ""));
        }
    }
    let mut raw = [0u8; 16];
    if SystemRandom::new().fill(&mut raw).is_err() {
        return rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            jsonrpc::INTERNAL_ERROR,
            "no randomness for a session id",
        );
    }
    let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let (events, receiver) = mpsc::channel::<Bytes>(QUEUE);
    let endpoint = crate::sse::encode(Some("endpoint"), &format!("/api/mcp/messages?session_id={id}"));
    let session = LegacySession { key_id: key.key.id.clone(), scope, client_ip, events };
    state.gateway.legacy.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), session);
    let registration = Registration { gateway: state.gateway.clone(), id };
    let stream = futures_util::stream::unfold(
        (Some(endpoint), registration, receiver),
        |(first, registration, mut receiver)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(first), (None, registration, receiver)));
            }
            let next = match tokio::time::timeout(KEEP_ALIVE, receiver.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok(next), (None, registration, receiver)))
        },
    );
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream))
        .into_response()
}

/// `?session_id=` of a POST.
#[derive(Debug, Deserialize)]
pub(crate) struct Target {
    session_id: String,
}

/// `POST /api/mcp/messages?session_id=…`.
#[tracing::instrument(name = "mcp.messages", skip_all)]
pub(crate) async fn post_message(
    State(state): State<McpState>,
    Query(target): Query<Target>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (key, _) = match authenticate(&state, &headers, peer).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let (scope, client_ip, events) = {
        let sessions = state.gateway.legacy.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get(&target.session_id) {
            Some(session) if session.key_id == key.key.id => {
                (session.scope.clone(), session.client_ip.clone(), session.events.clone())
            }
            _ => {
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "unknown session: open the event stream (GET /api/mcp/sse) first",
                );
            }
        }
    };
    let body = match super::http::read_body(&state, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let (id, method, params) = match jsonrpc::parse(&body) {
        Err(bad) => return rpc_error(StatusCode::BAD_REQUEST, bad.id.as_ref(), bad.code, &bad.message),
        Ok(Message::Notification { .. } | Message::Response) => return StatusCode::ACCEPTED.into_response(),
        Ok(Message::Request { id, method, params }) => (id, method, params),
    };
    let answer = if method == "initialize" {
        jsonrpc::result(&id, initialize_result(&params).0)
    } else {
        let call = super::methods::Call::new(&state, &key, scope.as_deref(), &client_ip);
        call.dispatch(&id, &method, params).await
    };
    if events.send(crate::sse::encode_json(Some("message"), &answer)).await.is_err() {
        return rpc_error(StatusCode::NOT_FOUND, Some(&id), jsonrpc::INVALID_REQUEST, "the event stream has closed");
    }
    StatusCode::ACCEPTED.into_response()
}
