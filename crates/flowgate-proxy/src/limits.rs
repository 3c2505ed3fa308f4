//! Rate limits and budgets, shared by every proxy replica through Redis.
//!
//! Per key: requests per minute (`rpm`), per hour (`requests_per_hour`, default
//! `RATE_LIMIT_REQUESTS_PER_HOUR`), tokens per minute (`tpm`), requests in flight
//! (`max_parallel_requests`), and a USD budget per period. Windows are fixed and aligned to the
//! clock (`rl:{key}:m:{minute}`), so replicas agree without coordination.
//!
//! Budgets hold under concurrency: before forwarding, the request's estimated cost is *reserved*
//! (admitted only if settled + reserved + estimate ≤ budget, atomically: one Lua script in Redis,
//! one lock in process); after the answer the reservation is replaced by the actual cost. A burst
//! can therefore overspend only by what admitted requests cost beyond their estimates. Settled
//! spend is also written to the database in batches, and read back when a period is first seen.
//!
//! When Redis is unreachable, requests keep flowing on in-process counters: a warning is logged,
//! `flowgate_shared_state_fallbacks_total` rises, and Redis is tried again after two seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flowgate_common::budget::BudgetPeriod;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, SharedError, SharedState};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::auth::KeyInfo;
use crate::error::ProxyError;
use crate::translate::Usage;

/// How long Redis is left alone after a failure before it is tried again.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Reservations of a crashed process expire after this long without new reservations.
const RESERVATION_TTL: Duration = Duration::from_secs(600);
/// Settled spend kept in shared state after a period's last use.
const SETTLED_TTL: Duration = Duration::from_secs(35 * 86_400);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What the spend writer receives.
#[derive(Debug)]
enum SpendMsg {
    Delta(SpendDelta),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// One spend delta for the database.
#[derive(Debug, Clone)]
struct SpendDelta {
    row: String,
    tenant_id: String,
    period_start: i64,
    nanos: i64,
    usage: Usage,
}

/// The process's limiter. Cheap to clone.
#[derive(Clone)]
pub struct Limiter(Arc<Inner>);

struct Inner {
    shared: SharedState,
    local: SharedState,
    redis_down_until_ms: AtomicU64,
    default_requests_per_hour: u32,
    database: Database,
    spend_tx: mpsc::UnboundedSender<SpendMsg>,
    /// (row, period) pairs whose settled spend is known to be in shared state.
    initialized: moka::future::Cache<String, ()>,
    fallbacks: Counter,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("shared", &self.0.shared).finish_non_exhaustive()
    }
}

/// A budget reservation held by an admitted request.
#[derive(Debug, Clone)]
struct Held {
    row: String,
    tenant_id: String,
    period_start: i64,
    estimate: i64,
}

/// An admitted request's claims on the limits; settle it with the actual usage when done.
#[derive(Debug)]
pub struct Admission {
    limiter: Limiter,
    held: Vec<Held>,
    parallel_key: Option<String>,
    tpm: Option<(String, i64)>,
    /// `x-ratelimit-*` headers for the response.
    pub headers: Vec<(&'static str, String)>,
    settled: bool,
}

fn settled_key(row: &str, period_start: i64) -> String {
    format!("spend:{row}:{period_start}:settled")
}

fn reserved_key(row: &str, period_start: i64) -> String {
    format!("spend:{row}:{period_start}:reserved")
}

fn usd_to_nanos(usd: f64) -> i64 {
    #[expect(clippy::cast_possible_truncation, reason = "budgets are far below i64::MAX nano-dollars")]
    let nanos = (usd * crate::pricing::NANOS_PER_USD).round() as i64;
    nanos
}

impl Limiter {
    /// A limiter over `shared` (Redis or in process), persisting spend to `database`.
    pub fn new(
        shared: SharedState,
        database: Database,
        default_requests_per_hour: u32,
        metrics: &flowgate_common::metrics::Metrics,
    ) -> Self {
        let (spend_tx, spend_rx) = mpsc::unbounded_channel();
        let fallbacks = Counter::default();
        metrics.register(
            "shared_state_fallbacks",
            "Operations served by in-process state because Redis was unreachable",
            fallbacks.clone(),
        );
        let local = SharedState::local(shared.prefix());
        let inner = Arc::new(Inner {
            shared,
            local,
            redis_down_until_ms: AtomicU64::new(0),
            default_requests_per_hour,
            database: database.clone(),
            spend_tx,
            initialized: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            fallbacks,
        });
        tokio::spawn(write_spend(database, spend_rx));
        Self(inner)
    }

    /// Runs `op` on Redis, or on the in-process state while Redis is down.
    async fn run<T, F, Fut>(&self, op: F) -> T
    where
        F: Fn(SharedState) -> Fut,
        Fut: Future<Output = Result<T, SharedError>>,
        T: Default,
    {
        let inner = &self.0;
        let down = inner.redis_down_until_ms.load(Ordering::Relaxed) > u64::try_from(now_ms()).unwrap_or(0);
        if inner.shared.is_shared() && !down {
            match op(inner.shared.clone()).await {
                Ok(value) => return value,
                Err(error) => {
                    let until = u64::try_from(now_ms()).unwrap_or(0)
                        + u64::try_from(REDIS_RETRY_AFTER.as_millis()).unwrap_or(0);
                    let previous = inner.redis_down_until_ms.swap(until, Ordering::Relaxed);
                    if previous < until.saturating_sub(u64::try_from(REDIS_RETRY_AFTER.as_millis()).unwrap_or(0)) {
                        tracing::warn!(%error, "Redis unreachable: rate limits and budgets use in-process counters until it returns");
                    }
                }
            }
            inner.fallbacks.inc();
        } else if inner.shared.is_shared() {
            inner.fallbacks.inc();
        }
        match op(inner.local.clone()).await {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(%error, "in-process limit state failed");
                T::default()
            }
        }
    }

    /// Loads a period's settled spend from the database into shared state, once.
    async fn ensure_settled(&self, row: &str, period_start: i64) {
        let marker = format!("{row}:{period_start}");
        if self.0.initialized.contains_key(&marker) {
            return;
        }
        let spent: i64 = sqlx::query("SELECT spent_nanos FROM spend WHERE key_id = $1 AND period_start = $2")
            .bind(row.to_owned())
            .bind(period_start)
            .fetch_optional(self.0.database.pool())
            .await
            .ok()
            .flatten()
            .and_then(|r| r.try_get::<i64, _>(0).ok())
            .unwrap_or(0);
        let key = settled_key(row, period_start);
        self.run(|s| {
            let key = key.clone();
            async move { s.set_nx(&key, spent, SETTLED_TTL).await }
        })
        .await;
        self.0.initialized.insert(marker, ()).await;
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> i64 {
        self.run(|s| {
            let key = key.to_owned();
            async move { s.incr_by(&key, delta, ttl).await }
        })
        .await
    }

    /// Checks and claims every limit of `key` for one request with `estimated_tokens` prompt tokens
    /// and `estimated_cost` nano-dollars.
    pub async fn admit(
        &self,
        key: &KeyInfo,
        estimated_tokens: u64,
        estimated_cost: i64,
    ) -> Result<Admission, ProxyError> {
        let vk = &key.key;
        let id = &vk.id;
        let now = now_ms();
        let minute = now / 60_000;
        let hour = now / 3_600_000;
        let secs_to_minute = u64::try_from(60 - (now / 1000) % 60).unwrap_or(60);
        let secs_to_hour = u64::try_from(3600 - (now / 1000) % 3600).unwrap_or(3600);
        let mut admission = Admission {
            limiter: self.clone(),
            held: Vec::new(),
            parallel_key: None,
            tpm: None,
            headers: Vec::new(),
            settled: false,
        };

        if vk.max_parallel_requests > 0 {
            let parallel_key = format!("rl:{id}:parallel");
            let in_flight = self.incr(&parallel_key, 1, RESERVATION_TTL).await;
            admission.parallel_key = Some(parallel_key);
            if in_flight > i64::from(vk.max_parallel_requests) {
                return Err(limited(
                    format!("too many requests in flight for this key (limit {})", vk.max_parallel_requests),
                    "rate_limit_exceeded",
                    1,
                    Vec::new(),
                ));
            }
        }
        let rph = if vk.requests_per_hour > 0 { vk.requests_per_hour } else { self.0.default_requests_per_hour };
        for (limit, window_key, reset, label) in [
            (vk.rpm, format!("rl:{id}:m:{minute}"), secs_to_minute, "requests per minute"),
            (rph, format!("rl:{id}:h:{hour}"), secs_to_hour, "requests per hour"),
        ] {
            if limit == 0 {
                continue;
            }
            let count = self.incr(&window_key, 1, Duration::from_secs(reset + 5)).await;
            let remaining = i64::from(limit) - count;
            let headers = vec![
                ("x-ratelimit-limit-requests", limit.to_string()),
                ("x-ratelimit-remaining-requests", remaining.max(0).to_string()),
                ("x-ratelimit-reset-requests", format!("{reset}s")),
            ];
            if remaining < 0 {
                self.incr(&window_key, -1, Duration::from_secs(reset + 5)).await;
                return Err(limited(
                    format!("rate limit of {limit} {label} reached"),
                    "rate_limit_exceeded",
                    reset,
                    headers,
                ));
            }
            if admission.headers.is_empty() {
                admission.headers = headers;
            }
        }
        if vk.tpm > 0 {
            let window_key = format!("rl:{id}:tm:{minute}");
            let estimate = i64::try_from(estimated_tokens).unwrap_or(i64::MAX);
            let used = self.incr(&window_key, estimate, Duration::from_secs(secs_to_minute + 5)).await;
            let before = used - estimate;
            let headers = vec![
                ("x-ratelimit-limit-tokens", vk.tpm.to_string()),
                ("x-ratelimit-remaining-tokens", (i64::from(vk.tpm) - used).max(0).to_string()),
                ("x-ratelimit-reset-tokens", format!("{secs_to_minute}s")),
            ];
            if before >= i64::from(vk.tpm) {
                self.incr(&window_key, -estimate, Duration::from_secs(secs_to_minute + 5)).await;
                return Err(limited(
                    format!("token rate limit of {} tokens per minute reached", vk.tpm),
                    "rate_limit_exceeded",
                    secs_to_minute,
                    headers,
                ));
            }
            admission.tpm = Some((window_key, estimate));
            admission.headers.extend(headers);
        }
        let mut budgets = Vec::new();
        if vk.budget_usd > 0.0 {
            budgets.push((id.clone(), vk.budget_usd, vk.budget_period.as_str(), "key"));
        }
        if vk.tenant_budget_usd > 0.0 {
            budgets.push((
                format!("tenant:{}", vk.tenant_id),
                vk.tenant_budget_usd,
                vk.tenant_budget_period.as_str(),
                "tenant",
            ));
        }
        for (row, budget_usd, period, whose) in budgets {
            let period: BudgetPeriod = period.parse().unwrap_or_default();
            let (period_start, period_end) = period.bounds(now);
            self.ensure_settled(&row, period_start).await;
            let limit = usd_to_nanos(budget_usd);
            let (settled, reserved) = (settled_key(&row, period_start), reserved_key(&row, period_start));
            let outcome = self
                .run(|s| {
                    let (settled, reserved) = (settled.clone(), reserved.clone());
                    async move { s.reserve(&settled, &reserved, estimated_cost, limit, RESERVATION_TTL).await.map(Some) }
                })
                .await;
            let Some(outcome) = outcome else { continue };
            if !outcome.admitted {
                let retry = period_end.map_or(86_400, |end| u64::try_from((end - now) / 1000).unwrap_or(86_400).max(1));
                #[expect(clippy::cast_precision_loss, reason = "display only")]
                let spent = outcome.settled as f64 / crate::pricing::NANOS_PER_USD;
                return Err(limited(
                    format!(
                        "{whose} budget of ${budget_usd:.2} per {} period exhausted (spent ${spent:.4})",
                        period.as_str()
                    ),
                    "budget_exceeded",
                    retry,
                    Vec::new(),
                ));
            }
            admission.held.push(Held { row, tenant_id: vk.tenant_id.clone(), period_start, estimate: estimated_cost });
        }
        Ok(admission)
    }
}

fn limited(
    message: String,
    code: &'static str,
    retry_after_secs: u64,
    headers: Vec<(&'static str, String)>,
) -> ProxyError {
    ProxyError::RateLimited { message, code, retry_after_secs, headers }
}

impl Admission {
    /// Replaces the reservations with the actual cost and usage, releases the in-flight slot, and
    /// queues the spend for the database. `None` releases without charging (the request failed).
    pub async fn settle(mut self, actual: Option<(Usage, i64)>) {
        self.settled = true;
        let limiter = self.limiter.clone();
        let (usage, cost) = actual.unwrap_or_default();
        for held in std::mem::take(&mut self.held) {
            let (settled, reserved) =
                (settled_key(&held.row, held.period_start), reserved_key(&held.row, held.period_start));
            limiter
                .run(|s| {
                    let (settled, reserved) = (settled.clone(), reserved.clone());
                    async move { s.settle(&settled, &reserved, cost, held.estimate, SETTLED_TTL).await }
                })
                .await;
            if cost > 0 || actual.is_some() {
                let _ = limiter.0.spend_tx.send(SpendMsg::Delta(SpendDelta {
                    row: held.row,
                    tenant_id: held.tenant_id,
                    period_start: held.period_start,
                    nanos: cost,
                    usage,
                }));
            }
        }
        if let Some((window_key, estimate)) = self.tpm.take() {
            let actual_tokens = i64::try_from(usage.prompt_tokens + usage.completion_tokens).unwrap_or(0);
            let delta = if actual.is_some() { actual_tokens - estimate } else { -estimate };
            limiter.incr(&window_key, delta, Duration::from_secs(65)).await;
        }
        if let Some(parallel_key) = self.parallel_key.take() {
            limiter.incr(&parallel_key, -1, RESERVATION_TTL).await;
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // Rejected or abandoned before settling: give everything back.
        if !self.settled && (!self.held.is_empty() || self.parallel_key.is_some() || self.tpm.is_some()) {
            let rest = Admission {
                limiter: self.limiter.clone(),
                held: std::mem::take(&mut self.held),
                parallel_key: self.parallel_key.take(),
                tpm: self.tpm.take(),
                headers: Vec::new(),
                settled: true,
            };
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(rest.settle(None));
            }
        }
    }
}

impl Limiter {
    /// Writes every queued spend delta to the database now (called at shutdown, after the drain).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.0.spend_tx.send(SpendMsg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }
}

/// Summed spend per (row, period start): (tenant, nano-dollars, tokens, requests).
type Pending = HashMap<(String, i64), (String, i64, Usage, i64)>;

fn add(pending: &mut Pending, delta: SpendDelta) {
    let entry = pending.entry((delta.row, delta.period_start)).or_insert((delta.tenant_id, 0, Usage::default(), 0));
    entry.1 += delta.nanos;
    entry.2.prompt_tokens += delta.usage.prompt_tokens;
    entry.2.completion_tokens += delta.usage.completion_tokens;
    entry.3 += 1;
}

/// Writes spend deltas to the database in batches (every 250 ms, or at once on a flush), summing
/// per row. A failed batch is kept and retried with the next one.
async fn write_spend(database: Database, mut rx: mpsc::UnboundedReceiver<SpendMsg>) {
    let mut pending: Pending = HashMap::new();
    loop {
        let mut flushed = Vec::new();
        match tokio::time::timeout(Duration::from_millis(250), rx.recv()).await {
            Ok(Some(message)) => {
                let mut next = Some(message);
                while let Some(message) = next {
                    match message {
                        SpendMsg::Delta(delta) => add(&mut pending, delta),
                        SpendMsg::Flush(done) => flushed.push(done),
                    }
                    next = rx.try_recv().ok();
                }
            }
            Ok(None) => return,
            Err(_) => {}
        }
        if !pending.is_empty() {
            let failed = write_batch(&database, std::mem::take(&mut pending)).await;
            if !failed.is_empty() {
                pending.extend(failed);
                if flushed.is_empty() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

async fn write_batch(database: &Database, batch: Pending) -> Pending {
    let mut failed = HashMap::new();
    for ((row, period_start), (tenant_id, nanos, usage, requests)) in batch {
        let result = sqlx::query(
            "INSERT INTO spend (key_id, tenant_id, period_start, spent_nanos, prompt_tokens, completion_tokens, requests, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (key_id, period_start) DO UPDATE SET \
             spent_nanos = spend.spent_nanos + excluded.spent_nanos, \
             prompt_tokens = spend.prompt_tokens + excluded.prompt_tokens, \
             completion_tokens = spend.completion_tokens + excluded.completion_tokens, \
             requests = spend.requests + excluded.requests, updated_at = excluded.updated_at",
        )
        .bind(row.clone())
        .bind(tenant_id.clone())
        .bind(period_start)
        .bind(nanos)
        .bind(i64::try_from(usage.prompt_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(usage.completion_tokens).unwrap_or(i64::MAX))
        .bind(requests)
        .bind(now_ms())
        .execute(database.pool())
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "cannot record spend yet; will retry");
            failed.insert((row, period_start), (tenant_id, nanos, usage, requests));
        }
    }
    failed
}
