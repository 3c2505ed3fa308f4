//! Flowgate storage: the SQL store (PostgreSQL, MySQL/MariaDB, or SQLite as the embedded default) with its
//! refinery migrations, and the state shared by proxy replicas (Redis, or in-process when no Redis
//! is configured).
//!
//! # Layout
//! - [`Database`]: a connection pool over any of the three, through sqlx's `Any` driver so one set
//!   of portable queries serves them; the SQL that differs is in [`dialect`], one module per engine.
//! - [`migrate`]: refinery migrations, one stream per backend, applied through a thin adapter over
//!   a sqlx connection (no second database driver).
//! - [`audit`]: `audit_records` rows read back as the contracts' `AuditRecord`.
//! - [`SharedState`]: counters and small values with expiry, in Redis or in process.
//! - [`routing`]: deployments written through `/api/routing` and the routing revision.
//! - [`credentials`]: provider credentials sealed at rest (envelope encryption, KEK providers,
//!   rewrap).

pub mod audit;
pub mod credentials;
mod database;
pub mod dialect;
pub mod migrate;
pub mod routing;
mod shared;
pub mod text;

pub use database::{Backend, Database, Error};
pub use dialect::{Dialect, Set};
pub use shared::{Adjustment, Claim, ClaimKind, ClaimOutcome, Notification, SharedError, SharedState};
pub use sqlx;

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
