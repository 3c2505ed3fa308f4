//! A Streamable HTTP client for one upstream server: `initialize` once (its session id and
//! protocol version kept), then one POST per request, whose answer is a JSON body or an SSE
//! stream read until the event answering that request. A 404 for a known session means the
//! server forgot it: the client initialises again and retries once.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::{UpstreamError, initialize_params, read_response};
use crate::sse::SseParser;
use flowgate_common::settings::McpServerSettings;

/// Largest answer read from an upstream.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// What `initialize` gave.
#[derive(Debug, Clone)]
struct Established {
    session_id: Option<String>,
    protocol_version: String,
}

/// One Streamable HTTP upstream.
pub(crate) struct HttpUpstream {
    name: String,
    url: reqwest::Url,
    /// The configured headers (credentials among them): built once, never logged.
    headers: HeaderMap,
    client: reqwest::Client,
    timeout: Duration,
    next_id: AtomicI64,
    session: Mutex<Option<Established>>,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl HttpUpstream {
    /// The client for `settings` (its `url` and `headers`).
    pub(crate) fn new(
        name: &str,
        settings: &McpServerSettings,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<Self, String> {
        let url = settings.url.as_deref().unwrap_or_default();
        let url = reqwest::Url::parse(url).map_err(|e| format!("mcp_servers.{name}.url: {e}"))?;
        let headers = configured_headers(name, settings)?;
        Ok(Self {
            name: name.to_owned(),
            url,
            headers,
            client,
            timeout,
            next_id: AtomicI64::new(1),
            session: Mutex::new(None),
        })
    }

    /// Sends `method` and returns its result.
    #[tracing::instrument(name = "mcp.upstream.http", skip_all, fields(server = %self.name, method))]
    pub(crate) async fn request(&self, method: &str, params: Map<String, Value>) -> Result<Value, UpstreamError> {
        let seconds = self.timeout.as_secs();
        tokio::time::timeout(self.timeout, self.request_inner(method, params))
            .await
            .unwrap_or(Err(UpstreamError::Timeout(seconds)))
    }

    async fn request_inner(&self, method: &str, params: Map<String, Value>) -> Result<Value, UpstreamError> {
        for attempt in 0..2 {
            let session = self.established().await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            match self.post(&message, Some(&session), Some(id)).await {
                Err(Stale) if attempt == 0 => {
                    tracing::info!(server = %self.name, "upstream session expired; initialising again");
                    *self.session.lock().await = None;
                }
                Err(Stale) => return Err(UpstreamError::Unavailable("the server refused a new session".to_owned())),
                Ok(answer) => return answer,
            }
        }
        Err(UpstreamError::Unavailable("the server refused a new session".to_owned()))
    }

    /// The session, initialised on first use.
    async fn established(&self) -> Result<Established, UpstreamError> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref() {
            return Ok(session.clone());
        }
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize_params()});
        let response = self.send(&init, None).await?;
        let session_id = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let result = read_response(&self.answer(response, Some(0)).await?)?;
        let protocol_version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(super::UPSTREAM_PROTOCOL_VERSION)
            .to_owned();
        let session = Established { session_id, protocol_version };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self.send(&initialized, Some(&session)).await?;
        if !response.status().is_success() {
            return Err(UpstreamError::Unavailable(format!(
                "the server answered notifications/initialized with HTTP {}",
                response.status().as_u16()
            )));
        }
        *slot = Some(session.clone());
        Ok(session)
    }

    async fn send(&self, message: &Value, session: Option<&Established>) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .json(message);
        if let Some(session) = session {
            request = request.header("mcp-protocol-version", &session.protocol_version);
            if let Some(id) = &session.session_id {
                request = request.header("mcp-session-id", id);
            }
        }
        request.send().await.map_err(|error| UpstreamError::Unavailable(format!("cannot reach the server: {error}")))
    }

    /// Posts `message` in `session`; `Err(Stale)` when the server no longer knows the session.
    async fn post(
        &self,
        message: &Value,
        session: Option<&Established>,
        id: Option<i64>,
    ) -> Result<Result<Value, UpstreamError>, Stale> {
        let response = match self.send(message, session).await {
            Ok(response) => response,
            Err(error) => return Ok(Err(error)),
        };
        if response.status() == reqwest::StatusCode::NOT_FOUND && session.is_some_and(|s| s.session_id.is_some()) {
            return Err(Stale);
        }
        Ok(match self.answer(response, id).await {
            Ok(message) => read_response(&message),
            Err(error) => Err(error),
        })
    }

    /// The JSON-RPC answer to request `id` in `response` (a JSON body or an SSE stream).
    async fn answer(&self, response: reqwest::Response, id: Option<i64>) -> Result<Value, UpstreamError> {
        let status = response.status();
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_stream {
            let body = read_limited(response).await?;
            return match serde_json::from_slice::<Value>(&body) {
                Ok(value) if value.get("result").is_some() || value.get("error").is_some() => Ok(value),
                _ if !status.is_success() => {
                    Err(UpstreamError::Unavailable(format!("the server answered HTTP {}", status.as_u16())))
                }
                _ => Err(UpstreamError::Unavailable("the server's answer is not a JSON-RPC response".to_owned())),
            };
        }
        let mut parser = SseParser::default();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UpstreamError::Unavailable(format!("the server's stream broke: {e}")))?;
            let events =
                parser.push(&chunk).map_err(|_| UpstreamError::Unavailable("an event is too large".to_owned()))?;
            for event in events {
                let Ok(message) = serde_json::from_str::<Value>(&event.data) else { continue };
                let answers = message.get("result").is_some() || message.get("error").is_some();
                if answers && (id.is_none() || message.get("id").and_then(Value::as_i64) == id) {
                    return Ok(message);
                }
            }
        }
        Err(UpstreamError::Unavailable("the server's stream ended without an answer".to_owned()))
    }
}

/// The configured headers of a server (credentials among them), marked sensitive.
pub(super) fn configured_headers(name: &str, settings: &McpServerSettings) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (header, value) in &settings.headers {
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| format!("mcp_servers.{name}.headers.{header}: not a header name"))?;
        let mut value = HeaderValue::from_str(value.expose_secret())
            .map_err(|_| format!("mcp_servers.{name}.headers.{header}: not a header value"))?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    Ok(headers)
}

/// The upstream no longer knows the session.
struct Stale;

async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| UpstreamError::Unavailable(format!("cannot read the server's answer: {e}")))?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(UpstreamError::Unavailable("the server's answer is too large".to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
