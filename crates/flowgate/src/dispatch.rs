//! Runs a mode: builds the service applications from settings and serves them until SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flowgate_common::Settings;
use flowgate_common::internal::InternalToken;
use flowgate_common::keys::KeyHasher;
use flowgate_common::metrics::Metrics;
use flowgate_db::{Database, SharedState, migrate};
use flowgate_proxy::peers::Peer;
use secrecy::SecretString;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::Mode;
use crate::secrets::{self, ADMIN_KEY_FILE, HASH_SECRET_FILE};

pub(crate) async fn connect_database(settings: &Settings) -> anyhow::Result<Database> {
    Database::connect(
        settings.database.url.as_ref(),
        &settings.storage.data_dir,
        settings.database.max_connections,
        Duration::from_secs(settings.database.connect_timeout_secs),
    )
    .await
    .context("connecting to the database")
}

fn admin_key(settings: &Settings, generate: bool) -> anyhow::Result<Arc<SecretString>> {
    let (key, path) = secrets::load_or_generate(
        settings.security.admin_api_key.as_ref(),
        &settings.storage.data_dir,
        ADMIN_KEY_FILE,
        "fg-admin-",
        generate,
        "ADMIN_API_KEY",
    )?;
    if let Some(path) = path {
        tracing::info!(path = %path.display(), "admin API key not configured; using the generated key stored in this file");
    }
    Ok(Arc::new(key))
}

fn hash_secret(settings: &Settings, generate: bool) -> anyhow::Result<SecretString> {
    let (secret, _) = secrets::load_or_generate(
        settings.security.key_hash_secret.as_ref(),
        &settings.storage.data_dir,
        HASH_SECRET_FILE,
        "",
        generate,
        "security.key_hash_secret (FLOWGATE__SECURITY__KEY_HASH_SECRET)",
    )?;
    Ok(secret)
}

/// The shared token of internal gRPC calls: the configured one, or in `all` mode (`generate`) one
/// made for this process alone (its proxy calls the other services in process; their gRPC ports
/// then answer only callers given the token, which is no one). Every other mode needs it.
fn internal_token(settings: &Settings, generate: bool) -> anyhow::Result<InternalToken> {
    if let Some(token) = &settings.security.internal_token {
        // Checked while loading the settings; this only wraps it.
        return InternalToken::new(token.clone())
            .map_err(|error| anyhow::anyhow!("security.internal_token (FLOWGATE__SECURITY__INTERNAL_TOKEN) {error}"));
    }
    anyhow::ensure!(
        generate,
        "`security.internal_token` (FLOWGATE__SECURITY__INTERNAL_TOKEN) is required in this mode: the same secret \
         on every service, so internal gRPC calls are authenticated (see docs/security.md)"
    );
    InternalToken::generate().context("generating the internal token")
}

fn grpc_timeout(settings: &Settings) -> Duration {
    Duration::from_secs(settings.compliance.timeout_secs.max(1))
}

/// Logs, once at start, what the LiteLLM compatibility pass mapped and every field it ignored.
fn report_litellm_fields(settings: &Settings) {
    for mapped in &settings.compat.mapped {
        tracing::info!(field = %mapped.from, setting = %mapped.to, "LiteLLM setting understood");
    }
    for ignored in &settings.compat.ignored {
        match &ignored.value {
            Some(value) => tracing::warn!(field = %ignored.path, value = %value, "not supported, ignored"),
            None => tracing::warn!(field = %ignored.path, "not supported, ignored"),
        }
    }
}

/// Runs `mode` until SIGTERM/SIGINT (or, for `migrate`, until done).
pub(crate) async fn run(mode: Mode, settings: Settings) -> anyhow::Result<()> {
    if mode != Mode::All {
        // `all` reports them in `AllInOne::build`, which tests run too.
        report_litellm_fields(&settings);
    }
    if mode == Mode::Migrate {
        let database = connect_database(&settings).await?;
        let outcome = migrate::run(&database).await.context("applying migrations")?;
        if outcome.applied.is_empty() {
            tracing::info!(backend = ?database.backend(), "database schema is up to date");
        } else {
            tracing::info!(backend = ?database.backend(), applied = ?outcome.applied, "migrations applied");
        }
        database.close().await;
        return Ok(());
    }

    let shutdown = CancellationToken::new();
    spawn_signal_listener(&shutdown);
    let metrics = Metrics::new();
    let mut services: JoinSet<(&'static str, std::io::Result<()>)> = JoinSet::new();

    match mode {
        Mode::Compliance => {
            let deps = flowgate_compliance::Dependencies {
                database: connect_database(&settings).await?,
                shared: SharedState::new(settings.redis.url.as_ref(), &settings.redis.prefix)?,
                admin_key: admin_key(&settings, false)?,
                internal_token: internal_token(&settings, false)?,
                metrics,
            };
            let app = flowgate_compliance::Application::build(&settings, deps).await?;
            services.spawn(run_service(flowgate_compliance::SERVICE, app.run_until_stopped(shutdown.clone())));
        }
        Mode::Policy => {
            let deps = flowgate_policy::Dependencies {
                database: connect_database(&settings).await?,
                shared: SharedState::new(settings.redis.url.as_ref(), &settings.redis.prefix)?,
                admin_key: admin_key(&settings, false)?,
                internal_token: internal_token(&settings, false)?,
                metrics,
            };
            let app = flowgate_policy::Application::build(&settings, deps).await?;
            services.spawn(run_service(flowgate_policy::SERVICE, app.run_until_stopped(shutdown.clone())));
        }
        Mode::ApiServer => {
            let database = connect_database(&settings).await?;
            migrate::check_current(&database).await?;
            let deps = flowgate_api_server::Dependencies {
                database,
                shared: SharedState::new(settings.redis.url.as_ref(), &settings.redis.prefix)?,
                hasher: KeyHasher::new(&hash_secret(&settings, false)?),
                admin_key: admin_key(&settings, false)?,
                internal_token: internal_token(&settings, false)?,
                metrics,
            };
            let app = flowgate_api_server::Application::build(&settings, deps).await?;
            services.spawn(run_service(flowgate_api_server::SERVICE, app.run_until_stopped(shutdown.clone())));
        }
        Mode::Proxy => {
            let hasher = KeyHasher::new(&hash_secret(&settings, false)?);
            let token = internal_token(&settings, false)?;
            let timeout = grpc_timeout(&settings);
            let database = connect_database(&settings).await?;
            let deps = flowgate_proxy::Dependencies {
                database,
                shared: SharedState::new(settings.redis.url.as_ref(), &settings.redis.prefix)?,
                keys: Peer::remote(&settings.proxy.api_server_url, timeout, &token)?,
                hasher,
                compliance: Peer::remote(&settings.proxy.compliance_url, timeout, &token)?,
                policy: Peer::remote(&settings.proxy.policy_url, timeout, &token)?,
                metrics,
            };
            let app = flowgate_proxy::Application::build(&settings, deps).await?;
            services.spawn(run_service(flowgate_proxy::SERVICE, app.run_until_stopped(shutdown.clone())));
        }
        Mode::Worker => {
            let database = connect_database(&settings).await?;
            migrate::check_current(&database).await?;
            let deps =
                worker_deps(database, SharedState::new(settings.redis.url.as_ref(), &settings.redis.prefix)?, metrics);
            let app = flowgate_worker::Application::build(&settings, deps).await?;
            services.spawn(run_service(flowgate_worker::SERVICE, app.run_until_stopped(shutdown.clone())));
        }
        Mode::All => {
            let all = AllInOne::build(&settings).await?;
            all.spawn_into(&mut services, &shutdown);
        }
        Mode::Http => {
            let (proxy, api) = http_services(&settings, metrics).await?;
            services.spawn(run_service(flowgate_proxy::SERVICE, proxy.run_until_stopped(shutdown.clone())));
            services.spawn(run_service(flowgate_api_server::SERVICE, api.run_until_stopped(shutdown.clone())));
        }
        Mode::Grpc => {
            let (compliance, policy) = grpc_services(&settings, metrics).await?;
            services.spawn(run_service(flowgate_compliance::SERVICE, compliance.run_until_stopped(shutdown.clone())));
            services.spawn(run_service(flowgate_policy::SERVICE, policy.run_until_stopped(shutdown.clone())));
        }
        Mode::Migrate => unreachable_migrate(),
    }

    let failure = supervise(services, &shutdown).await?;
    tracing::info!("shutdown complete");
    failure.map_or(Ok(()), Err)
}

fn worker_deps(database: Database, shared: SharedState, metrics: Metrics) -> flowgate_worker::Dependencies {
    flowgate_worker::Dependencies { database, shared, metrics, clock: flowgate_worker::system_clock() }
}

/// ScaiGrid's `http` mode: the api-server and the proxy in one process on their own ports, over
/// one database pool and one shared state; the proxy resolves keys through the api-server in
/// process and calls compliance and policy over gRPC (`grpc` mode). Never migrates.
async fn http_services(
    settings: &Settings,
    metrics: Metrics,
) -> anyhow::Result<(flowgate_proxy::Application, flowgate_api_server::Application)> {
    let database = connect_database(settings).await?;
    migrate::check_current(&database).await?;
    let hasher = KeyHasher::new(&hash_secret(settings, false)?);
    let token = internal_token(settings, false)?;
    let shared = SharedState::new(settings.redis.url.as_ref(), &settings.redis.prefix)?;
    let api = flowgate_api_server::Application::build(
        settings,
        flowgate_api_server::Dependencies {
            database: database.clone(),
            shared: shared.clone(),
            hasher: hasher.clone(),
            admin_key: admin_key(settings, false)?,
            internal_token: token.clone(),
            metrics: metrics.clone(),
        },
    )
    .await?;
    let timeout = grpc_timeout(settings);
    let deps = flowgate_proxy::Dependencies {
        database,
        shared,
        keys: Peer::Local(Arc::new(api.key_resolver())),
        hasher,
        compliance: Peer::remote(&settings.proxy.compliance_url, timeout, &token)?,
        policy: Peer::remote(&settings.proxy.policy_url, timeout, &token)?,
        metrics,
    };
    let proxy = flowgate_proxy::Application::build(settings, deps).await?;
    Ok((proxy, api))
}

/// ScaiGrid's `grpc` mode: compliance and policy in one process on their own ports.
async fn grpc_services(
    settings: &Settings,
    metrics: Metrics,
) -> anyhow::Result<(flowgate_compliance::Application, flowgate_policy::Application)> {
    let database = connect_database(settings).await?;
    let shared = SharedState::new(settings.redis.url.as_ref(), &settings.redis.prefix)?;
    let admin = admin_key(settings, false)?;
    let token = internal_token(settings, false)?;
    let compliance = flowgate_compliance::Application::build(
        settings,
        flowgate_compliance::Dependencies {
            database: database.clone(),
            shared: shared.clone(),
            admin_key: admin.clone(),
            internal_token: token.clone(),
            metrics: metrics.clone(),
        },
    )
    .await?;
    let policy = flowgate_policy::Application::build(
        settings,
        flowgate_policy::Dependencies { database, shared, admin_key: admin, internal_token: token, metrics },
    )
    .await?;
    Ok((compliance, policy))
}

/// Waits for every service task; the first one that fails (or stops without being asked) cancels
/// the others. Returns that failure, if any.
async fn supervise(
    mut services: JoinSet<(&'static str, std::io::Result<()>)>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<anyhow::Error>> {
    let mut failure = None;
    while let Some(joined) = services.join_next().await {
        let (service, result) = joined.context("service task panicked")?;
        if let Err(error) = result {
            tracing::error!(service, %error, "service failed; stopping the others");
            failure.get_or_insert(anyhow::anyhow!("{service}: {error}"));
            shutdown.cancel();
        } else if !shutdown.is_cancelled() {
            // A server that returns without being asked to stop is a failure of the process.
            failure.get_or_insert(anyhow::anyhow!("{service} stopped unexpectedly"));
            shutdown.cancel();
        }
    }
    Ok(failure)
}

/// `all` mode built: every service bound to its port (port 0 is fine) and wired to the others in
/// process, not yet serving. The binary's `all` mode and the tests' `spawn_app` both start here,
/// so they run the same wiring.
#[derive(Debug)]
pub struct AllInOne {
    proxy: flowgate_proxy::Application,
    api: flowgate_api_server::Application,
    compliance: flowgate_compliance::Application,
    policy: flowgate_policy::Application,
    worker: flowgate_worker::Application,
}

/// Where the services of an [`AllInOne`] listen.
#[derive(Debug, Clone, Copy)]
pub struct AllAddrs {
    /// The data plane.
    pub proxy: SocketAddr,
    /// The management API (and its gRPC key service).
    pub api_server: SocketAddr,
    /// The compliance service.
    pub compliance: SocketAddr,
    /// The policy service.
    pub policy: SocketAddr,
    /// The worker's health port.
    pub worker: SocketAddr,
}

impl AllInOne {
    /// Connects and migrates the database, loads (or, when not configured, generates into the data
    /// directory) the admin key and key-hash secret, takes the configured internal token (or makes
    /// one for this process), and builds the five services around one shared state, the proxy
    /// calling the others in process.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        report_litellm_fields(settings);
        let metrics = Metrics::new();
        let database = connect_database(settings).await?;
        let outcome = migrate::run(&database).await.context("applying migrations")?;
        if !outcome.applied.is_empty() {
            tracing::info!(applied = ?outcome.applied, "migrations applied");
        }
        let admin = admin_key(settings, true)?;
        let hasher = KeyHasher::new(&hash_secret(settings, true)?);
        let token = internal_token(settings, true)?;
        // One shared state for both, so key invalidations reach the proxy directly.
        let shared = SharedState::new(settings.redis.url.as_ref(), &settings.redis.prefix)?;
        let api = flowgate_api_server::Application::build(
            settings,
            flowgate_api_server::Dependencies {
                database: database.clone(),
                shared: shared.clone(),
                hasher: hasher.clone(),
                admin_key: admin.clone(),
                internal_token: token.clone(),
                metrics: metrics.clone(),
            },
        )
        .await?;
        let compliance = flowgate_compliance::Application::build(
            settings,
            flowgate_compliance::Dependencies {
                database: database.clone(),
                shared: shared.clone(),
                admin_key: admin.clone(),
                internal_token: token.clone(),
                metrics: metrics.clone(),
            },
        )
        .await?;
        let policy = flowgate_policy::Application::build(
            settings,
            flowgate_policy::Dependencies {
                database: database.clone(),
                shared: shared.clone(),
                admin_key: admin.clone(),
                internal_token: token.clone(),
                metrics: metrics.clone(),
            },
        )
        .await?;
        // The worker's health routes listen on a free port here (logged; `AllAddrs::worker`):
        // `all` serves the four ports of the other services and no fixed fifth one, so existing
        // setups (and several `all` processes on one machine) keep working.
        let mut worker_settings = settings.clone();
        worker_settings.worker.port = 0;
        let worker = flowgate_worker::Application::build(
            &worker_settings,
            worker_deps(database.clone(), shared.clone(), metrics.clone()),
        )
        .await?;
        let deps = flowgate_proxy::Dependencies {
            database: database.clone(),
            shared,
            keys: Peer::Local(Arc::new(api.key_resolver())),
            hasher,
            compliance: Peer::Local(Arc::new(compliance.scanner())),
            policy: Peer::Local(Arc::new(policy.evaluator())),
            metrics,
        };
        let proxy = flowgate_proxy::Application::build(settings, deps).await?;
        Ok(Self { proxy, api, compliance, policy, worker })
    }

    /// The bound addresses.
    pub fn addrs(&self) -> std::io::Result<AllAddrs> {
        Ok(AllAddrs {
            proxy: self.proxy.local_addr()?,
            api_server: self.api.local_addr()?,
            compliance: self.compliance.local_addr()?,
            policy: self.policy.local_addr()?,
            worker: self.worker.local_addr()?,
        })
    }

    /// Serves until `shutdown` is cancelled (or one service fails, which stops the others).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut services = JoinSet::new();
        self.spawn_into(&mut services, &shutdown);
        supervise(services, &shutdown).await?.map_or(Ok(()), Err)
    }

    fn spawn_into(self, services: &mut JoinSet<(&'static str, std::io::Result<()>)>, shutdown: &CancellationToken) {
        let Self { proxy, api, compliance, policy, worker } = self;
        services.spawn(run_service(flowgate_proxy::SERVICE, proxy.run_until_stopped(shutdown.clone())));
        services.spawn(run_service(flowgate_api_server::SERVICE, api.run_until_stopped(shutdown.clone())));
        services.spawn(run_service(flowgate_compliance::SERVICE, compliance.run_until_stopped(shutdown.clone())));
        services.spawn(run_service(flowgate_policy::SERVICE, policy.run_until_stopped(shutdown.clone())));
        services.spawn(run_service(flowgate_worker::SERVICE, worker.run_until_stopped(shutdown.clone())));
    }
}

async fn run_service(
    name: &'static str,
    future: impl Future<Output = std::io::Result<()>>,
) -> (&'static str, std::io::Result<()>) {
    (name, future.await)
}

#[cold]
fn unreachable_migrate() -> ! {
    // `run` returns early for migrate; this arm only keeps the match exhaustive.
    panic!("migrate is handled before services start")
}

/// `flowgate healthcheck`: GET /health on this container's service port; exit 0 on 200.
pub(crate) async fn healthcheck(settings: &Settings, mode: Option<Mode>) -> ExitCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = match mode.unwrap_or(Mode::All) {
        Mode::ApiServer => settings.api_server.port,
        Mode::Compliance => settings.compliance.port,
        Mode::Policy => settings.policy.port,
        Mode::Worker => settings.worker.port,
        Mode::Grpc => settings.compliance.port,
        Mode::Proxy | Mode::All | Mode::Migrate | Mode::Http => settings.proxy.port,
    };
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// `flowgate mock-upstream`: serves the mock provider until SIGTERM.
pub(crate) async fn mock_upstream(args: crate::cli::MockUpstreamArgs) -> ExitCode {
    let telemetry = flowgate_telemetry::Config {
        log_level: "info".to_owned(),
        json: std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json"),
        otlp_endpoint: None,
        sample_ratio: 0.0,
        service_name: "flowgate-mock-upstream".to_owned(),
    };
    let _ = flowgate_telemetry::init(&telemetry);
    let params = flowgate_proxy::mock::MockParams {
        response: args.response,
        latency: Duration::from_millis(args.latency_ms),
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        chunks: args.chunks,
    };
    let listener = match flowgate_common::server::bind(&args.host, args.port).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, port = args.port, "cannot bind");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    spawn_signal_listener(&shutdown);
    let router = flowgate_proxy::mock_server::router(params);
    match flowgate_common::server::serve("mock-upstream", listener, router, shutdown, Duration::from_secs(5)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "mock upstream failed");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT, for the life of the process.
#[expect(clippy::disallowed_methods, reason = "the process's signal listener lives as long as the process")]
fn spawn_signal_listener(shutdown: &CancellationToken) {
    drop(tokio::spawn(flowgate_common::shutdown::cancel_on_signal(shutdown.clone())));
}
