//! Write errors told apart, and the dead-letter file.
//!
//! A failed write is either the database being unavailable (connection lost, pool timeout,
//! shutting down, disk full, locked): the records are fine and are kept for a retry; or the
//! database refusing what it was given (a value it cannot store, a constraint, a limit): retrying
//! fails the same way forever, so the writer isolates the records it refuses and moves each one
//! here, with its error, instead of spooling them and everything after them.

use std::io::Write;
use std::path::{Path, PathBuf};

use flowgate_contracts::audit::AuditRecord;
use flowgate_db::{Backend, sqlx};
use serde::Serialize;

/// Name of the dead-letter file in the spool directory.
pub(crate) const DEAD_LETTER_FILE: &str = "dead-letter.ndjson";

/// Why a write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The database refused the records written: the same records fail the same way again.
    Rejected,
    /// The database could not take the write now; the same records succeed later.
    Unavailable,
}

/// Tells a refused write from an unavailable database.
pub(crate) fn classify(backend: Backend, error: &sqlx::Error) -> Failure {
    match error {
        sqlx::Error::Database(error) => {
            if backend.dialect().rejects_data(error.as_ref()) {
                Failure::Rejected
            } else {
                Failure::Unavailable
            }
        }
        // A value the driver cannot encode: the record, not the database.
        sqlx::Error::Encode(_) => Failure::Rejected,
        _ => Failure::Unavailable,
    }
}

/// One line of the dead-letter file.
#[derive(Debug, Serialize)]
struct Line<'a> {
    /// When it was rejected, unix milliseconds.
    rejected_at: i64,
    /// The database's error code (SQLSTATE on PostgreSQL, extended result code on SQLite).
    code: Option<String>,
    /// The database's error message.
    error: String,
    /// The record, as the spool keeps it.
    record: &'a AuditRecord,
}

/// The append-only file of records the database refused.
#[derive(Debug)]
pub(crate) struct DeadLetter {
    path: PathBuf,
}

impl DeadLetter {
    /// The dead-letter file of the spool directory `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Self { path: dir.join(DEAD_LETTER_FILE) }
    }

    /// Appends each record with the error it was refused with, in one write (fsynced).
    pub(crate) fn append(&self, refused: &[(&AuditRecord, sqlx::Error)]) -> std::io::Result<()> {
        let rejected_at = flowgate_db::now_millis();
        let mut buffer = Vec::new();
        for (record, error) in refused {
            let (code, message) = match error {
                sqlx::Error::Database(error) => (error.code().map(|c| c.into_owned()), error.message().to_owned()),
                other => (None, other.to_string()),
            };
            let line = Line { rejected_at, code, error: message, record };
            serde_json::to_writer(&mut buffer, &line).map_err(std::io::Error::other)?;
            buffer.push(b'\n');
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        file.write_all(&buffer)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_are_rejections_and_the_rest_outages() {
        assert_eq!(classify(Backend::Postgres, &sqlx::Error::PoolTimedOut), Failure::Unavailable);
        assert_eq!(classify(Backend::Sqlite, &sqlx::Error::PoolClosed), Failure::Unavailable);
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(Backend::Postgres, &io), Failure::Unavailable);
    }
}
