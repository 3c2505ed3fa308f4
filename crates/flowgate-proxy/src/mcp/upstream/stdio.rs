//! A stdio upstream: a child process the proxy starts, initialises and keeps running. Messages are
//! newline-delimited JSON-RPC on its stdin and stdout; its stderr goes to the log line by line.
//! When the process exits, the requests waiting on it fail and it is started again after a pause
//! that doubles up to a minute (reset once it has run for a minute).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flowgate_common::settings::McpServerSettings;
use flowgate_common::tasks::Tasks;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use super::{UpstreamError, initialize_params, read_response};

/// Longest pause between restarts.
pub(super) const MAX_PAUSE: Duration = Duration::from_secs(60);
/// Largest line read from the child.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A request for a connection-owning task, with where its answer goes.
pub(super) struct Call {
    pub(super) method: String,
    pub(super) params: Map<String, Value>,
    pub(super) reply: oneshot::Sender<Result<Value, UpstreamError>>,
}

/// One stdio upstream: a handle on the task that owns the process.
pub(crate) struct StdioUpstream {
    name: String,
    calls: mpsc::Sender<Call>,
    timeout: Duration,
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream").field("name", &self.name).finish_non_exhaustive()
    }
}

/// How to start the process.
#[derive(Clone)]
struct Launch {
    name: String,
    command: String,
    args: Vec<String>,
    env: Vec<(String, SecretString)>,
}

impl StdioUpstream {
    /// Starts the process's supervisor under `tasks`.
    pub(crate) fn start(name: &str, settings: &McpServerSettings, timeout: Duration, tasks: &Tasks) -> Self {
        let (calls, receiver) = mpsc::channel(256);
        let launch = Launch {
            name: name.to_owned(),
            command: settings.command.clone().unwrap_or_default(),
            args: settings.args.clone(),
            env: settings.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        tasks.spawn("mcp-stdio", supervise(launch, receiver, tasks.clone()));
        Self { name: name.to_owned(), calls, timeout }
    }

    /// Sends `method` and returns its result.
    #[tracing::instrument(name = "mcp.upstream.stdio", skip_all, fields(server = %self.name, method))]
    pub(crate) async fn request(&self, method: &str, params: Map<String, Value>) -> Result<Value, UpstreamError> {
        let (reply, answer) = oneshot::channel();
        let call = Call { method: method.to_owned(), params, reply };
        self.calls
            .send(call)
            .await
            .map_err(|_| UpstreamError::Unavailable("the server's supervisor has stopped".to_owned()))?;
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(UpstreamError::Timeout(self.timeout.as_secs())),
            Ok(Err(_)) => Err(UpstreamError::Unavailable("the server's process exited".to_owned())),
            Ok(Ok(answer)) => answer,
        }
    }
}

/// Runs the process, again and again, until every handle is gone.
async fn supervise(launch: Launch, mut calls: mpsc::Receiver<Call>, tasks: Tasks) {
    let mut pause = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        match run_once(&launch, &mut calls, &tasks).await {
            Ended::Closed => return,
            Ended::Exited(reason) => {
                tracing::warn!(server = %launch.name, %reason, pause_ms = pause.as_millis() as u64, "MCP stdio server stopped; restarting");
            }
        }
        if started.elapsed() > MAX_PAUSE {
            pause = Duration::from_millis(250);
        }
        if !refuse_calls_for(pause, &mut calls, "the server's process is restarting").await {
            return;
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Waits out `pause` before the next connection or start, failing each call that arrives
/// meanwhile with `why` at once rather than holding it; `false` when every handle is gone (stop).
pub(super) async fn refuse_calls_for(pause: Duration, calls: &mut mpsc::Receiver<Call>, why: &str) -> bool {
    let deadline = tokio::time::sleep(pause);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return true,
            call = calls.recv() => match call {
                None => return false,
                Some(call) => {
                    let _ = call.reply.send(Err(UpstreamError::Unavailable(why.to_owned())));
                }
            },
        }
    }
}

enum Ended {
    /// Every handle is gone: stop.
    Closed,
    /// The process exited or broke the protocol.
    Exited(String),
}

fn spawn(launch: &Launch) -> std::io::Result<Child> {
    let mut command = Command::new(&launch.command);
    command.args(&launch.args).env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.kill_on_drop(true);
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in &launch.env {
        command.env(name, value.expose_secret());
    }
    command.spawn()
}

async fn write(stdin: &mut ChildStdin, message: &Value) -> std::io::Result<()> {
    let mut line = message.to_string();
    line.push('\n');
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}

async fn run_once(launch: &Launch, calls: &mut mpsc::Receiver<Call>, tasks: &Tasks) -> Ended {
    let mut child = match spawn(launch) {
        Ok(child) => child,
        Err(error) => return Ended::Exited(format!("cannot start `{}`: {error}", launch.command)),
    };
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Ended::Exited("the process has no pipes".to_owned());
    };
    let name = launch.name.clone();
    tasks.job("mcp-stdio-stderr", async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(server = %name, line = %line, "MCP stdio server stderr");
        }
    });
    // Lines are read by their own job: a channel's receive can lose nothing when the select below
    // takes a call instead.
    let (lines_in, mut lines) = mpsc::channel::<Result<String, String>>(64);
    tasks.job("mcp-stdio-stdout", async move {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            let read = match stdout.read_line(&mut line).await {
                Ok(0) => return,
                Ok(_) if line.len() > MAX_LINE_BYTES => Err("the process wrote a line that is too long".to_owned()),
                Ok(_) => Ok(line),
                Err(error) => Err(format!("cannot read the process's output: {error}")),
            };
            let stop = read.is_err();
            if lines_in.send(read).await.is_err() || stop {
                return;
            }
        }
    });
    let mut pending: HashMap<i64, oneshot::Sender<Result<Value, UpstreamError>>> = HashMap::new();
    let mut next_id: i64 = 1;
    // The handshake: the answer to id 0 is awaited before any call is taken.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize_params()});
    if let Err(error) = write(&mut stdin, &init).await {
        return Ended::Exited(format!("cannot write to the process: {error}"));
    }
    let mut initialised = false;
    loop {
        tokio::select! {
            read = lines.recv() => {
                let line = match read {
                    None => return exited(&mut child, pending).await,
                    Some(Err(error)) => return Ended::Exited(error),
                    Some(Ok(line)) => line,
                };
                let Ok(message) = serde_json::from_str::<Value>(line.trim()) else {
                    tracing::debug!(server = %launch.name, "ignoring a line that is not JSON on stdout");
                    continue;
                };
                let Some(id) = message.get("id").and_then(Value::as_i64) else { continue };
                if message.get("method").is_some() {
                    // A request from the server (sampling, roots): the gateway offers none.
                    let refusal = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "the gateway does not serve server-to-client requests"}});
                    let _ = write(&mut stdin, &refusal).await;
                    continue;
                }
                if id == 0 && !initialised {
                    if let Err(error) = read_response(&message) {
                        return Ended::Exited(format!("initialize failed: {error}"));
                    }
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                    if let Err(error) = write(&mut stdin, &note).await {
                        return Ended::Exited(format!("cannot write to the process: {error}"));
                    }
                    initialised = true;
                    tracing::info!(server = %launch.name, "MCP stdio server ready");
                    continue;
                }
                if let Some(reply) = pending.remove(&id) {
                    let _ = reply.send(read_response(&message));
                }
            }
            call = calls.recv(), if initialised => {
                let Some(call) = call else { return Ended::Closed };
                let id = next_id;
                next_id += 1;
                let message = json!({"jsonrpc": "2.0", "id": id, "method": call.method, "params": call.params});
                if let Err(error) = write(&mut stdin, &message).await {
                    let _ = call.reply.send(Err(UpstreamError::Unavailable(format!("cannot write to the process: {error}"))));
                    return Ended::Exited(format!("cannot write to the process: {error}"));
                }
                pending.insert(id, call.reply);
            }
        }
    }
}

async fn exited(child: &mut Child, pending: HashMap<i64, oneshot::Sender<Result<Value, UpstreamError>>>) -> Ended {
    for (_, reply) in pending {
        let _ = reply.send(Err(UpstreamError::Unavailable("the server's process exited".to_owned())));
    }
    match child.wait().await {
        Ok(status) => Ended::Exited(format!("the process exited ({status})")),
        Err(error) => Ended::Exited(format!("the process ended: {error}")),
    }
}
