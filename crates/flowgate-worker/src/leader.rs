//! Leader election among worker replicas, one leader per job.
//!
//! On PostgreSQL every job has a session-level advisory lock (`pg_try_advisory_lock`), taken on
//! one connection this worker keeps for itself (detached from the pool). The replica holding a
//! job's lock runs it; the others try again on every pass. A lock is held until the process ends
//! or its connection breaks: PostgreSQL then releases it, and another replica takes the job on its
//! next pass. Before each run the holder checks its connection still answers, so a replica whose
//! session was lost stops running jobs it no longer leads.
//!
//! With SQLite there is one process by construction (the database is a local file): it leads every
//! job.

use std::collections::HashSet;
use std::sync::Arc;

use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::sqlx::{AnyConnection, Connection};
use tokio::sync::Mutex;

/// Decides which jobs this worker runs.
#[derive(Debug, Clone)]
pub struct Leadership(Arc<Inner>);

#[derive(Debug)]
enum Inner {
    /// SQLite: this process leads every job.
    InProcess,
    /// PostgreSQL advisory locks on a connection of our own.
    Postgres { database: Database, session: Mutex<Session> },
}

#[derive(Debug, Default)]
struct Session {
    connection: Option<AnyConnection>,
    /// Jobs whose lock `connection` holds.
    held: HashSet<&'static str>,
}

/// The advisory lock key of `job`: FNV-1a over a fixed prefix and the name, stable across builds
/// and replicas.
pub fn lock_key(job: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"flowgate-worker:".iter().chain(job.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl Leadership {
    /// Session locks where the engine has them (PostgreSQL advisory locks, MySQL/MariaDB named
    /// locks); every job led in process on SQLite.
    pub fn new(database: &Database) -> Self {
        match database.dialect().try_session_lock() {
            Some(_) => Self(Arc::new(Inner::Postgres { database: database.clone(), session: Mutex::default() })),
            None => Self(Arc::new(Inner::InProcess)),
        }
    }

    /// Whether this worker leads `job` now: it holds the job's lock (its session still answering),
    /// or has just taken it. An error (database unreachable) means not leading.
    pub async fn lead(&self, job: &'static str) -> Result<bool, sqlx::Error> {
        let Inner::Postgres { database, session } = &*self.0 else { return Ok(true) };
        let mut session = session.lock().await;
        let result = Self::try_lead(database, &mut session, job).await;
        if result.is_err() {
            // The session is gone or broken: every lock it held is released by PostgreSQL.
            if let Some(connection) = session.connection.take() {
                drop(connection.close_hard());
            }
            if !session.held.is_empty() {
                tracing::warn!(jobs = ?session.held, "lost the database session holding job leadership");
            }
            session.held.clear();
        }
        result
    }

    async fn try_lead(database: &Database, session: &mut Session, job: &'static str) -> Result<bool, sqlx::Error> {
        let connection = match &mut session.connection {
            Some(connection) => connection,
            None => {
                let connection = database.pool().acquire().await?.detach();
                session.held.clear();
                session.connection.insert(connection)
            }
        };
        if session.held.contains(job) {
            sqlx::query("SELECT 1").execute(&mut *connection).await?;
            return Ok(true);
        }
        let Some(lock) = database.dialect().try_session_lock() else { return Ok(true) };
        let row = sqlx::query(&database.sql(lock)).bind(lock_key(job)).fetch_one(&mut *connection).await?;
        let taken = row.try_get::<i64, _>(0)? == 1;
        if taken {
            tracing::info!(job, "leading this job");
            session.held.insert(job);
        }
        Ok(taken)
    }

    /// Gives up every lock (the session is closed), so another replica takes over at once.
    pub async fn release(&self) {
        if let Inner::Postgres { session, .. } = &*self.0 {
            let mut session = session.lock().await;
            session.held.clear();
            if let Some(connection) = session.connection.take() {
                let _ = connection.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("rollups"), lock_key("rollups"));
        assert_ne!(lock_key("rollups"), lock_key("alerts"));
    }
}
