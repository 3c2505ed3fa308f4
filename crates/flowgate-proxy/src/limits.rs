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
use std::time::Duration;

use flowgate_common::budget::BudgetPeriod;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Adjustment, Claim, ClaimKind, Database, SharedError, SharedState};
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
    flowgate_db::now_millis()
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
    /// `settled` is the period's settled-spend counter, which also marks it as loaded.
    async fn ensure_settled(&self, row: &str, period_start: i64, settled: &str) {
        if self.0.initialized.contains_key(settled) {
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
        self.run(|s| async move { s.set_nx(settled, spent, SETTLED_TTL).await }).await;
        self.0.initialized.insert(settled.to_owned(), ()).await;
    }

    /// Checks and claims every limit of `key` for one request with `estimated_tokens` prompt tokens
    /// and `estimated_cost` nano-dollars: one atomic claim (one Redis round trip), all or nothing.
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
            settled: true,
        };
        // What each claim is, for the answer; in the order of `claims`.
        let mut what: Vec<Limit> = Vec::new();
        let mut claims: Vec<Claim> = Vec::new();

        if vk.max_parallel_requests > 0 {
            claims.push(Claim {
                key: format!("rl:{id}:parallel"),
                delta: 1,
                limit: i64::from(vk.max_parallel_requests),
                ttl: RESERVATION_TTL,
                kind: ClaimKind::InFlight,
            });
            what.push(Limit::Parallel);
        }
        let rph = if vk.requests_per_hour > 0 { vk.requests_per_hour } else { self.0.default_requests_per_hour };
        for (limit, window_key, reset, label) in [
            (vk.rpm, format!("rl:{id}:m:{minute}"), secs_to_minute, "requests per minute"),
            (rph, format!("rl:{id}:h:{hour}"), secs_to_hour, "requests per hour"),
        ] {
            if limit == 0 {
                continue;
            }
            claims.push(Claim {
                key: window_key,
                delta: 1,
                limit: i64::from(limit),
                ttl: Duration::from_secs(reset + 5),
                kind: ClaimKind::Window,
            });
            what.push(Limit::Requests { label, reset });
        }
        let estimate = i64::try_from(estimated_tokens).unwrap_or(i64::MAX);
        if vk.tpm > 0 {
            claims.push(Claim {
                key: format!("rl:{id}:tm:{minute}"),
                delta: estimate,
                limit: i64::from(vk.tpm),
                ttl: Duration::from_secs(secs_to_minute + 5),
                kind: ClaimKind::TokenWindow,
            });
            what.push(Limit::Tokens);
        }
        let mut budgets: Vec<(String, f64, BudgetPeriod, &str)> = Vec::new();
        if vk.budget_usd > 0.0 {
            budgets.push((id.clone(), vk.budget_usd, vk.budget_period.parse().unwrap_or_default(), "key"));
        }
        if vk.tenant_budget_usd > 0.0 {
            budgets.push((
                format!("tenant:{}", vk.tenant_id),
                vk.tenant_budget_usd,
                vk.tenant_budget_period.parse().unwrap_or_default(),
                "tenant",
            ));
        }
        for (row, budget_usd, period, whose) in budgets {
            let (period_start, period_end) = period.bounds(now);
            let settled = settled_key(&row, period_start);
            self.ensure_settled(&row, period_start, &settled).await;
            claims.push(Claim {
                key: reserved_key(&row, period_start),
                delta: estimated_cost,
                limit: usd_to_nanos(budget_usd),
                ttl: RESERVATION_TTL,
                kind: ClaimKind::Budget { settled_key: settled },
            });
            what.push(Limit::Budget { whose, budget_usd, period, period_end });
            admission.held.push(Held { row, tenant_id: vk.tenant_id.clone(), period_start, estimate: estimated_cost });
        }
        if claims.is_empty() {
            return Ok(admission);
        }
        let claims_ref = &claims;
        let outcome = self.run(|s| async move { s.claim(claims_ref).await }).await;
        if let Some(index) = outcome.rejected {
            admission.held.clear();
            let found = outcome.values.get(index).copied().unwrap_or(0);
            let limit = claims.get(index).map_or(0, |c| c.limit);
            return Err(match what.get(index) {
                Some(Limit::Parallel) => limited(
                    format!("too many requests in flight for this key (limit {limit})"),
                    "rate_limit_exceeded",
                    1,
                    Vec::new(),
                ),
                Some(Limit::Requests { label, reset }) => limited(
                    format!("rate limit of {limit} {label} reached"),
                    "rate_limit_exceeded",
                    *reset,
                    request_headers(limit, limit, *reset),
                ),
                Some(Limit::Tokens) => limited(
                    format!("token rate limit of {limit} tokens per minute reached"),
                    "rate_limit_exceeded",
                    secs_to_minute,
                    token_headers(limit, found.saturating_add(estimate), secs_to_minute),
                ),
                Some(Limit::Budget { whose, budget_usd, period, period_end }) => {
                    let retry =
                        period_end.map_or(86_400, |end| u64::try_from((end - now) / 1000).unwrap_or(86_400).max(1));
                    #[expect(clippy::cast_precision_loss, reason = "display only")]
                    let spent = outcome.settled.get(index).copied().unwrap_or(0) as f64 / crate::pricing::NANOS_PER_USD;
                    limited(
                        format!(
                            "{whose} budget of ${budget_usd:.2} per {} period exhausted (spent ${spent:.4})",
                            period.as_str()
                        ),
                        "budget_exceeded",
                        retry,
                        Vec::new(),
                    )
                }
                None => limited("rate limit reached".to_owned(), "rate_limit_exceeded", 1, Vec::new()),
            });
        }
        // Admitted: every claim is held until `settle` (or the drop guard) gives it back.
        admission.settled = false;
        for ((claim, limit), value) in claims.into_iter().zip(&what).zip(&outcome.values) {
            match limit {
                Limit::Parallel => admission.parallel_key = Some(claim.key),
                Limit::Requests { reset, .. } => {
                    // The first request window's figures go in the answer (the minute's when set).
                    if admission.headers.is_empty() {
                        admission.headers = request_headers(claim.limit, *value, *reset);
                    }
                }
                Limit::Tokens => {
                    admission.headers.extend(token_headers(claim.limit, *value, secs_to_minute));
                    admission.tpm = Some((claim.key, estimate));
                }
                Limit::Budget { .. } => {}
            }
        }
        Ok(admission)
    }
}

/// Which limit a claim stands for.
#[derive(Debug)]
enum Limit {
    Parallel,
    Requests { label: &'static str, reset: u64 },
    Tokens,
    Budget { whose: &'static str, budget_usd: f64, period: BudgetPeriod, period_end: Option<i64> },
}

fn request_headers(limit: i64, used: i64, reset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit-requests", limit.to_string()),
        ("x-ratelimit-remaining-requests", (limit - used).max(0).to_string()),
        ("x-ratelimit-reset-requests", format!("{reset}s")),
    ]
}

fn token_headers(limit: i64, used: i64, reset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit-tokens", limit.to_string()),
        ("x-ratelimit-remaining-tokens", (limit - used).max(0).to_string()),
        ("x-ratelimit-reset-tokens", format!("{reset}s")),
    ]
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
    /// Whether anything was claimed that settling has to give back or charge.
    pub fn holds_claims(&self) -> bool {
        !self.held.is_empty() || self.parallel_key.is_some() || self.tpm.is_some()
    }

    /// Replaces the reservations with the actual cost and usage, releases the in-flight slot, and
    /// queues the spend for the database. `None` releases without charging (the request failed).
    pub async fn settle(mut self, actual: Option<(Usage, i64)>) {
        self.settled = true;
        let limiter = self.limiter.clone();
        let (usage, cost) = actual.unwrap_or_default();
        let mut changes = Vec::with_capacity(2 * self.held.len() + 2);
        for held in std::mem::take(&mut self.held) {
            changes.push(Adjustment {
                key: settled_key(&held.row, held.period_start),
                delta: cost,
                ttl: SETTLED_TTL,
                refresh: true,
            });
            changes.push(Adjustment {
                key: reserved_key(&held.row, held.period_start),
                delta: -held.estimate,
                ttl: RESERVATION_TTL,
                refresh: false,
            });
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
            changes.push(Adjustment { key: window_key, delta, ttl: Duration::from_secs(65), refresh: false });
        }
        if let Some(parallel_key) = self.parallel_key.take() {
            changes.push(Adjustment { key: parallel_key, delta: -1, ttl: RESERVATION_TTL, refresh: false });
        }
        if !changes.is_empty() {
            let changes = &changes;
            limiter.run(|s| async move { s.adjust(changes).await }).await;
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // Rejected or abandoned before settling: give everything back.
        if !self.settled && self.holds_claims() {
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
    merge(pending, (delta.row, delta.period_start), (delta.tenant_id, delta.nanos, delta.usage, 1));
}

fn merge(pending: &mut Pending, key: (String, i64), (tenant_id, nanos, usage, requests): (String, i64, Usage, i64)) {
    let entry = pending.entry(key).or_insert((tenant_id, 0, Usage::default(), 0));
    entry.1 += nanos;
    entry.2.prompt_tokens += usage.prompt_tokens;
    entry.2.completion_tokens += usage.completion_tokens;
    entry.3 += requests;
}

/// Writes spend deltas to the database in batches (every 250 ms, or at once on a flush), summing
/// per row, one transaction per batch. A failed batch is kept and retried with the next one.
async fn write_spend(database: Database, mut rx: mpsc::UnboundedReceiver<SpendMsg>) {
    let mut pending: Pending = HashMap::new();
    let mut failing = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut flushed = Vec::new();
        let mut closed = false;
        tokio::select! {
            message = rx.recv() => match message {
                // Deltas are only summed here; the ticker writes them.
                Some(SpendMsg::Delta(delta)) => {
                    add(&mut pending, delta);
                    continue;
                }
                Some(SpendMsg::Flush(done)) => {
                    flushed.push(done);
                    while let Ok(message) = rx.try_recv() {
                        match message {
                            SpendMsg::Delta(delta) => add(&mut pending, delta),
                            SpendMsg::Flush(done) => flushed.push(done),
                        }
                    }
                }
                None => closed = true,
            },
            _ = ticker.tick() => {}
        }
        if !pending.is_empty() {
            let batch = std::mem::take(&mut pending);
            match write_batch(&database, batch).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("spend recorded again after database errors");
                }
                Ok(()) => {}
                Err((error, failed)) => {
                    if !failing {
                        tracing::warn!(%error, "cannot record spend yet; retrying every 250 ms");
                    }
                    failing = true;
                    for (key, value) in failed {
                        merge(&mut pending, key, value);
                    }
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

async fn write_batch(database: &Database, batch: Pending) -> Result<(), (sqlx::Error, Pending)> {
    let mut tx = match database.pool().begin().await {
        Ok(tx) => tx,
        Err(error) => return Err((error, batch)),
    };
    for ((row, period_start), (tenant_id, nanos, usage, requests)) in &batch {
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
        .bind(*period_start)
        .bind(*nanos)
        .bind(i64::try_from(usage.prompt_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(usage.completion_tokens).unwrap_or(i64::MAX))
        .bind(*requests)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        if let Err(error) = result {
            // Dropping the transaction rolls it back: the whole batch is retried.
            return Err((error, batch));
        }
    }
    tx.commit().await.map_err(|error| (error, batch))
}
