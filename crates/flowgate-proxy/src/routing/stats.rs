//! Live health of one deployment: requests in flight, latency, failures and cooldown, and the
//! requests and tokens of the current minute against its `rpm` / `tpm`.
//!
//! The minute windows are aligned to the clock (unix minutes), so replicas sharing Redis agree on
//! them: each process counts its own traffic here and, when the deployment has limits and Redis is
//! configured, also keeps the last figures Redis gave it for every replica (see
//! `limits::deployments`); the deployment is at its limit when either says so.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long Redis keeps a deployment's minute counters: the minute and a margin for clocks.
pub(crate) const SHARED_WINDOW_TTL: Duration = Duration::from_secs(120);

/// The current unix minute, and the microseconds left in it.
pub(crate) fn unix_minute() -> (u64, u64) {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    (micros / 60_000_000, 60_000_000 - micros % 60_000_000)
}

/// Window over which failures count towards `allowed_fails`.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Live health of one deployment.
#[derive(Debug, Default)]
pub(crate) struct DeploymentStats {
    in_flight: AtomicU32,
    /// Exponentially weighted moving average of latency to the response head, in microseconds.
    ewma_latency_us: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    recent_failures: Mutex<VecDeque<Instant>>,
    /// `Instant` offsets are not atomic; store the cooldown end as microseconds since `epoch`.
    cooldown_until_us: AtomicU64,
    epoch: OnceInstant,
    /// This process's requests and tokens of the current unix minute.
    window: Mutex<MinuteWindow>,
    /// Every replica's requests and tokens of the current unix minute, as Redis last reported
    /// them (only for a deployment with limits, and with Redis).
    shared: Mutex<MinuteWindow>,
}

/// Requests and tokens of one minute, for a deployment's `rpm` / `tpm`.
#[derive(Debug, Default, Clone, Copy)]
struct MinuteWindow {
    minute: u64,
    requests: u64,
    tokens: u64,
}

/// A lazily fixed reference instant.
#[derive(Debug)]
struct OnceInstant(Instant);

impl Default for OnceInstant {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl DeploymentStats {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Requests currently in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Smoothed latency to the response head; `None` before the first success.
    pub(crate) fn latency(&self) -> Option<Duration> {
        match self.ewma_latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Total requests and errors since start.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.requests.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
    }

    /// Remaining cooldown, if cooling down.
    pub(crate) fn cooldown_remaining(&self) -> Option<Duration> {
        let until = self.cooldown_until_us.load(Ordering::Relaxed);
        let now = self.now_us();
        (until > now).then(|| Duration::from_micros(until - now))
    }

    /// Marks the start of a request; the guard ends it.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.with_window(|window| window.requests += 1);
        InFlight { stats: self.clone() }
    }

    /// The minute window, rolled over to the current minute, under its lock.
    fn with_window<T>(&self, f: impl FnOnce(&mut MinuteWindow) -> T) -> T {
        let (minute, _) = unix_minute();
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window.minute != minute {
            *window = MinuteWindow { minute, requests: 0, tokens: 0 };
        }
        f(&mut window)
    }

    /// What this process and (as last reported) every replica used this minute: requests, tokens.
    fn used(&self) -> (u64, u64) {
        let own = self.with_window(|window| *window);
        let shared = *self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.minute == own.minute {
            (own.requests.max(shared.requests), own.tokens.max(shared.tokens))
        } else {
            (own.requests, own.tokens)
        }
    }

    /// Takes what Redis reported for every replica in unix minute `minute` (requests, tokens).
    pub(crate) fn observe_shared(&self, minute: u64, requests: u64, tokens: u64) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.minute != minute {
            *shared = MinuteWindow { minute, requests: 0, tokens: 0 };
        }
        shared.requests = shared.requests.max(requests);
        shared.tokens = shared.tokens.max(tokens);
    }

    /// Counts tokens an answer used against the deployment's `tpm`.
    pub(crate) fn record_tokens(&self, tokens: u64) {
        self.with_window(|window| window.tokens = window.tokens.saturating_add(tokens));
    }

    /// Tokens used this minute (every replica's, as far as this process knows).
    pub(crate) fn tokens_this_minute(&self) -> u64 {
        self.used().1
    }

    /// How long until the deployment is below its `rpm` and `tpm` again; `None` when it is below
    /// them now.
    pub(crate) fn limited_for(&self, rpm: Option<u32>, tpm: Option<u32>) -> Option<Duration> {
        if rpm.is_none() && tpm.is_none() {
            return None;
        }
        let (requests, tokens) = self.used();
        let at_limit =
            rpm.is_some_and(|rpm| requests >= u64::from(rpm)) || tpm.is_some_and(|tpm| tokens >= u64::from(tpm));
        at_limit.then(|| Duration::from_micros(unix_minute().1))
    }

    /// Records a success and its latency.
    pub(crate) fn record_success(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.ewma_latency_us.load(Ordering::Relaxed);
        let new = if old == 0 { sample } else { (old * 4 + sample) / 5 };
        self.ewma_latency_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Records a failure; cools the deployment down after `allowed_fails` within a minute.
    /// Returns true when this failure started a cooldown.
    pub(crate) fn record_failure(&self, allowed_fails: u32, cooldown: Duration) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut recent = self.recent_failures.lock().unwrap_or_else(PoisonError::into_inner);
        while recent.front().is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW) {
            recent.pop_front();
        }
        recent.push_back(now);
        if recent.len() >= allowed_fails.max(1) as usize && !cooldown.is_zero() {
            recent.clear();
            let until = self.now_us().saturating_add(u64::try_from(cooldown.as_micros()).unwrap_or(u64::MAX));
            self.cooldown_until_us.store(until, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Decrements the in-flight count when dropped (also on client disconnect).
#[derive(Debug)]
pub(crate) struct InFlight {
    stats: Arc<DeploymentStats>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
