//! Flowgate storage: the SQL store (PostgreSQL, or SQLite as the embedded default) with its
//! refinery migrations, and the state shared by proxy replicas (Redis, or in-process when no Redis
//! is configured).
//!
//! # Layout
//! - [`Database`]: a connection pool over either backend, through sqlx's `Any` driver so one set of
//!   portable queries serves both.
//! - [`migrate`]: refinery migrations, one stream per backend, applied through a thin adapter over
//!   a sqlx connection (no second database driver).
//! - [`SharedState`]: counters and small values with expiry, in Redis or in process.

mod database;
pub mod migrate;
mod shared;

pub use database::{Backend, Database, Error};
pub use shared::{Adjustment, Claim, ClaimKind, ClaimOutcome, Notification, SharedError, SharedState};
pub use sqlx;

/// Columns of `audit_records`, in table order: what the proxy writes and the api-server reads.
/// `prompt` and `response` are only filled for tenants that store (redacted) prompts.
pub const AUDIT_COLUMNS: [&str; 25] = [
    "request_id",
    "ts",
    "tenant_id",
    "key_id",
    "client_ip",
    "route",
    "model_requested",
    "model_used",
    "deployment",
    "provider",
    "status",
    "error_code",
    "latency_ms",
    "upstream_latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanos",
    "cache_hit",
    "stream",
    "retries",
    "fallbacks",
    "guardrail_actions",
    "prompt",
    "response",
];

/// Unix time in milliseconds, the timestamp format of every table.
pub fn now_millis() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `/readyz` check: the database answers `SELECT 1`.
#[async_trait::async_trait]
impl flowgate_common::server::ReadinessCheck for Database {
    fn name(&self) -> &str {
        "database"
    }

    async fn check(&self) -> Result<(), String> {
        self.ping().await.map_err(|e| e.to_string())
    }
}

/// `/readyz` check: Redis answers `PING` (always ready in process).
#[async_trait::async_trait]
impl flowgate_common::server::ReadinessCheck for SharedState {
    fn name(&self) -> &str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        self.ping().await.map_err(|e| e.to_string())
    }

    /// Without Redis, limits and caches fall back to in-process state: degraded, not down.
    fn required(&self) -> bool {
        false
    }
}
