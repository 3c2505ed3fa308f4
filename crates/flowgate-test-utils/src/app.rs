//! `spawn_app`: the four services of `all` mode, built inside the test process by the same code
//! the binary runs ([`flowgate::AllInOne`]), on free ports, with a throwaway data directory (and
//! SQLite database in it, or PostgreSQL when asked), and a [`TestApp`] to talk to them.
//!
//! A new integration test needs little more than this:
//! ```ignore
//! #[tokio::test]
//! async fn a_key_can_chat() {
//!     let app = spawn_app("model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n").await;
//!     let (_, key) = app.create_key(json!({})).await;
//!     let response = app.chat(&key, "m", "hello").await;
//!     assert_eq!(response.status(), 200);
//! }
//! ```
//!
//! Each app runs on its own multi-threaded Tokio runtime in its own thread, as the binary would in
//! its own process: its log lines (JSON, as the binary writes them) are captured for
//! [`TestApp::log_text`], it keeps serving while the test's runtime is busy, and dropping the
//! [`TestApp`] stops it the way SIGTERM stops the binary (a cancelled token, then a graceful drain).
//! Tests about the process itself (modes, signals, CLI, split-mode services over gRPC, telemetry
//! export) use [`crate::FlowgateProcess`] instead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate::{AllAddrs, AllInOne};
use flowgate_common::Settings;
use flowgate_common::settings::Sources;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

use crate::{TempDir, ThrowawayDb, base_env, http_client, redis_url};

/// The admin key a [`TestApp`] is given unless the test sets `ADMIN_API_KEY`.
pub const TEST_ADMIN_KEY: &str = "test-admin-key";
/// The key-hash secret a [`TestApp`] is given unless the test sets another one: fixed, so apps that
/// share a database (replicas) accept each other's keys.
pub const TEST_KEY_HASH_SECRET: &str = "test-key-hash-secret";

/// How long a stopping app may take to drain before the test stops waiting for it.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts `all` in process with `config_yaml` (a LiteLLM-style model list and any other settings),
/// SQLite in a fresh data directory, no Redis. See [`TestApp::builder`] for more choices.
pub async fn spawn_app(config_yaml: &str) -> TestApp {
    TestApp::builder(config_yaml).spawn().await
}

/// What to start: the config file, settings given as environment (read the way the binary reads
/// its environment, without touching the test process's), the database and Redis.
#[derive(Debug, Clone)]
pub struct TestAppBuilder {
    config_yaml: String,
    env: Vec<(String, String)>,
    data_dir: Option<Arc<TempDir>>,
}

impl TestAppBuilder {
    /// Sets a setting by its environment name, exactly as the binary would read it
    /// (`FLOWGATE__PROXY__MAX_BODY_BYTES`, `RATE_LIMIT_REQUESTS_PER_HOUR`, `REDIS_URL`, ...).
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Uses the throwaway PostgreSQL database `db` instead of SQLite.
    #[must_use]
    pub fn postgres(self, db: &ThrowawayDb) -> Self {
        self.database(db)
    }

    /// Uses the throwaway database `db` (PostgreSQL or MariaDB) instead of SQLite.
    #[must_use]
    pub fn database(self, db: &ThrowawayDb) -> Self {
        self.env("DATABASE_URL", &db.url)
    }

    /// Uses the test Redis ([`redis_url`]) with the key prefix `prefix` (make it unique per test).
    #[must_use]
    pub fn redis(self, prefix: &str) -> Self {
        self.env("REDIS_URL", &redis_url()).env("FLOWGATE__REDIS__PREFIX", prefix)
    }

    /// Builds and starts the services; panics (with the error) when they cannot start.
    pub async fn spawn(self) -> TestApp {
        let data_dir = self.data_dir.clone().unwrap_or_else(|| Arc::new(TempDir::new()));
        // An empty config means defaults only (no file), as when the binary is given none.
        let config_file = (!self.config_yaml.trim().is_empty()).then(|| data_dir.path().join("flowgate.yaml"));
        if let Some(path) = &config_file {
            std::fs::write(path, &self.config_yaml).expect("write the test config file");
        }
        let mut env: HashMap<String, String> = base_env(data_dir.path()).into_iter().collect();
        env.insert("ADMIN_API_KEY".to_owned(), TEST_ADMIN_KEY.to_owned());
        env.insert("FLOWGATE__SECURITY__KEY_HASH_SECRET".to_owned(), TEST_KEY_HASH_SECRET.to_owned());
        env.extend(self.env.iter().cloned());
        let admin_key = env["ADMIN_API_KEY"].clone();
        let settings = Settings::load(&Sources { config_file, env })
            .unwrap_or_else(|error| panic!("test settings do not load: {error}"));

        let logs = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let thread = {
            let (logs, shutdown) = (logs.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name("flowgate-test-app".to_owned())
                .spawn(move || serve(settings, logs, shutdown, ready_tx))
                .expect("start the app's thread")
        };
        let addrs = match ready_rx.await {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(error)) => panic!("the app did not start: {error}\nlogs:\n{}", logs.lock().unwrap().join("\n")),
            Err(_) => panic!("the app's thread ended before starting; logs:\n{}", logs.lock().unwrap().join("\n")),
        };
        TestApp {
            proxy_url: format!("http://{}", addrs.proxy),
            api_url: format!("http://{}", addrs.api_server),
            compliance_url: format!("http://{}", addrs.compliance),
            policy_url: format!("http://{}", addrs.policy),
            worker_url: format!("http://{}", addrs.worker),
            admin_key,
            client: http_client(),
            logs,
            shutdown,
            thread: Some(thread),
            builder: Self { data_dir: Some(data_dir), ..self },
        }
    }
}

/// A running in-process gateway (`all` mode) and typed helpers to talk to it. Stopped (gracefully,
/// waiting for the drain) when dropped.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:port` of the proxy (the data plane).
    pub proxy_url: String,
    /// `http://127.0.0.1:port` of the api-server (the management API).
    pub api_url: String,
    /// `http://127.0.0.1:port` of the compliance service.
    pub compliance_url: String,
    /// `http://127.0.0.1:port` of the policy service.
    pub policy_url: String,
    /// `http://127.0.0.1:port` of the worker's health routes.
    pub worker_url: String,
    /// The admin key the management API accepts.
    pub admin_key: String,
    /// An HTTP client (30 s timeout).
    pub client: reqwest::Client,
    logs: Arc<Mutex<Vec<String>>>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    builder: TestAppBuilder,
}

impl TestApp {
    /// Starts building an app around `config_yaml`; finish with [`TestAppBuilder::spawn`].
    pub fn builder(config_yaml: impl Into<String>) -> TestAppBuilder {
        TestAppBuilder { config_yaml: config_yaml.into(), env: Vec::new(), data_dir: None }
    }

    /// The proxy's base URL.
    pub fn proxy(&self) -> &str {
        &self.proxy_url
    }

    /// The api-server's base URL.
    pub fn api(&self) -> &str {
        &self.api_url
    }

    /// The data directory (the SQLite database, generated files, the audit spool).
    pub fn data_dir(&self) -> &Path {
        self.builder.data_dir.as_deref().map(TempDir::path).expect("a started app has a data directory")
    }

    /// Creates a virtual key through the management API and returns (id, plaintext key). `fields`
    /// are the key's fields on top of `{"name": "test"}`; panics unless the key was created.
    pub async fn create_key(&self, fields: Value) -> (String, String) {
        let mut body = json!({"name": "test"});
        if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
            body.extend(fields.clone());
        }
        crate::create_key(&self.api_url, &self.admin_key, &body).await
    }

    /// Calls the management API with the admin key: `method` on `path` (with a JSON `body`);
    /// returns the status and the JSON answer (`null` when there is none).
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.api_url)).bearer_auth(&self.admin_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("management API reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` to the proxy at `path` (`/v1/chat/completions`, `/anthropic/v1/messages`, ...)
    /// with `key` as the bearer token.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.proxy_url))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("proxy reachable")
    }

    /// An OpenAI-format chat completion: one user message `content` to `model`, with `key`.
    pub async fn chat(&self, key: &str, model: &str, content: &str) -> reqwest::Response {
        let body = json!({"model": model, "messages": [{"role": "user", "content": content}]});
        self.post("/v1/chat/completions", key, &body).await
    }

    /// Every log line this app has written so far (JSON, one object per line), joined.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Stops the app as SIGTERM stops the binary and waits until it has drained.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Stops the app (waiting for the drain) and starts it again with the same settings and data
    /// directory; the ports change.
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        self.builder.clone().spawn().await
    }

    async fn stop(&mut self) {
        self.shutdown.cancel();
        let Some(thread) = self.thread.take() else { return };
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while !thread.is_finished() {
            assert!(tokio::time::Instant::now() < deadline, "the app did not stop within {STOP_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        thread.join().expect("the app's thread panicked");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Wait (bounded) for the drain, so the data directory outlives the services using it.
        if let Some(thread) = self.thread.take() {
            let deadline = std::time::Instant::now() + STOP_TIMEOUT;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

thread_local! {
    /// The app's log subscriber, made the default on each of its runtime's threads.
    static LOG_SCOPE: RefCell<Option<tracing::dispatcher::DefaultGuard>> = const { RefCell::new(None) };
}

/// The app's thread: its own runtime, its own log subscriber, `all` built and served until
/// `shutdown`.
fn serve(
    settings: Settings,
    logs: Arc<Mutex<Vec<String>>>,
    shutdown: CancellationToken,
    ready: tokio::sync::oneshot::Sender<Result<AllAddrs, String>>,
) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dispatch = log_dispatch(&settings, logs);
    let _scope = tracing::dispatcher::set_default(&dispatch);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("flowgate-test-app-worker")
        .enable_all()
        .on_thread_start(move || {
            LOG_SCOPE.with(|scope| *scope.borrow_mut() = Some(tracing::dispatcher::set_default(&dispatch)));
        })
        .on_thread_stop(|| LOG_SCOPE.with(|scope| drop(scope.borrow_mut().take())))
        .build()
        .expect("build the app's runtime");
    runtime.block_on(async move {
        let built = AllInOne::build(&settings).await.and_then(|all| Ok((all.addrs()?, all)));
        let all = match built {
            Ok((addrs, all)) => {
                let _ = ready.send(Ok(addrs));
                all
            }
            Err(error) => {
                let _ = ready.send(Err(format!("{error:#}")));
                return;
            }
        };
        match all.run_until_stopped(shutdown).await {
            Ok(()) => tracing::info!("shutdown complete"),
            Err(error) => tracing::error!(error = format!("{error:#}"), "flowgate stopped with an error"),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
}

/// A subscriber like the binary's (`LOG_LEVEL` filter, JSON lines) that writes into `logs`, and
/// also to stderr when `TEST_LOG` is set.
fn log_dispatch(settings: &Settings, logs: Arc<Mutex<Vec<String>>>) -> tracing::Dispatch {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.telemetry.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let sink = LogSink { logs, echo: std::env::var_os("TEST_LOG").is_some() };
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(sink);
    tracing::Dispatch::new(tracing_subscriber::registry().with(filter).with(layer))
}

/// Collects formatted log lines.
#[derive(Debug, Clone)]
struct LogSink {
    logs: Arc<Mutex<Vec<String>>>,
    echo: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { sink: self.clone(), buffer: Vec::new() }
    }
}

/// One event's bytes, added to the sink as lines when dropped.
#[derive(Debug)]
struct LineWriter {
    sink: LogSink,
    buffer: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let mut logs = self.sink.logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for line in text.lines().filter(|line| !line.is_empty()) {
            if self.sink.echo {
                eprintln!("[app] {line}");
            }
            logs.push(line.to_owned());
        }
    }
}
