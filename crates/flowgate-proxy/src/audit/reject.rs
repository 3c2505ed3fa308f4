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
            let code = error.code();
            let rejected = match backend {
                Backend::Postgres => code.as_deref().is_some_and(postgres_rejects),
                Backend::Sqlite => code.as_deref().and_then(|code| code.parse().ok()).is_some_and(sqlite_rejects),
            };
            if rejected { Failure::Rejected } else { Failure::Unavailable }
        }
        // A value the driver cannot encode: the record, not the database.
        sqlx::Error::Encode(_) => Failure::Rejected,
        _ => Failure::Unavailable,
    }
}

/// PostgreSQL errors caused by the data written (SQLSTATE): class 22, data exception (`22021`
/// invalid byte sequence, `22001` value too long, `22P03` invalid binary representation, ...);
/// class 23, integrity constraint violation (check, not-null, foreign key, exclusion); `54000`,
/// program limit exceeded (an index row too large); `P0001`, raised by a trigger. Anything else
/// (connection exceptions `08`, insufficient resources `53`, operator intervention `57`, a
/// missing table or privilege `42`, serialization failures `40`) is the database's state.
fn postgres_rejects(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23") || code == "54000" || code == "P0001"
}

/// SQLite errors caused by the data written (primary result code of the extended code):
/// `SQLITE_TOOBIG` (18), `SQLITE_CONSTRAINT` (19, a trigger's `RAISE(ABORT)` included) and
/// `SQLITE_MISMATCH` (20). `SQLITE_BUSY`, `SQLITE_LOCKED`, `SQLITE_FULL`, `SQLITE_IOERR`,
/// `SQLITE_READONLY` and the rest are the database's state.
fn sqlite_rejects(code: i32) -> bool {
    matches!(code & 0xff, 18..=20)
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
        for code in ["22021", "22001", "22P03", "23514", "23502", "54000", "P0001"] {
            assert!(postgres_rejects(code), "{code}");
        }
        for code in ["08006", "08001", "53100", "53300", "57P01", "57P03", "42P01", "42501", "40001", "XX000"] {
            assert!(!postgres_rejects(code), "{code}");
        }
        // SQLITE_TOOBIG, SQLITE_CONSTRAINT_CHECK, SQLITE_CONSTRAINT_TRIGGER, SQLITE_MISMATCH.
        for code in [18, 275, 1811, 20] {
            assert!(sqlite_rejects(code), "{code}");
        }
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR_WRITE, SQLITE_FULL, SQLITE_ERROR.
        for code in [5, 6, 8, 778, 13, 1] {
            assert!(!sqlite_rejects(code), "{code}");
        }
        assert_eq!(classify(Backend::Postgres, &sqlx::Error::PoolTimedOut), Failure::Unavailable);
        assert_eq!(classify(Backend::Sqlite, &sqlx::Error::PoolClosed), Failure::Unavailable);
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(Backend::Postgres, &io), Failure::Unavailable);
    }
}
