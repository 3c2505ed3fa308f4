//! The upstream MCP servers: one client per configured server, over Streamable HTTP (`http.rs`),
//! the older HTTP+SSE transport (`sse.rs`) or a supervised child process spoken to over stdio
//! (`stdio.rs`). Both answer the same
//! question: send one JSON-RPC request, get its `result` (or the server's error) back.

mod http;
mod sse;
mod stdio;

use std::time::Duration;

use flowgate_common::settings::{McpServerSettings, McpTransport};
use flowgate_common::tasks::Tasks;
use serde_json::{Map, Value, json};

/// The protocol version the gateway offers upstreams.
pub(crate) const UPSTREAM_PROTOCOL_VERSION: &str = "2025-11-25";

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The server answered with a JSON-RPC error: passed on to the client as it is.
    #[error("{message}")]
    Rpc {
        /// Its code.
        code: i64,
        /// Its message.
        message: String,
        /// Its data.
        data: Option<Value>,
    },
    /// The server could not be reached, or its answer was not MCP.
    #[error("{0}")]
    Unavailable(String),
    /// No answer within the server's `timeout_secs`.
    #[error("no answer within {0} s")]
    Timeout(u64),
}

impl UpstreamError {
    /// Status and code for the audit trail and metrics.
    pub(crate) fn audit_status(&self) -> (i64, &'static str) {
        match self {
            Self::Rpc { .. } => (502, "upstream_rpc_error"),
            Self::Unavailable(_) => (502, "upstream_unavailable"),
            Self::Timeout(_) => (504, "upstream_timeout"),
        }
    }
}

/// An answer's `result`, or its error, from a JSON-RPC response object.
pub(crate) fn read_response(message: &Value) -> Result<Value, UpstreamError> {
    if let Some(error) = message.get("error") {
        return Err(UpstreamError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(super::jsonrpc::INTERNAL_ERROR),
            message: error.get("message").and_then(Value::as_str).unwrap_or("upstream error").to_owned(),
            data: error.get("data").cloned(),
        });
    }
    message
        .get("result")
        .cloned()
        .ok_or_else(|| UpstreamError::Unavailable("the server's answer has neither `result` nor `error`".to_owned()))
}

/// The `initialize` params the gateway sends upstream.
pub(crate) fn initialize_params() -> Value {
    json!({
        "protocolVersion": UPSTREAM_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "flowgate", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// One upstream server's client.
#[derive(Debug)]
pub(crate) enum Upstream {
    /// Streamable HTTP.
    Http(Box<http::HttpUpstream>),
    /// The older HTTP+SSE transport.
    Sse(sse::SseUpstream),
    /// A child process.
    Stdio(stdio::StdioUpstream),
}

impl Upstream {
    /// The client for `settings`; a stdio server's process is started (and kept running) under `tasks`.
    pub(crate) fn start(
        name: &str,
        settings: &McpServerSettings,
        client: reqwest::Client,
        tasks: &Tasks,
    ) -> Result<Self, String> {
        let timeout = Duration::from_secs(settings.timeout_secs);
        match settings.transport() {
            McpTransport::Http => Ok(Self::Http(Box::new(http::HttpUpstream::new(name, settings, client, timeout)?))),
            McpTransport::Stdio => Ok(Self::Stdio(stdio::StdioUpstream::start(name, settings, timeout, tasks))),
            McpTransport::Sse => Ok(Self::Sse(sse::SseUpstream::start(name, settings, client, timeout, tasks)?)),
        }
    }

    /// Sends `method` with `params` and waits for the answer.
    pub(crate) async fn request(&self, method: &str, params: Map<String, Value>) -> Result<Value, UpstreamError> {
        match self {
            Self::Http(upstream) => upstream.request(method, params).await,
            Self::Sse(upstream) => upstream.request(method, params).await,
            Self::Stdio(upstream) => upstream.request(method, params).await,
        }
    }
}
