//! The MCP gateway: an MCP server at `/api/mcp` (Streamable HTTP transport) that aggregates the
//! tools of the upstream MCP servers in `mcp_servers`, named `server__tool`, and serves each
//! upstream alone at `/api/mcp/{server}`. Served only when `mcp.enabled`.
//!
//! # Layout
//! - `jsonrpc`: parsing a client's message (outside bytes) and building answers;
//! - `session`: stateless signed session ids, valid on every replica;
//! - `http`: the transport (auth, session and version headers, status codes); `legacy`: the
//!   older HTTP+SSE transport (`/api/mcp/sse`);
//! - `methods`: `ping`, `tools/list`, `tools/call` (guardrails, limits, audit, metrics, cache);
//!   `catalog`: prompts and resources passed through;
//! - `access`: the key's allow- and deny-lists (globs); `cache`: the tool-call cache;
//! - `upstream/`: the clients for upstream servers (Streamable HTTP, supervised stdio).

mod access;
mod cache;
mod catalog;
mod http;
pub(crate) mod jsonrpc;
mod legacy;
mod methods;
mod session;
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use flowgate_common::Settings;
use flowgate_common::keys::KeyHasher;
use flowgate_common::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::state::ProxyState;

pub(crate) use self::access::glob;

/// One configured upstream server.
#[derive(Debug)]
struct Server {
    upstream: upstream::Upstream,
    /// Tools offered at all (globs on the bare name); empty: all.
    allowed_tools: Vec<String>,
    /// Tools never offered.
    disallowed_tools: Vec<String>,
    /// Tool → seconds its answers are cached.
    cacheable: BTreeMap<String, u64>,
    /// Tool (or `*`) → nano-dollars a call costs.
    costs: BTreeMap<String, i64>,
}

impl Server {
    /// What one call of `tool` costs, in nano-dollars.
    fn cost(&self, tool: &str) -> i64 {
        self.costs.get(tool).or_else(|| self.costs.get("*")).copied().unwrap_or(0)
    }
}

/// `{server, tool, outcome}` labels of tool calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    server: String,
    tool: String,
    /// `success`, `tool_error`, `cache_hit`, `refused`, `limited`, `upstream_error`, `timeout`.
    outcome: &'static str,
}

/// `{server, tool}` labels of tool-call latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    server: String,
    tool: String,
}

/// The gateway's metric families.
#[derive(Clone, Debug)]
struct McpMetrics {
    /// `flowgate_mcp_tool_calls_total`.
    calls: Family<CallLabels, Counter>,
    /// `flowgate_mcp_tool_call_latency_seconds` (upstream calls, cache hits excluded).
    latency: Family<ToolLabels, Histogram, fn() -> Histogram>,
}

impl McpMetrics {
    fn register(metrics: &Metrics) -> Self {
        let this = Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(flowgate_common::metrics::latency_histogram),
        };
        metrics.register("mcp_tool_calls", "MCP tool calls by server, tool and outcome", this.calls.clone());
        metrics.register(
            "mcp_tool_call_latency_seconds",
            "Time an upstream MCP server took to answer a tool call",
            this.latency.clone(),
        );
        this
    }
}

/// What the MCP routes share.
#[derive(Debug)]
pub(crate) struct Gateway {
    servers: BTreeMap<String, Server>,
    signer: session::Signer,
    cache: cache::ToolCache,
    metrics: McpMetrics,
    /// Event streams of the HTTP+SSE transport open on this process.
    legacy: legacy::LegacySessions,
}

/// The state of the MCP routes: the proxy's (keys, audit) and the gateway's.
#[derive(Debug, Clone)]
pub(crate) struct McpState {
    proxy: ProxyState,
    gateway: Arc<Gateway>,
}

/// The MCP routes over `proxy`, with the upstreams of `settings.mcp_servers` started (stdio
/// servers under the proxy's tasks). An upstream that cannot be set up stops start-up, naming it.
pub(crate) fn router(
    proxy: ProxyState,
    settings: &Settings,
    client: reqwest::Client,
    hasher: &KeyHasher,
    shared: &flowgate_db::SharedState,
    metrics: &Metrics,
) -> Result<Router, String> {
    let mut servers = BTreeMap::new();
    for (name, config) in &settings.mcp_servers {
        let upstream = upstream::Upstream::start(name, config, client.clone(), proxy.tasks())?;
        servers.insert(
            name.clone(),
            Server {
                upstream,
                allowed_tools: config.allowed_tools.clone(),
                disallowed_tools: config.disallowed_tools.clone(),
                cacheable: config.cacheable_tools.clone(),
                costs: config
                    .tool_costs
                    .iter()
                    .map(|(tool, usd)| {
                        #[expect(clippy::cast_possible_truncation, reason = "validated at most 1000 USD")]
                        let nanos = (usd * crate::routing::pricing::NANOS_PER_USD).round() as i64;
                        (tool.clone(), nanos)
                    })
                    .collect(),
            },
        );
    }
    tracing::info!(servers = servers.len(), "MCP gateway enabled at /api/mcp");
    let gateway = Arc::new(Gateway {
        servers,
        signer: session::Signer::new(hasher),
        cache: cache::ToolCache::new(shared),
        metrics: McpMetrics::register(metrics),
        legacy: legacy::LegacySessions::default(),
    });
    let state = McpState { proxy, gateway };
    Ok(Router::new()
        .route("/api/mcp", post(http::post_aggregate).get(http::no_stream).delete(http::no_delete))
        .route("/api/mcp/", post(http::post_aggregate).get(http::no_stream).delete(http::no_delete))
        .route("/api/mcp/cache/stats", get(http::cache_stats))
        .route("/api/mcp/sse", get(legacy::open_aggregate))
        .route("/api/mcp/messages", post(legacy::post_message))
        .route("/api/mcp/{server}/sse", get(legacy::open_server))
        .route("/api/mcp/{server}", post(http::post_server).get(http::no_stream).delete(http::no_delete))
        .route("/api/mcp/{server}/", post(http::post_server).get(http::no_stream).delete(http::no_delete))
        .with_state(state))
}
