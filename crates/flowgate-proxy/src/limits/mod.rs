//! Rate limits and budgets, shared by every proxy replica through Redis.
//!
//! Per key: requests per minute (`rpm`), per hour (`requests_per_hour`, default
//! `RATE_LIMIT_REQUESTS_PER_HOUR`), tokens per minute (`tpm`), requests in flight
//! (`max_parallel_requests`), and a USD budget per period. Windows are fixed and aligned to the
//! clock (`rl:{key}:m:{minute}`), so replicas agree without coordination.
//!
//! Budgets hold under concurrency: a request is admitted while anything is left of the budget
//! (settled + reserved < budget) and *reserves* its estimated cost, or what is left when that is
//! less, atomically (one Lua script in Redis, one lock in process); after the answer the
//! reservation is replaced by the actual cost. The budget can be spent to the last nano-dollar,
//! and a burst overspends by at most what admitted requests cost beyond their reservations (once
//! nothing is left, nothing more is admitted). Settled spend is also written to the database in
//! batches, and read back when a period is first seen.
//!
//! When Redis is unreachable, requests keep flowing on in-process counters: a warning is logged,
//! `flowgate_shared_state_fallbacks_total` rises, and Redis is tried again after two seconds.
//! Limits do not drift across such a blip:
//! - every in-flight slot and budget reservation expires on its own (a deadline per reservation in
//!   shared state), so one that is never given back (a crashed replica, a lost settlement) stops
//!   counting after the reservation TTL, however busy the key;
//! - a settlement that cannot reach Redis is kept and replayed when Redis answers again (a
//!   reservation that expired meanwhile is not given back twice), and so is the spend settled on
//!   in-process counters during the outage;
//! - after such an outage, the settled spend of every budget touched is reconciled with the
//!   database, the source of truth: Redis keeps the larger of the two.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flowgate_common::budget::BudgetPeriod;
use flowgate_contracts::budgets::{SETTLED_TTL, reserved_key, settled_key, settled_row, tenant_row};
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Adjustment, Claim, ClaimKind, ClaimOutcome, Database, SharedError, SharedState};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

use crate::auth::KeyInfo;
use crate::error::ProxyError;
use crate::rate_headers::RateHeaders;
use crate::wire::Usage;

/// How long Redis is left alone after a failure before it is tried again.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(2);
/// The shortest life of a reservation (an in-flight slot, a budget reservation) that is never
/// given back; the proxy makes it at least its stream timeout plus a minute.
pub(crate) const RESERVATION_TTL: Duration = Duration::from_secs(600);
/// How often settlements kept during a Redis outage are tried again.
const REPLAY_EVERY: Duration = Duration::from_secs(1);

fn now_ms() -> i64 {
    flowgate_db::now_millis()
}

/// The process's limiter. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Limiter(Arc<Inner>);

struct Inner {
    shared: SharedState,
    local: SharedState,
    redis_down_until_ms: AtomicU64,
    default_requests_per_hour: u32,
    database: Database,
    /// Settled spend not yet written to the database, summed per (row, period). Requests add to
    /// it under a short lock; the writer takes it whole every 250 ms, so no request wakes it.
    pending_spend: Arc<Mutex<Pending>>,
    /// Asks the writer to write now; answered once written.
    flush_tx: mpsc::UnboundedSender<oneshot::Sender<()>>,
    /// Settlements on their way to Redis (or kept for it during an outage), summed per counter.
    settling: Mutex<Settling>,
    /// How long a reservation lives when nothing gives it back.
    reservation_ttl: Duration,
    /// Runs the settlement sender.
    tasks: flowgate_common::tasks::Tasks,
    fallbacks: Counter,
}

/// Clears `Settling::sending` when the sender unwinds.
struct ResetOnPanic<'a>(&'a Mutex<Settling>);

impl Drop for ResetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).sending = false;
        }
    }
}

/// Counter changes waiting to be sent to Redis, and whether a task is sending them. One task sends
/// at a time, everything that queued up while its previous batch was on the wire: under load the
/// settlements of many requests go out as one pipeline, and a lone request's at once.
#[derive(Default)]
struct Settling {
    /// Per counter (and reservation, for one given back): summed delta, longest expiry, whether
    /// any change renews the expiry.
    changes: HashMap<(String, Option<u64>), (i64, Duration, bool)>,
    sending: bool,
    /// Settled-spend counters changed while Redis was unreachable: reconciled with the database
    /// once the kept settlements have reached Redis.
    reconcile: HashSet<String>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("shared", &self.0.shared).finish_non_exhaustive()
    }
}

/// A budget reservation held by an admitted request, with the counters it was claimed on.
#[derive(Debug, Clone)]
struct Held {
    row: String,
    period_start: i64,
    estimate: i64,
    reserved_key: String,
    settled_key: String,
}

/// An admitted request's claims on the limits; settle it with the actual usage when done.
#[derive(Debug)]
pub(crate) struct Admission {
    limiter: Limiter,
    /// Its reservations' id (in-flight slot, budget reservations), to give them back.
    reservation: u64,
    /// Claimed on the in-process counters (Redis was unreachable): settled there too.
    local: bool,
    held: Vec<Held>,
    tenant_id: String,
    parallel_key: Option<String>,
    tpm: Option<(String, i64)>,
    /// Figures for the `x-ratelimit-*` headers of the response.
    pub headers: RateHeaders,
}

fn usd_to_nanos(usd: f64) -> i64 {
    #[expect(clippy::cast_possible_truncation, reason = "budgets are far below i64::MAX nano-dollars")]
    let nanos = (usd * crate::routing::pricing::NANOS_PER_USD).round() as i64;
    nanos
}

impl Limiter {
    /// A limiter over `shared` (Redis or in process), persisting spend to `database`.
    pub(crate) fn new(
        shared: SharedState,
        database: Database,
        default_requests_per_hour: u32,
        metrics: &flowgate_common::metrics::Metrics,
        tasks: &flowgate_common::tasks::Tasks,
        reservation_ttl: Duration,
    ) -> Self {
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let fallbacks = Counter::default();
        metrics.register(
            "shared_state_fallbacks",
            "Operations served by in-process state because Redis was unreachable",
            fallbacks.clone(),
        );
        let local = SharedState::local(shared.prefix());
        let pending_spend = Arc::new(Mutex::new(Pending::new()));
        let inner = Arc::new(Inner {
            shared,
            local,
            redis_down_until_ms: AtomicU64::new(0),
            default_requests_per_hour,
            database: database.clone(),
            pending_spend: pending_spend.clone(),
            flush_tx,
            settling: Mutex::default(),
            reservation_ttl,
            tasks: tasks.clone(),
            fallbacks,
        });
        tasks.spawn("spend-writer", write_spend(database, pending_spend, flush_rx));
        if inner.shared.is_shared() {
            tasks.spawn("settlement-replay", replay(Arc::downgrade(&inner)));
        }
        Self(inner)
    }

    /// Whether operations go to the in-process state now: there is no Redis, or it is resting
    /// after a failure (counted as a fallback).
    fn use_local(&self) -> bool {
        let inner = &self.0;
        if !inner.shared.is_shared() {
            return true;
        }
        let down = inner.redis_down_until_ms.load(Ordering::Relaxed) > u64::try_from(now_ms()).unwrap_or(0);
        if down {
            inner.fallbacks.inc();
        }
        down
    }

    /// Whether Redis is resting after a failure.
    fn resting(&self) -> bool {
        self.0.redis_down_until_ms.load(Ordering::Relaxed) > u64::try_from(now_ms()).unwrap_or(0)
    }

    /// Redis failed: leave it alone for a while (in-process counters meanwhile).
    fn mark_down(&self, error: &SharedError) {
        let inner = &self.0;
        let retry = u64::try_from(REDIS_RETRY_AFTER.as_millis()).unwrap_or(0);
        let until = u64::try_from(now_ms()).unwrap_or(0) + retry;
        let previous = inner.redis_down_until_ms.swap(until, Ordering::Relaxed);
        if previous < until.saturating_sub(retry) {
            tracing::warn!(%error, "Redis unreachable: rate limits and budgets use in-process counters until it returns");
        }
        inner.fallbacks.inc();
    }

    /// Runs `op` on Redis, or on the in-process state while Redis is down.
    async fn run<T, F, Fut>(&self, op: F) -> T
    where
        F: Fn(SharedState) -> Fut,
        Fut: Future<Output = Result<T, SharedError>>,
        T: Default,
    {
        let inner = &self.0;
        if !self.use_local() {
            match op(inner.shared.clone()).await {
                Ok(value) => return value,
                Err(error) => self.mark_down(&error),
            }
        }
        match op(inner.local.clone()).await {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(%error, "in-process limit state failed");
                T::default()
            }
        }
    }

    /// Loads a period's settled spend from the database into shared state (where the claim found
    /// none: the period's first request since it expired there, or since a restart without Redis).
    async fn load_settled(&self, row: &str, period_start: i64, settled: &str, local: bool) {
        let spent = recorded_spend(&self.0.database, row, period_start).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read recorded spend; counting this period from zero");
            0
        });
        if local {
            let _ = self.0.local.set_nx(settled, spent, SETTLED_TTL).await;
        } else {
            self.run(|s| async move { s.set_nx(settled, spent, SETTLED_TTL).await }).await;
        }
    }

    /// Claims `claims` atomically, loading settled spend that shared state does not have yet;
    /// says whether the claim was made on the in-process counters (Redis unreachable). In process
    /// this is a plain function call; with Redis one round trip (more only when a period's settled
    /// spend has to be loaded first).
    async fn claim(&self, claims: &[Claim], what: &[Limit]) -> (ClaimOutcome, bool) {
        // Each budget is loaded at most once; then the claim either fits or is rejected.
        for _ in 0..=what.len() {
            let mut local = self.use_local();
            let outcome = if local {
                self.0.local.claim_in_process(claims).unwrap_or_default()
            } else {
                match self.0.shared.claim(claims).await {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        self.mark_down(&error);
                        local = true;
                        self.0.local.claim_in_process(claims).unwrap_or_default()
                    }
                }
            };
            let Some(index) = outcome.unloaded else { return (outcome, local) };
            match (what.get(index), claims.get(index).map(|c| &c.kind)) {
                (Some(Limit::Budget { row, period_start, .. }), Some(ClaimKind::Budget { settled_key })) => {
                    self.load_settled(row, *period_start, settled_key, local).await;
                }
                _ => break,
            }
        }
        // Shared state keeps losing what was just loaded (a Redis evicting or flapping): let the
        // request through rather than fail it, as when shared state is unreachable.
        tracing::warn!("budget state could not be loaded into shared state; request admitted without limits");
        (ClaimOutcome::default(), true)
    }

    /// Checks and claims every limit of `key` for one request with `estimated_tokens` prompt tokens
    /// and `estimated_cost` nano-dollars: one atomic claim (one Redis round trip), all or nothing.
    pub(crate) async fn admit(
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
        let ttl = self.0.reservation_ttl;
        let mut admission = Admission {
            limiter: self.clone(),
            reservation: 0,
            local: true,
            held: Vec::new(),
            tenant_id: String::new(),
            parallel_key: None,
            tpm: None,
            headers: RateHeaders::default(),
        };
        // What each claim is, for the answer; in the order of `claims`.
        let mut what: Vec<Limit> = Vec::new();
        let mut claims: Vec<Claim> = Vec::new();

        if vk.max_parallel_requests > 0 {
            claims.push(Claim {
                key: format!("rl:{id}:parallel"),
                delta: 1,
                limit: i64::from(vk.max_parallel_requests),
                ttl,
                kind: ClaimKind::InFlight,
            });
            what.push(Limit::Parallel);
        }
        let rph = if vk.requests_per_hour > 0 { vk.requests_per_hour } else { self.0.default_requests_per_hour };
        if vk.rpm > 0 {
            claims.push(window_claim(format!("rl:{id}:m:{minute}"), vk.rpm, secs_to_minute));
            what.push(Limit::Requests { label: "requests per minute", reset: secs_to_minute });
        }
        if rph > 0 {
            claims.push(window_claim(format!("rl:{id}:h:{hour}"), rph, secs_to_hour));
            what.push(Limit::Requests { label: "requests per hour", reset: secs_to_hour });
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
        let key_budget = (vk.budget_usd > 0.0).then(|| (id.clone(), vk.budget_usd, &vk.budget_period, "key"));
        let tenant_budget = (vk.tenant_budget_usd > 0.0)
            .then(|| (tenant_row(&vk.tenant_id), vk.tenant_budget_usd, &vk.tenant_budget_period, "tenant"));
        for (row, budget_usd, period, whose) in key_budget.into_iter().chain(tenant_budget) {
            let period: BudgetPeriod = period.parse().unwrap_or_default();
            let (period_start, period_end) = period.bounds(now);
            let settled = settled_key(&row, period_start);
            claims.push(Claim {
                key: reserved_key(&row, period_start),
                delta: estimated_cost,
                limit: usd_to_nanos(budget_usd),
                ttl,
                kind: ClaimKind::Budget { settled_key: settled },
            });
            what.push(Limit::Budget { whose, budget_usd, period, period_start, period_end, row });
        }
        if claims.is_empty() {
            return Ok(admission);
        }
        let (outcome, local) = self.claim(&claims, &what).await;
        admission.reservation = outcome.reservation;
        admission.local = local;
        if let Some(index) = outcome.rejected {
            let found = outcome.values.get(index).copied().unwrap_or(0);
            let limit = claims.get(index).map_or(0, |c| c.limit);
            return Err(match what.get(index) {
                Some(Limit::Parallel) => limited(
                    format!("too many requests in flight for this key (limit {limit})"),
                    "rate_limit_exceeded",
                    1,
                    RateHeaders::default(),
                ),
                Some(Limit::Requests { label, reset }) => limited(
                    format!("rate limit of {limit} {label} reached"),
                    "rate_limit_exceeded",
                    *reset,
                    RateHeaders { requests: RateHeaders::window(limit, limit, *reset), tokens: None },
                ),
                Some(Limit::Tokens) => limited(
                    format!("token rate limit of {limit} tokens per minute reached"),
                    "rate_limit_exceeded",
                    secs_to_minute,
                    RateHeaders {
                        requests: None,
                        tokens: RateHeaders::window(limit, found.saturating_add(estimate), secs_to_minute),
                    },
                ),
                Some(Limit::Budget { whose, budget_usd, period, period_end, .. }) => {
                    let retry =
                        period_end.map_or(86_400, |end| u64::try_from((end - now) / 1000).unwrap_or(86_400).max(1));
                    let spent = outcome.settled.get(index).copied().unwrap_or(0);
                    let reserved = outcome.values.get(index).copied().unwrap_or(0);
                    limited(
                        budget_message(whose, *budget_usd, *period, spent, reserved, *period_end),
                        "budget_exceeded",
                        retry,
                        RateHeaders::default(),
                    )
                }
                None => limited("rate limit reached".to_owned(), "rate_limit_exceeded", 1, RateHeaders::default()),
            });
        }
        // Admitted: every claim is held until `settle` (or the drop guard) gives it back. The
        // claims' keys move into the admission, which settles the same counters.
        for (index, ((claim, limit), value)) in claims.into_iter().zip(what).zip(&outcome.values).enumerate() {
            match limit {
                Limit::Parallel => admission.parallel_key = Some(claim.key),
                Limit::Requests { reset, .. } => {
                    // The first request window's figures go in the answer (the minute's when set).
                    if admission.headers.requests.is_none() {
                        admission.headers.requests = RateHeaders::window(claim.limit, *value, reset);
                    }
                }
                Limit::Tokens => {
                    admission.headers.tokens = RateHeaders::window(claim.limit, *value, secs_to_minute);
                    admission.tpm = Some((claim.key, estimate));
                }
                Limit::Budget { row, period_start, .. } => {
                    let ClaimKind::Budget { settled_key } = claim.kind else { continue };
                    // What was reserved: the estimate, or what was left of the budget when less.
                    let reserved = outcome.taken.get(index).copied().unwrap_or(estimated_cost);
                    admission.held.push(Held {
                        row,
                        period_start,
                        estimate: reserved,
                        reserved_key: claim.key,
                        settled_key,
                    });
                }
            }
        }
        if !admission.held.is_empty() {
            admission.tenant_id.clone_from(&vk.tenant_id);
        }
        Ok(admission)
    }

    /// Sends queued settlements to Redis and writes every pending spend delta to the database
    /// now (called at shutdown, after the drain).
    pub(crate) async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.send_settlements()).await;
        let (tx, rx) = oneshot::channel();
        if self.0.flush_tx.send(tx).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }
}

fn window_claim(key: String, limit: u32, reset_secs: u64) -> Claim {
    Claim { key, delta: 1, limit: i64::from(limit), ttl: Duration::from_secs(reset_secs + 5), kind: ClaimKind::Window }
}

/// Which limit a claim stands for.
#[derive(Debug)]
enum Limit {
    Parallel,
    Requests {
        label: &'static str,
        reset: u64,
    },
    Tokens,
    Budget {
        whose: &'static str,
        budget_usd: f64,
        period: BudgetPeriod,
        period_start: i64,
        period_end: Option<i64>,
        /// The spend row: the key id, or `tenant:{id}`.
        row: String,
    },
}

/// An amount of USD for a message: cents at least, and up to six decimals where they matter
/// (`$1.00`, `$0.0001`, `$0.000123`).
fn dollars(usd: f64) -> String {
    let text = format!("{usd:.6}");
    let trimmed = text.trim_end_matches('0');
    let decimals = trimmed.split_once('.').map_or(0, |(_, d)| d.len());
    if decimals >= 2 { format!("${trimmed}") } else { format!("${usd:.2}") }
}

/// The 429 message of an exhausted budget: whose budget, its amount and period, what is spent (and
/// reserved by requests in flight), and when the period ends.
fn budget_message(
    whose: &str,
    budget_usd: f64,
    period: BudgetPeriod,
    spent_nanos: i64,
    reserved_nanos: i64,
    period_end: Option<i64>,
) -> String {
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let usd = |nanos: i64| dollars(nanos as f64 / crate::routing::pricing::NANOS_PER_USD);
    let in_flight = if reserved_nanos > 0 {
        format!(" and {} reserved by requests in flight", usd(reserved_nanos))
    } else {
        String::new()
    };
    let ends = match period_end {
        Some(end) => format!("the period ends at {}", flowgate_common::budget::utc_timestamp(end)),
        None => "the period never ends".to_owned(),
    };
    format!(
        "{whose} budget of {} per {} period exhausted: spent {}{in_flight}; {ends}",
        dollars(budget_usd),
        period.as_str(),
        usd(spent_nanos),
    )
}

fn limited(message: String, code: &'static str, retry_after_secs: u64, headers: RateHeaders) -> ProxyError {
    ProxyError::RateLimited { message, code, retry_after_secs, headers }
}

impl Admission {
    /// Whether anything was claimed that settling has to give back or charge.
    pub(crate) fn holds_claims(&self) -> bool {
        !self.held.is_empty() || self.parallel_key.is_some() || self.tpm.is_some()
    }

    /// The counter changes that settle this admission, with the spend they record.
    fn changes(&mut self, actual: Option<(Usage, i64)>) -> Vec<Adjustment> {
        let (usage, cost) = actual.unwrap_or_default();
        let mut changes = Vec::with_capacity(2 * self.held.len() + 2);
        if !self.held.is_empty() {
            let record = cost > 0 || actual.is_some();
            let mut pending = self.limiter.0.pending_spend.lock().unwrap_or_else(PoisonError::into_inner);
            for held in std::mem::take(&mut self.held) {
                changes.push(Adjustment {
                    key: held.settled_key,
                    delta: cost,
                    ttl: SETTLED_TTL,
                    refresh: true,
                    reservation: None,
                });
                changes.push(Adjustment {
                    key: held.reserved_key,
                    delta: -held.estimate,
                    ttl: RESERVATION_TTL,
                    refresh: false,
                    reservation: Some(self.reservation),
                });
                if record {
                    merge(&mut pending, (held.row, held.period_start), (&self.tenant_id, cost, usage, 1));
                }
            }
        }
        if let Some((window_key, estimate)) = self.tpm.take() {
            let actual_tokens = i64::try_from(usage.prompt_tokens + usage.completion_tokens).unwrap_or(0);
            let delta = if actual.is_some() { actual_tokens - estimate } else { -estimate };
            changes.push(Adjustment {
                key: window_key,
                delta,
                ttl: Duration::from_secs(65),
                refresh: false,
                reservation: None,
            });
        }
        if let Some(parallel_key) = self.parallel_key.take() {
            changes.push(Adjustment {
                key: parallel_key,
                delta: -1,
                ttl: RESERVATION_TTL,
                refresh: false,
                reservation: Some(self.reservation),
            });
        }
        changes
    }

    /// Replaces the reservations with the actual cost and usage, releases the in-flight slot, and
    /// records the spend for the database. `None` releases without charging (the request failed).
    /// At once when the counters are in process, on a task when they are in Redis.
    pub(crate) fn settle(mut self, actual: Option<(Usage, i64)>) {
        let changes = self.changes(actual);
        self.limiter.apply(changes, self.local);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // Abandoned before settling (settling takes every claim): give everything back.
        if self.holds_claims() {
            let changes = self.changes(None);
            self.limiter.apply(changes, self.local);
        }
    }
}

impl Limiter {
    /// Applies settlement `changes` of an admission claimed `local`ly (in process) or in Redis.
    /// Local ones are applied at once, and the spend they settle is also kept for Redis (so
    /// Redis learns what was spent during its outage). Redis ones are queued for the sending
    /// task, and kept while Redis is unreachable: they are never applied to the in-process
    /// counters, which never held them.
    fn apply(&self, changes: Vec<Adjustment>, local: bool) {
        if changes.is_empty() {
            return;
        }
        let inner = &self.0;
        if local {
            inner.local.adjust_in_process(&changes);
            if !inner.shared.is_shared() {
                return;
            }
        }
        let mut settling = inner.settling.lock().unwrap_or_else(PoisonError::into_inner);
        for change in changes {
            // Settled spend renews its expiry (and gives back no reservation).
            let settled = change.refresh && change.reservation.is_none();
            if local && !settled {
                continue;
            }
            if local {
                settling.reconcile.insert(change.key.clone());
            }
            let entry = settling.changes.entry((change.key, change.reservation)).or_insert((0, Duration::ZERO, false));
            entry.0 += change.delta;
            entry.1 = entry.1.max(change.ttl);
            entry.2 |= change.refresh;
        }
        if !settling.sending && !settling.changes.is_empty() && !self.resting() {
            self.start_sending(&mut settling);
        }
    }

    /// Starts the sending task (the caller holds the lock and saw no task running).
    fn start_sending(&self, settling: &mut Settling) {
        if tokio::runtime::Handle::try_current().is_ok() {
            settling.sending = true;
            let limiter = self.clone();
            self.0.tasks.job("settlement-sender", async move { limiter.send_settlements().await });
        }
    }

    /// Sends queued settlements until none are left: each round, all that queued up meanwhile in
    /// one call. When Redis fails, what was not sent is kept for the replay (and Redis rests).
    async fn send_settlements(&self) {
        // A panic must not leave the queue marked as being sent: the next settlement starts a sender.
        let _reset = ResetOnPanic(&self.0.settling);
        loop {
            let changes: Vec<Adjustment> = {
                let mut settling = self.0.settling.lock().unwrap_or_else(PoisonError::into_inner);
                if settling.changes.is_empty() {
                    settling.sending = false;
                    return;
                }
                settling
                    .changes
                    .drain()
                    // A change of nothing that does not renew an expiry has no effect.
                    .filter(|(_, (delta, _, refresh))| *delta != 0 || *refresh)
                    .map(|((key, reservation), (delta, ttl, refresh))| Adjustment {
                        key,
                        delta,
                        ttl,
                        refresh,
                        reservation,
                    })
                    .collect()
            };
            if changes.is_empty() {
                continue;
            }
            if let Err(error) = self.0.shared.adjust(&changes).await {
                self.mark_down(&error);
                let mut settling = self.0.settling.lock().unwrap_or_else(PoisonError::into_inner);
                for change in changes {
                    if change.refresh && change.reservation.is_none() {
                        settling.reconcile.insert(change.key.clone());
                    }
                    let entry =
                        settling.changes.entry((change.key, change.reservation)).or_insert((0, Duration::ZERO, false));
                    entry.0 += change.delta;
                    entry.1 = entry.1.max(change.ttl);
                    entry.2 |= change.refresh;
                }
                settling.sending = false;
                return;
            }
        }
    }

    /// After an outage, once the kept settlements have reached Redis: writes the pending spend to
    /// the database, then raises each touched settled-spend counter to the database's figure when
    /// Redis has less (it missed spend, or lost its data). Redis keeps a larger figure: it may
    /// hold other replicas' spend that is not written yet.
    async fn reconcile(&self) {
        let keys: Vec<String> = {
            let mut settling = self.0.settling.lock().unwrap_or_else(PoisonError::into_inner);
            if !settling.changes.is_empty() || settling.sending || settling.reconcile.is_empty() {
                return;
            }
            settling.reconcile.drain().collect()
        };
        let (tx, rx) = oneshot::channel();
        if self.0.flush_tx.send(tx).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        let mut failed = Vec::new();
        for key in keys {
            let Some((row, period_start)) = settled_row(&key) else { continue };
            let result = match recorded_spend(&self.0.database, row, period_start).await {
                Ok(spent) => self.0.shared.raise(&key, spent, SETTLED_TTL).await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(%error, "cannot reconcile spend with the database yet; trying again");
                failed.push(key);
            }
        }
        if failed.is_empty() {
            tracing::info!("Redis is back: kept settlements replayed and spend reconciled with the database");
        } else {
            self.0.settling.lock().unwrap_or_else(PoisonError::into_inner).reconcile.extend(failed);
        }
    }
}

/// Replays settlements kept during a Redis outage once Redis may be tried again, then reconciles
/// the spend they touched; ends with the limiter.
async fn replay(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(REPLAY_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let limiter = Limiter(inner);
        if limiter.resting() {
            continue;
        }
        let (kept, reconcile) = {
            let mut settling = limiter.0.settling.lock().unwrap_or_else(PoisonError::into_inner);
            let kept = !settling.sending && !settling.changes.is_empty();
            settling.sending |= kept;
            (kept, !settling.reconcile.is_empty())
        };
        if kept {
            limiter.send_settlements().await;
        }
        if reconcile {
            limiter.reconcile().await;
        }
    }
}

/// Spend recorded in the database for a row's period (0 when none).
async fn recorded_spend(database: &Database, row: &str, period_start: i64) -> Result<i64, sqlx::Error> {
    let found = sqlx::query(&database.sql("SELECT spent_nanos FROM spend WHERE key_id = $1 AND period_start = $2"))
        .bind(row.to_owned())
        .bind(period_start)
        .fetch_optional(database.pool())
        .await?;
    Ok(found.and_then(|r| r.try_get::<i64, _>(0).ok()).unwrap_or(0))
}

mod deployments;
mod spend;

use self::spend::{Pending, merge, write_spend};

#[cfg(test)]
mod tests;
