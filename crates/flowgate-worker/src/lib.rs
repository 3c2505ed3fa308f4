//! Worker service: the background jobs of a deployment, run by one replica at a time each.
//!
//! # Jobs
//! - `rollups` ([`jobs::rollups`]): hourly spend aggregates per tenant, key and model, which
//!   `/api/analytics/spend` reads instead of the raw audit records;
//! - `budget-rollover` ([`jobs::budgets::Rollover`]): opens each budget's new period (its `spend` row
//!   and its shared counter) when the period starts, without waiting for a request;
//! - `budget-reconcile` ([`jobs::budgets::Reconcile`]): compares the shared (Redis) settled-spend
//!   counters with the spend recorded in the database and repairs drift, reporting each change;
//! - `audit-archive` ([`jobs::archive`], with `audit.retention_days`): audit records past their
//!   retention exported to S3-compatible storage, verified, then deleted;
//! - `alerts` ([`jobs::alerts`]): budget thresholds and key expiry, raised once per threshold and
//!   period, delivered to webhooks with retries and a delivery log (read at `/api/alerts`).
//!
//! # Leadership
//! Any number of worker replicas may run; each job is run by the one holding its lock
//! ([`leader`]). Every job is idempotent besides, so a run repeated after a takeover changes
//! nothing twice.
//!
//! # Surface
//! The worker serves only `/health`, `/readyz` (one entry per job: leader or not, last run,
//! duration, outcome) and `/metrics` (`flowgate_worker_job_*`, `flowgate_worker_leader`), on
//! `worker.port` (default 7779).

pub mod jobs;
pub mod leader;
pub mod runner;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use flowgate_common::Settings;
use flowgate_common::metrics::Metrics;
use flowgate_common::server::{BaseState, ServiceHost};
use flowgate_db::{Database, SharedError, SharedState, sqlx};
use tokio_util::sync::CancellationToken;

pub use crate::leader::Leadership;
pub use crate::runner::{Job, Runner};

/// Service name used in logs, metrics and the `x-flowgate-service` header.
pub const SERVICE: &str = "worker";

/// The time jobs see, in unix milliseconds (a fixed one in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(flowgate_db::now_millis)
}

/// Why a job run failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A statement failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Shared state (Redis) failed.
    #[error("shared state: {0}")]
    Shared(#[from] SharedError),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The port could not be bound.
    #[error("cannot bind {service} on port {port}: {source}")]
    Bind {
        /// Which service.
        service: &'static str,
        /// The port asked.
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The archive's object storage settings cannot make a client.
    #[error("audit.archive: {0}")]
    Archive(String),
    /// The webhook client could not be built.
    #[error("cannot build the HTTP client for alert webhooks: {0}")]
    HttpClient(String),
}

/// What the service needs from the process.
#[derive(Clone)]
pub struct Dependencies {
    /// The database every job reads and writes.
    pub database: Database,
    /// The budget counters (Redis, or in process in `all` mode without Redis).
    pub shared: SharedState,
    /// Process metrics.
    pub metrics: Metrics,
    /// What jobs take as now.
    pub clock: Clock,
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependencies").field("shared", &self.shared).finish_non_exhaustive()
    }
}

/// The worker, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    host: ServiceHost,
    runner: Runner,
}

impl Application {
    /// Builds the jobs from `settings`, binds the health port.
    pub async fn build(settings: &Settings, deps: Dependencies) -> Result<Self, InitError> {
        let jobs = jobs::all(settings, &deps)?;
        let runner = Runner::new(
            jobs,
            Leadership::new(&deps.database),
            deps.clock.clone(),
            Duration::from_secs(settings.worker.interval_secs.max(1)),
            &deps.metrics,
        );
        let base =
            BaseState { service: SERVICE, metrics: deps.metrics, checks: Arc::new(runner.checks()), details: None };
        let port = settings.worker.port;
        let host = ServiceHost::bind(
            base,
            &settings.server.host,
            port,
            Router::new(),
            Duration::from_secs(settings.server.shutdown_grace_secs),
        )
        .await
        .map_err(|source| InitError::Bind { service: SERVICE, port, source })?;
        Ok(Self { host, runner })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.host.local_addr()
    }

    /// Runs the jobs and serves the health routes until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let runner = self.runner.run_until_stopped(shutdown.clone());
        let (result, ()) = tokio::join!(self.host.run_until_stopped(shutdown), runner);
        result
    }
}
