//! A client of the older HTTP+SSE transport (protocol 2024-11-05) for one upstream server: a
//! task holds the server's event stream (`GET url`), learns from its `endpoint` event where to
//! POST, initialises, then POSTs each request and matches the `message` events that answer them
//! by id. When the stream ends, the requests waiting on it fail and the task connects again after
//! a pause that doubles up to a minute (reset after a minute of staying connected).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, HeaderMap};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::stdio::{Call, MAX_PAUSE, refuse_calls_for};
use super::{UpstreamError, initialize_params, read_response};
use crate::sse::{SseEvent, SseParser};
use flowgate_common::settings::McpServerSettings;
use flowgate_common::tasks::Tasks;

/// One SSE upstream: a handle on the task that owns the connection.
pub(crate) struct SseUpstream {
    name: String,
    calls: mpsc::Sender<Call>,
    timeout: Duration,
}

impl std::fmt::Debug for SseUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseUpstream").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Where and how to connect.
struct Connection {
    name: String,
    url: reqwest::Url,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl SseUpstream {
    /// Starts the connection's task under `tasks`.
    pub(crate) fn start(
        name: &str,
        settings: &McpServerSettings,
        client: reqwest::Client,
        timeout: Duration,
        tasks: &Tasks,
    ) -> Result<Self, String> {
        let url = settings.url.as_deref().unwrap_or_default();
        let url = reqwest::Url::parse(url).map_err(|e| format!("mcp_servers.{name}.url: {e}"))?;
        let headers = super::http::configured_headers(name, settings)?;
        let (calls, receiver) = mpsc::channel(256);
        let connection = Connection { name: name.to_owned(), url, headers, client };
        tasks.spawn("mcp-sse-upstream", supervise(connection, receiver));
        Ok(Self { name: name.to_owned(), calls, timeout })
    }

    /// Sends `method` and returns its result.
    #[tracing::instrument(name = "mcp.upstream.sse", skip_all, fields(server = %self.name, method))]
    pub(crate) async fn request(&self, method: &str, params: Map<String, Value>) -> Result<Value, UpstreamError> {
        let (reply, answer) = oneshot::channel();
        let call = Call { method: method.to_owned(), params, reply };
        self.calls
            .send(call)
            .await
            .map_err(|_| UpstreamError::Unavailable("the server's connection task has stopped".to_owned()))?;
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(UpstreamError::Timeout(self.timeout.as_secs())),
            Ok(Err(_)) => Err(UpstreamError::Unavailable("the server's event stream ended".to_owned())),
            Ok(Ok(answer)) => answer,
        }
    }
}

async fn supervise(connection: Connection, mut calls: mpsc::Receiver<Call>) {
    let mut pause = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        match run_once(&connection, &mut calls).await {
            None => return,
            Some(reason) => {
                tracing::warn!(server = %connection.name, %reason, pause_ms = pause.as_millis() as u64, "MCP SSE upstream disconnected; connecting again");
            }
        }
        if started.elapsed() > MAX_PAUSE {
            pause = Duration::from_millis(250);
        }
        if !refuse_calls_for(pause, &mut calls, "the server is not connected").await {
            return;
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The event stream and what has been read of it.
struct Events {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
}

impl Events {
    /// The next event; `None` when the stream ended. Cancel-safe: its only await is the body's.
    async fn next(&mut self) -> Option<Result<SseEvent, String>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(Ok(event));
            }
            match self.body.next().await? {
                Err(error) => return Some(Err(format!("the event stream broke: {error}"))),
                Ok(chunk) => match self.parser.push(&chunk) {
                    Ok(events) => self.queue.extend(events),
                    Err(_) => return Some(Err("an event is too large".to_owned())),
                },
            }
        }
    }

    /// The JSON-RPC answer with `id`, skipping everything else.
    async fn answer(&mut self, id: i64) -> Result<Value, String> {
        while let Some(event) = self.next().await {
            let event = event?;
            if let Ok(message) = serde_json::from_str::<Value>(&event.data)
                && message.get("id").and_then(Value::as_i64) == Some(id)
                && message.get("method").is_none()
            {
                return Ok(message);
            }
        }
        Err("the event stream ended".to_owned())
    }
}

async fn post(connection: &Connection, endpoint: &reqwest::Url, message: &Value) -> Result<(), String> {
    let response = connection
        .client
        .post(endpoint.clone())
        .headers(connection.headers.clone())
        .json(message)
        .send()
        .await
        .map_err(|e| format!("cannot post to the server: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the server answered a message with HTTP {}", response.status().as_u16()))
    }
}

/// One connection: `None` when every handle is gone, otherwise why it ended.
async fn run_once(connection: &Connection, calls: &mut mpsc::Receiver<Call>) -> Option<String> {
    let response = match connection
        .client
        .get(connection.url.clone())
        .headers(connection.headers.clone())
        .header(ACCEPT, "text/event-stream")
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => return Some(format!("the server answered HTTP {}", response.status().as_u16())),
        Err(error) => return Some(format!("cannot reach the server: {error}")),
    };
    let mut events =
        Events { body: response.bytes_stream().boxed(), parser: SseParser::default(), queue: VecDeque::new() };
    let endpoint = loop {
        match events.next().await {
            None => return Some("the event stream ended before naming its endpoint".to_owned()),
            Some(Err(reason)) => return Some(reason),
            Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                match connection.url.join(event.data.trim()) {
                    Ok(endpoint) if endpoint.origin() == connection.url.origin() => break endpoint,
                    _ => return Some("the server named an endpoint on another origin".to_owned()),
                }
            }
            Some(Ok(_)) => {}
        }
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize_params()});
    if let Err(reason) = post(connection, &endpoint, &init).await {
        return Some(reason);
    }
    match events.answer(0).await {
        Ok(message) => {
            if let Err(error) = read_response(&message) {
                return Some(format!("initialize failed: {error}"));
            }
        }
        Err(reason) => return Some(reason),
    }
    if let Err(reason) =
        post(connection, &endpoint, &json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await
    {
        return Some(reason);
    }
    tracing::info!(server = %connection.name, "MCP SSE upstream connected");
    let mut pending: HashMap<i64, oneshot::Sender<Result<Value, UpstreamError>>> = HashMap::new();
    let mut next_id: i64 = 1;
    loop {
        tokio::select! {
            event = events.next() => {
                let event = match event {
                    None => return Some("the event stream ended".to_owned()),
                    Some(Err(reason)) => return Some(reason),
                    Some(Ok(event)) => event,
                };
                let Ok(message) = serde_json::from_str::<Value>(&event.data) else { continue };
                if message.get("method").is_some() {
                    continue;
                }
                if let Some(id) = message.get("id").and_then(Value::as_i64)
                    && let Some(reply) = pending.remove(&id)
                {
                    let _ = reply.send(read_response(&message));
                }
            }
            call = calls.recv() => {
                let call = call?;
                let id = next_id;
                next_id += 1;
                let message = json!({"jsonrpc": "2.0", "id": id, "method": call.method, "params": call.params});
                match post(connection, &endpoint, &message).await {
                    Ok(()) => {
                        pending.insert(id, call.reply);
                    }
                    Err(reason) => {
                        let _ = call.reply.send(Err(UpstreamError::Unavailable(reason)));
                    }
                }
            }
        }
    }
}
