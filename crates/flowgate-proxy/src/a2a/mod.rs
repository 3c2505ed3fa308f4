//! A2A agent routing: remote agents (the config file's `a2a_agents` and those registered at
//! `/api/admin/a2a/agents`) reached through the gateway at `/a2a/{agent}`, with the virtual key
//! as the caller's credential. Served only when `mcp.enabled`.
//!
//! - `GET /a2a/{agent}/.well-known/agent-card.json`: the agent's card, its JSON-RPC endpoint
//!   rewritten to the gateway's;
//! - `POST /a2a/{agent}`: A2A JSON-RPC calls forwarded (`message/send`, `message/stream`,
//!   `tasks/get`, `tasks/cancel`, ... and A2A 1.0's `SendMessage`, `SendStreamingMessage`,
//!   `GetTask`, `CancelTask`, ...), event streams passed through as they arrive;
//! - `GET /.well-known/agent-card.json`: the gateway's own card, listing the agents the caller's
//!   key may reach.
//!
//! # Layout
//! - `registry`: the agents (config file and database, reloaded on `a2a:changed`) and their cards;
//! - `card`: the endpoint a card names, the rewritten card, the gateway's card;
//! - `forward`: one call (access, guardrails on text parts, limits, upstream, audit, metrics).

mod card;
mod forward;
pub(crate) mod parts;
mod registry;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flowgate_common::Settings;
use flowgate_common::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{Value, json};

use crate::auth::KeyInfo;
use crate::mcp::jsonrpc;
use crate::state::ProxyState;

/// `{agent, method, outcome}` labels of calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    agent: String,
    /// A known A2A method, or `(other)`.
    method: &'static str,
    /// `success`, `agent_error`, `refused`, `limited`, `upstream_error`, `timeout`,
    /// `client_disconnected`.
    outcome: &'static str,
}

/// `{agent}` labels of latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

/// The A2A metric families.
#[derive(Clone, Debug)]
struct A2aMetrics {
    /// `flowgate_a2a_calls_total`.
    calls: Family<CallLabels, Counter>,
    /// `flowgate_a2a_call_latency_seconds`: until the agent's answer (its headers, for a stream).
    latency: Family<AgentLabels, Histogram, fn() -> Histogram>,
}

impl A2aMetrics {
    fn register(metrics: &Metrics) -> Self {
        let this = Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(flowgate_common::metrics::latency_histogram),
        };
        metrics.register("a2a_calls", "A2A calls by agent, method and outcome", this.calls.clone());
        metrics.register(
            "a2a_call_latency_seconds",
            "Time a remote A2A agent took to answer (to its first byte for a stream)",
            this.latency.clone(),
        );
        this
    }
}

/// What the A2A routes share.
#[derive(Debug, Clone)]
pub(crate) struct A2aState {
    proxy: ProxyState,
    registry: registry::Registry,
    metrics: A2aMetrics,
}

/// The A2A routes over `proxy`. An agent of the config file that cannot be set up stops
/// start-up, naming it.
pub(crate) fn router(
    proxy: ProxyState,
    settings: &Settings,
    client: reqwest::Client,
    deps: &crate::Dependencies,
) -> Result<Router, String> {
    let registry =
        registry::Registry::start(settings, deps.database.clone(), &deps.shared, &deps.hasher, client, proxy.tasks())?;
    tracing::info!(agents = settings.a2a_agents.len(), "A2A agent routing enabled at /a2a");
    let state = A2aState { proxy, registry, metrics: A2aMetrics::register(&deps.metrics) };
    Ok(Router::new()
        .route("/.well-known/agent-card.json", get(gateway_card))
        .route("/a2a/{agent}/.well-known/agent-card.json", get(agent_card))
        .route("/a2a/{agent}", post(forward::call))
        .route("/a2a/{agent}/", post(forward::call))
        .with_state(state))
}

/// A JSON-RPC error answer with an HTTP status.
fn rpc_error(status: StatusCode, id: Option<&jsonrpc::Id>, code: i64, message: &str) -> Response {
    (status, Json(jsonrpc::error(id, code, message))).into_response()
}

/// The key of the request, with its IP allowlist checked; or the answer refusing it.
async fn authenticate(
    state: &A2aState,
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

/// Whether `key` (and its tenant) may reach `agent`: both `a2a_agents` lists allow it (an empty
/// list allows every agent). `Err` names the list that refuses.
fn may_reach(key: &flowgate_proto::keys::VirtualKey, agent: &str) -> Result<(), &'static str> {
    for (owner, patterns) in [("key", &key.a2a_agents), ("tenant", &key.tenant_a2a_agents)] {
        if !patterns.is_empty() && !patterns.iter().any(|p| crate::mcp::glob(p, agent)) {
            return Err(owner);
        }
    }
    Ok(())
}

/// The refusal of an agent the key may not reach.
fn not_allowed(agent: &str, owner: &str, id: Option<&jsonrpc::Id>) -> Response {
    let message = format!("this key may not reach the A2A agent `{agent}` (not in the {owner}'s a2a_agents)");
    rpc_error(StatusCode::FORBIDDEN, id, jsonrpc::FORBIDDEN, &message)
}

/// 404 for an agent that is not configured.
fn unknown_agent(agent: &str) -> Response {
    let message = format!("no A2A agent named `{agent}` is configured");
    rpc_error(StatusCode::NOT_FOUND, None, jsonrpc::INVALID_REQUEST, &message)
}

/// The gateway's base URL as the caller reached it: `X-Forwarded-Proto` and `X-Forwarded-Host`
/// (set by the reverse proxy in front) or `Host`. A value that is not a plain host is ignored.
fn base_url(headers: &HeaderMap) -> String {
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or(v).trim());
    let scheme = match header("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c)))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// `GET /a2a/{agent}/.well-known/agent-card.json` (a key that may reach the agent).
#[tracing::instrument(name = "a2a.agent_card", skip_all, fields(agent = %agent))]
async fn agent_card(
    State(state): State<A2aState>,
    Path(agent): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (key, _) = match authenticate(&state, &headers, peer).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    // Only an authenticated caller learns which agents exist.
    let Some(found) = state.registry.get(&agent) else { return unknown_agent(&agent) };
    if let Err(owner) = may_reach(&key.key, &agent) {
        return not_allowed(&agent, owner, None);
    }
    match state.registry.card(&found).await {
        Ok(card) => {
            let gateway_url = format!("{}/a2a/{agent}", base_url(&headers));
            Json(card::rewrite(&card.document, &gateway_url)).into_response()
        }
        Err(error) => {
            tracing::warn!(%agent, %error, "an A2A agent's card is unavailable");
            let message = format!("the A2A agent `{agent}` is unavailable: {error}");
            rpc_error(StatusCode::BAD_GATEWAY, None, jsonrpc::UPSTREAM_UNAVAILABLE, &message)
        }
    }
}

/// `GET /.well-known/agent-card.json`: the gateway's card; with a key, the agents it may reach
/// (a key that is not valid is refused, so a caller is never shown an empty list by mistake).
#[tracing::instrument(name = "a2a.gateway_card", skip_all)]
async fn gateway_card(
    State(state): State<A2aState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let has_key = flowgate_common::auth::bearer_token(&headers).is_some_and(|t| !t.is_empty());
    let agents = state.registry.all();
    let mut listed = Vec::new();
    if has_key {
        let (key, _) = match authenticate(&state, &headers, peer).await {
            Ok(found) => found,
            Err(refusal) => return refusal,
        };
        listed = agents
            .values()
            .filter(|agent| may_reach(&key.key, &agent.name).is_ok())
            .map(|agent| card::Listed { name: &agent.name, description: agent.description.as_deref() })
            .collect();
    }
    Json(card::gateway(&base_url(&headers), &listed)).into_response()
}

/// A transport error without the URL (which may carry credentials in its query).
fn describe_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer broke off".to_owned()
    } else if let Some(status) = error.status() {
        format!("HTTP {}", status.as_u16())
    } else {
        "request failed".to_owned()
    }
}

/// A response body, refused past `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe_error(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON-RPC answer's error `code`, when it is an error.
fn error_code(answer: &Value) -> Option<i64> {
    answer.get("error").map(|e| e.get("code").and_then(Value::as_i64).unwrap_or(0))
}

/// The answer to a request that named no id: JSON-RPC has nothing to answer, A2A has no
/// notifications, so it is refused.
fn needs_id() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"jsonrpc": "2.0", "id": null, "error": {"code": jsonrpc::INVALID_REQUEST, "message": "A2A calls are JSON-RPC requests with an id"}})),
    )
        .into_response()
}
