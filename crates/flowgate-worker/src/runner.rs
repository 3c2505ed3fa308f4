//! The job runner: every pass, each job that is due and that this worker leads runs once, and its
//! outcome is kept for `/readyz` and the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use flowgate_common::metrics::Metrics;
use flowgate_common::server::ReadinessCheck;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio_util::sync::CancellationToken;

use crate::leader::Leadership;
use crate::{Clock, JobError};

/// One background job. Every job is safe to run twice (or by two workers at once): it reads what
/// is, writes what should be, and records what it changed.
#[async_trait::async_trait]
pub trait Job: Send + Sync + 'static {
    /// Its name in logs, metrics and `/readyz` (`rollups`, `budget-reconcile`, ...).
    fn name(&self) -> &'static str;
    /// How often it runs at most (it runs on the first pass after this much time).
    fn every(&self) -> Duration;
    /// One run at `now_ms` (unix milliseconds); returns a one-line account of what it did.
    async fn run(&self, now_ms: i64) -> Result<String, JobError>;
}

/// A job's last run, as `/readyz` shows it.
#[derive(Debug, Clone, Default)]
struct JobStatus {
    leader: bool,
    runs: u64,
    failures: u64,
    last_run_ms: Option<i64>,
    last_duration_ms: Option<u64>,
    last_outcome: Option<&'static str>,
    last_message: Option<String>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    job: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone)]
struct JobMetrics {
    runs: Family<OutcomeLabels, Counter>,
    duration: Family<JobLabels, Histogram, fn() -> Histogram>,
    last_run: Family<JobLabels, Gauge>,
    leader: Family<JobLabels, Gauge>,
}

impl JobMetrics {
    fn register(metrics: &Metrics) -> Self {
        let this = Self {
            runs: Family::default(),
            duration: Family::new_with_constructor(flowgate_common::metrics::latency_histogram),
            last_run: Family::default(),
            leader: Family::default(),
        };
        metrics.register("worker_job_runs", "Worker job runs by outcome (ok, error)", this.runs.clone());
        metrics.register("worker_job_duration_seconds", "How long worker job runs took", this.duration.clone());
        metrics.register(
            "worker_job_last_run_timestamp_seconds",
            "Unix time of each worker job's last run",
            this.last_run.clone(),
        );
        metrics.register("worker_leader", "1 while this worker leads the job", this.leader.clone());
        this
    }
}

/// The jobs of one worker, their schedule and their outcomes.
#[derive(Clone)]
pub struct Runner {
    jobs: Arc<[Arc<dyn Job>]>,
    leadership: Leadership,
    clock: Clock,
    interval: Duration,
    status: Arc<Mutex<HashMap<&'static str, JobStatus>>>,
    metrics: JobMetrics,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.jobs.iter().map(|job| job.name()).collect();
        f.debug_struct("Runner").field("jobs", &names).field("interval", &self.interval).finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner of `jobs`, passing every `interval`.
    pub fn new(
        jobs: Vec<Arc<dyn Job>>,
        leadership: Leadership,
        clock: Clock,
        interval: Duration,
        metrics: &Metrics,
    ) -> Self {
        let status = jobs.iter().map(|job| (job.name(), JobStatus::default())).collect();
        Self {
            jobs: jobs.into(),
            leadership,
            clock,
            interval,
            status: Arc::new(Mutex::new(status)),
            metrics: JobMetrics::register(metrics),
        }
    }

    /// One readiness check per job (never required: a failing job degrades, it does not take the
    /// worker out of service), each showing the job's last run.
    pub fn checks(&self) -> Vec<Arc<dyn ReadinessCheck>> {
        self.jobs
            .iter()
            .map(|job| {
                Arc::new(JobCheck { name: format!("job:{}", job.name()), job: job.name(), status: self.status.clone() })
                    as Arc<dyn ReadinessCheck>
            })
            .collect()
    }

    /// Runs one pass: each job that is due and led here, one after the other.
    pub async fn pass(&self) {
        for job in self.jobs.iter() {
            let name = job.name();
            let leader = match self.leadership.lead(name).await {
                Ok(leader) => leader,
                Err(error) => {
                    tracing::warn!(job = name, %error, "cannot take or check leadership; not running");
                    false
                }
            };
            self.metrics.leader.get_or_create(&JobLabels { job: name }).set(i64::from(leader));
            let now = (self.clock)();
            let due = {
                let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = status.entry(name).or_default();
                entry.leader = leader;
                let every = i64::try_from(job.every().as_millis()).unwrap_or(i64::MAX);
                entry.last_run_ms.is_none_or(|last| now.saturating_sub(last) >= every)
            };
            if leader && due {
                self.run_one(job.as_ref(), now).await;
            }
        }
    }

    async fn run_one(&self, job: &dyn Job, now: i64) {
        let name = job.name();
        let started = Instant::now();
        let span = tracing::info_span!("worker.job", job = name);
        let result = tracing::Instrument::instrument(job.run(now), span).await;
        let elapsed = started.elapsed();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        match &result {
            Ok(message) => tracing::debug!(job = name, duration_ms = elapsed.as_millis(), %message, "job ran"),
            Err(error) => tracing::warn!(job = name, duration_ms = elapsed.as_millis(), %error, "job failed"),
        }
        let labels = JobLabels { job: name };
        self.metrics.runs.get_or_create(&OutcomeLabels { job: name, outcome }).inc();
        self.metrics.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.metrics.last_run.get_or_create(&labels).set(now / 1000);
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = status.entry(name).or_default();
        entry.runs += 1;
        entry.failures += u64::from(result.is_err());
        entry.last_run_ms = Some(now);
        entry.last_duration_ms = Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        entry.last_outcome = Some(outcome);
        entry.last_message = Some(match result {
            Ok(message) => message,
            Err(error) => error.to_string(),
        });
    }

    /// Passes every interval until `shutdown`, then gives up leadership.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.pass() => {}
            }
        }
        self.leadership.release().await;
    }
}

struct JobCheck {
    name: String,
    job: &'static str,
    status: Arc<Mutex<HashMap<&'static str, JobStatus>>>,
}

impl JobCheck {
    fn status(&self) -> JobStatus {
        self.status.lock().unwrap_or_else(PoisonError::into_inner).get(self.job).cloned().unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl ReadinessCheck for JobCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<(), String> {
        let status = self.status();
        match (status.last_outcome, status.last_message) {
            (Some("error"), Some(message)) => Err(format!("last run failed: {message}")),
            _ => Ok(()),
        }
    }

    fn required(&self) -> bool {
        false
    }

    fn detail(&self) -> Option<serde_json::Value> {
        let status = self.status();
        Some(serde_json::json!({
            "leader": status.leader,
            "runs": status.runs,
            "failures": status.failures,
            "last_run": status.last_run_ms.map(flowgate_common::budget::utc_timestamp),
            "last_duration_ms": status.last_duration_ms,
            "last_outcome": status.last_outcome,
            "last_message": status.last_message,
        }))
    }
}
