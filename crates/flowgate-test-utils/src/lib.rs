//! Test helpers shared by Flowgate's integration tests: start the gateway in process on free ports
//! ([`spawn_app`], feature `app`) or spawn the real `flowgate` binary and read where it listens
//! ([`FlowgateProcess`]), create throwaway PostgreSQL and MariaDB databases and Redis key prefixes, and decide
//! whether a missing server skips a test (laptop) or fails it (`CI=true`).

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test-only crate: a failed setup step should fail the test loudly"
)]
#![expect(clippy::disallowed_methods, reason = "test helpers own the tasks they spawn (log readers, a TCP gate)")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[cfg(feature = "app")]
mod app;
#[cfg(feature = "app")]
pub use app::{TEST_ADMIN_KEY, TEST_KEY_HASH_SECRET, TestApp, TestAppBuilder, spawn_app};

/// True when running under CI (`CI=true`), where missing PostgreSQL/Redis fails a test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns `None`) or fails, depending on [`in_ci`], when a required server is missing.
fn missing(what: &str, error: &dyn std::fmt::Display) -> Option<std::convert::Infallible> {
    assert!(!in_ci(), "CI=true and {what} is unreachable: {error}");
    eprintln!("SKIPPING: {what} is unreachable ({error}); set CI=true to make this a failure");
    None
}

/// PostgreSQL server URL for tests (`TEST_DATABASE_URL`, default the local `test` database).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// MariaDB/MySQL server URL for tests (`TEST_MYSQL_URL`, default the local MariaDB as root).
pub fn mysql_admin_url() -> String {
    std::env::var("TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned())
}

/// Redis URL for tests (`TEST_REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A database server engine tests can make throwaway databases on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL ([`postgres_admin_url`]).
    Postgres,
    /// MariaDB or MySQL ([`mysql_admin_url`]).
    MySql,
}

/// A database created for one test, dropped by [`ThrowawayDb::drop_db`].
#[derive(Debug)]
pub struct ThrowawayDb {
    /// Connection URL of the new database.
    pub url: String,
    /// Its name.
    pub name: String,
    admin_url: String,
    engine: Engine,
}

impl ThrowawayDb {
    /// Creates a fresh database on `engine`, or returns `None` (skip) when the server is
    /// unreachable outside CI.
    pub async fn create_on(engine: Engine) -> Option<Self> {
        match engine {
            Engine::Postgres => Self::create().await,
            Engine::MySql => Self::create_mysql().await,
        }
    }

    /// Creates a fresh MariaDB/MySQL database (utf8mb4), or returns `None` (skip) when the
    /// server is unreachable outside CI.
    pub async fn create_mysql() -> Option<Self> {
        use sqlx::{Connection, Executor};
        let admin_url = mysql_admin_url();
        let connecting = sqlx::MySqlConnection::connect(&admin_url);
        let mut conn = match tokio::time::timeout(Duration::from_secs(5), connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return missing("MariaDB", &error).map(|n| match n {}),
            Err(error) => return missing("MariaDB", &error).map(|n| match n {}),
        };
        let name = format!("flowgate_test_{}", uuid::Uuid::new_v4().simple());
        let sql = format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin");
        conn.execute(sql.as_str()).await.expect("create throwaway database");
        let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
        Some(Self { url: format!("{base}/{name}"), name, admin_url, engine: Engine::MySql })
    }

    /// The engine the database is on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Creates a fresh database, or returns `None` (skip) when PostgreSQL is unreachable outside CI.
    pub async fn create() -> Option<Self> {
        use sqlx::{Connection, Executor};
        let admin_url = postgres_admin_url();
        let mut conn = match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin_url)).await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => return missing("PostgreSQL", &error).map(|n| match n {}),
            Err(error) => return missing("PostgreSQL", &error).map(|n| match n {}),
        };
        let name = format!("flowgate_test_{}", uuid::Uuid::new_v4().simple());
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create throwaway database");
        let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
        Some(Self { url: format!("{base}/{name}"), name, admin_url, engine: Engine::Postgres })
    }

    /// Drops the database (best effort).
    pub async fn drop_db(self) {
        use sqlx::{Connection, Executor};
        if self.engine == Engine::MySql {
            if let Ok(mut conn) = sqlx::MySqlConnection::connect(&self.admin_url).await {
                let _ = conn.execute(format!("DROP DATABASE IF EXISTS {}", self.name).as_str()).await;
            }
            return;
        }
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = conn.execute(sql.as_str()).await;
        }
    }
}

/// The local embedding model's directory (all-MiniLM-L6-v2, fetched by
/// `scripts/fetch-embedding-model.sh`): `FLOWGATE_EMBEDDING_MODEL_DIR`, else the cache folder the
/// script fills. `None` (skip) outside CI when the files are missing, panics in CI.
pub fn embedding_model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("FLOWGATE_EMBEDDING_MODEL_DIR").map_or_else(
        || {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .unwrap_or_default();
            cache.join("flowgate/models/all-minilm-l6-v2")
        },
        PathBuf::from,
    );
    if dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file() {
        return Some(dir);
    }
    let error = format!("no model.safetensors in {} (run scripts/fetch-embedding-model.sh)", dir.display());
    missing("the embedding model", &error).map(|never| match never {})
}

/// Checks Redis answers a PING; `false` (skip) outside CI when it does not, panics in CI.
pub async fn require_redis() -> bool {
    match redis_ping(&redis_url()).await {
        Ok(()) => true,
        Err(error) => missing("Redis", &error).is_some(),
    }
}

async fn redis_ping(url: &str) -> Result<(), String> {
    let addr = url.trim_start_matches("redis://").split('/').next().unwrap_or("127.0.0.1:6379").to_owned();
    let stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let (reader, mut writer) = stream.into_split();
    tokio::io::AsyncWriteExt::write_all(&mut writer, b"PING\r\n").await.map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(reader).read_line(&mut line).await.map_err(|e| e.to_string())?;
    if line.starts_with("+PONG") { Ok(()) } else { Err(format!("unexpected reply {line:?}")) }
}

/// Path of the `flowgate` binary under test: `FLOWGATE_BIN`, else next to the test executable.
pub fn flowgate_bin() -> PathBuf {
    if let Ok(path) = std::env::var("FLOWGATE_BIN") {
        return PathBuf::from(path);
    }
    // target/debug/deps/<test> -> target/debug/flowgate
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("flowgate")
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/flowgate-test-<uuid>`.
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("flowgate-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `flowgate` process. Killed when dropped.
#[derive(Debug)]
pub struct FlowgateProcess {
    child: Child,
    /// Every log line printed so far (stderr and stdout).
    pub logs: Arc<Mutex<Vec<String>>>,
    /// `service -> address` from the "listening" log lines.
    pub addrs: HashMap<String, String>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// The internal token ([`base_env`] gives it to every process and app): what internal gRPC calls
/// must carry, e.g. through [`internal_request`].
pub const TEST_INTERNAL_TOKEN: &str = "flowgate-test-internal-token-0123456789";

/// `message` as an internal gRPC call: with `authorization: Bearer` [`TEST_INTERNAL_TOKEN`].
pub fn internal_request<T>(message: T) -> tonic::Request<T> {
    request_with_token(message, TEST_INTERNAL_TOKEN)
}

/// `message` as a gRPC call carrying `authorization: Bearer {token}`.
pub fn request_with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("a token is ASCII");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Environment every spawned test process gets: JSON logs, free ports, its own data dir, the
/// internal token.
pub fn base_env(data_dir: &Path) -> Vec<(String, String)> {
    [
        ("FLOWGATE__SECURITY__INTERNAL_TOKEN", TEST_INTERNAL_TOKEN.to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
        ("FLOWGATE_DATA_DIR", data_dir.display().to_string()),
        ("FLOWGATE__SERVER__HOST", "127.0.0.1".to_owned()),
        ("FLOWGATE__PROXY__PORT", "0".to_owned()),
        ("FLOWGATE__API_SERVER__PORT", "0".to_owned()),
        ("FLOWGATE__COMPLIANCE__PORT", "0".to_owned()),
        ("FLOWGATE__POLICY__PORT", "0".to_owned()),
        ("FLOWGATE__WORKER__PORT", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl FlowgateProcess {
    /// Starts the binary with `args` and `env` (on top of a clean environment with only `PATH`,
    /// `HOME` and `TMPDIR`), then waits until `expect_services` have logged their address.
    pub async fn spawn(args: &[&str], env: &[(String, String)], expect_services: &[&str]) -> Self {
        let mut child = Self::command(args, env).spawn().expect("spawn flowgate");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let mut readers = Vec::new();
        for stream in [
            child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stdout.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            let tx = tx.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if std::env::var("TEST_LOG").is_ok() {
                        eprintln!("[flowgate] {line}");
                    }
                    logs.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            }));
        }
        drop(tx);
        let mut addrs = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while expect_services.iter().any(|s| !addrs.contains_key(*s)) {
            let line = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("flowgate exited before listening; logs:\n{}", logs.lock().unwrap().join("\n")),
                Err(_) => panic!("flowgate did not listen within 30s; logs:\n{}", logs.lock().unwrap().join("\n")),
            };
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["message"] == "listening"
                && let (Some(service), Some(addr)) = (value["service"].as_str(), value["addr"].as_str())
            {
                addrs.insert(service.to_owned(), addr.to_owned());
            }
        }
        Self { child, logs, addrs, readers }
    }

    /// The command `spawn` runs, for tests that want the raw exit status and output.
    pub fn command(args: &[&str], env: &[(String, String)]) -> Command {
        let mut command = Command::new(flowgate_bin());
        command
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for name in ["PATH", "HOME", "TMPDIR"] {
            if let Ok(value) = std::env::var(name) {
                command.env(name, value);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    /// `http://addr` of a service.
    pub fn url(&self, service: &str) -> String {
        format!("http://{}", self.addrs.get(service).unwrap_or_else(|| panic!("{service} not listening")))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status =
            std::process::Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for exit (up to `timeout`) and returns the exit code.
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("flowgate did not exit in time")
            .expect("wait");
        // Read the output to its end, so the last log lines are in `logs`.
        for reader in std::mem::take(&mut self.readers) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status.code()
    }

    /// All log lines so far, joined.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

/// Creates a virtual key through the management API at `api_url` (the api-server's base URL) and
/// returns (id, plaintext key). `fields` are the key's fields (`name` included); panics with the
/// answer's text unless the key was created.
pub async fn create_key(api_url: &str, admin_key: &str, fields: &serde_json::Value) -> (String, String) {
    let response = http_client()
        .post(format!("{api_url}/api/enterprise/vkeys"))
        .bearer_auth(admin_key)
        .json(fields)
        .send()
        .await
        .expect("management API reachable");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "creating a key: {text}");
    let created: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
    let field = |name: &str| created[name].as_str().expect("id and key in the answer").to_owned();
    (field("id"), field("key"))
}

/// An HTTP client for tests (rustls with ring installed once).
pub fn http_client() -> reqwest::Client {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// A TCP forwarder in front of a server (PostgreSQL, Redis) that a test can close and reopen, to
/// simulate an outage without stopping the shared server.
#[derive(Debug)]
pub struct TcpGate {
    /// Local port clients connect to.
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl TcpGate {
    /// Forwards a free local port to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let target = target.to_owned();
        let accept_open = open.clone();
        let accept_generation = generation.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !accept_open.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut closed = accept_generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = closed.changed() => {}
                    }
                });
            }
        });
        Self { port, open, generation }
    }

    /// Cuts every open connection and refuses new ones (`false`), or lets them through (`true`).
    pub fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
        if !open {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

/// Reads an SSE response into its events: (event name, `data:` payload).
pub async fn sse_events(response: reqwest::Response) -> Vec<(Option<String>, String)> {
    let text = response.text().await.expect("read the stream");
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event: ") {
                name = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("data: ") {
                data.push(value);
            }
        }
        events.push((name, data.join("\n")));
    }
    events
}
