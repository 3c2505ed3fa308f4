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
//! - `upstream/`: the clients for upstream servers (Streamable HTTP, supervised stdio);
//!   `registered`: the servers registered at run time (`/api/admin/mcp/servers`), reloaded on
//!   `mcp:servers:changed`, with `notifications/*/list_changed` announced to open streams;
//!   `published`: the tool catalog written to the database for the api-server's `/api/mcp/tools`.

mod access;
mod cache;
mod catalog;
mod credentials;
mod http;
pub(crate) mod jsonrpc;
mod legacy;
mod methods;
mod published;
mod registered;
mod session;
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use flowgate_common::Settings;
use flowgate_common::metrics::Metrics;
use flowgate_common::settings::McpServerSettings;
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
    /// When a registered server's row last changed (0 for the config file's): an unchanged
    /// server keeps its client (and connection) across reloads.
    revision: i64,
    /// Its settings, to make clients with a key's or tenant's credential (http and sse only).
    settings: Option<McpServerSettings>,
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
    /// The upstream servers: the config file's, then those registered at run time.
    servers: ArcSwap<BTreeMap<String, Arc<Server>>>,
    signer: session::Signer,
    cache: cache::ToolCache,
    metrics: McpMetrics,
    /// Event streams of the HTTP+SSE transport open on this process.
    legacy: legacy::LegacySessions,
    /// Server-initiated messages for the open listening streams (`GET /api/mcp`), as SSE events.
    announcements: tokio::sync::broadcast::Sender<Bytes>,
    /// Wakes the writer of the shared tool catalog (`published`) when the servers changed.
    catalog_stale: tokio::sync::Notify,
    /// Per-key and per-tenant upstream credentials.
    credentials: credentials::Credentials,
}

impl Gateway {
    /// The upstream servers now.
    fn servers(&self) -> Arc<BTreeMap<String, Arc<Server>>> {
        self.servers.load_full()
    }

    /// Replaces the servers; when a server came, went or changed, tells every open stream
    /// (listening streams and the older transport's) that the tools, prompts and resources changed.
    fn replace_servers(&self, servers: BTreeMap<String, Arc<Server>>) {
        let changed = {
            let before = self.servers.load();
            !before.iter().map(|(name, s)| (name, s.revision)).eq(servers.iter().map(|(name, s)| (name, s.revision)))
        };
        self.servers.store(Arc::new(servers));
        self.catalog_stale.notify_one();
        if changed {
            for method in [
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/resources/list_changed",
            ] {
                self.announce(&serde_json::json!({"jsonrpc": "2.0", "method": method}));
            }
        }
    }

    /// Sends `message` on every open stream of this process.
    fn announce(&self, message: &serde_json::Value) {
        let event = crate::sse::encode_json(Some("message"), message);
        let _receivers = self.announcements.send(event.clone());
        let sessions = self.legacy.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for session in sessions.values() {
            // A stream whose queue is full misses the notice rather than holding the others up.
            let _sent = session.events.try_send(event.clone());
        }
    }
}

/// The state of the MCP routes: the proxy's (keys, audit) and the gateway's.
#[derive(Debug, Clone)]
pub(crate) struct McpState {
    proxy: ProxyState,
    gateway: Arc<Gateway>,
}

/// One server's client and tool options from its settings (the config file's or a registered
/// server's); a stdio server's process is started under `tasks`.
fn build_server(
    name: &str,
    config: &McpServerSettings,
    client: reqwest::Client,
    tasks: &flowgate_common::tasks::Tasks,
    revision: i64,
) -> Result<Server, String> {
    let upstream = upstream::Upstream::start(name, config, client, tasks)?;
    Ok(Server {
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
        revision,
        settings: (config.transport() != flowgate_common::settings::McpTransport::Stdio).then(|| config.clone()),
    })
}

/// The MCP routes over `proxy`, with the upstreams of `settings.mcp_servers` started (stdio
/// servers under the proxy's tasks) and those registered at run time loaded and kept fresh. An
/// upstream of the config file that cannot be set up stops start-up, naming it.
pub(crate) fn router(
    proxy: ProxyState,
    settings: &Settings,
    client: reqwest::Client,
    deps: &crate::Dependencies,
) -> Result<Router, String> {
    let mut servers = BTreeMap::new();
    for (name, config) in &settings.mcp_servers {
        servers.insert(name.clone(), Arc::new(build_server(name, config, client.clone(), proxy.tasks(), 0)?));
    }
    tracing::info!(servers = servers.len(), "MCP gateway enabled at /api/mcp");
    let configured = servers.clone();
    let gateway = Arc::new(Gateway {
        servers: ArcSwap::from_pointee(servers),
        signer: session::Signer::new(&deps.hasher),
        cache: cache::ToolCache::new(&deps.shared),
        metrics: McpMetrics::register(&deps.metrics),
        legacy: legacy::LegacySessions::default(),
        announcements: tokio::sync::broadcast::channel(64).0,
        catalog_stale: tokio::sync::Notify::new(),
        credentials: credentials::Credentials::start(deps, client.clone(), proxy.tasks()),
    });
    published::start(gateway.clone(), deps.database.clone(), proxy.tasks());
    registered::start(gateway.clone(), configured, deps, client, proxy.tasks());
    let state = McpState { proxy, gateway };
    Ok(Router::new()
        .route("/api/mcp", post(http::post_aggregate).get(http::listen_aggregate).delete(http::no_delete))
        .route("/api/mcp/", post(http::post_aggregate).get(http::listen_aggregate).delete(http::no_delete))
        .route("/api/mcp/cache/stats", get(http::cache_stats))
        .route("/api/mcp/sse", get(legacy::open_aggregate))
        .route("/api/mcp/messages", post(legacy::post_message))
        .route("/api/mcp/{server}/sse", get(legacy::open_server))
        .route("/api/mcp/{server}", post(http::post_server).get(http::listen_server).delete(http::no_delete))
        .route("/api/mcp/{server}/", post(http::post_server).get(http::listen_server).delete(http::no_delete))
        .with_state(state))
}
