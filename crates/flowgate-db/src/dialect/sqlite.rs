//! SQLite (the embedded default): PostgreSQL's spelling, which it accepts.

use std::borrow::Cow;

use super::{Dialect, Set};

/// SQLite 3.35+.
#[derive(Debug)]
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    fn placeholders<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(sql)
    }

    fn on_conflict_ignore(&self, key: &[&str]) -> String {
        super::on_conflict_ignore(key)
    }

    fn upsert(&self, table: &str, key: &[&str], sets: &[Set<'_>]) -> String {
        super::on_conflict_update(table, key, sets)
    }

    fn bigint(&self) -> &'static str {
        "BIGINT"
    }

    fn int_div(&self, dividend: &str, divisor: i64) -> String {
        format!("({dividend} / {divisor})")
    }

    /// SQLITE_BUSY and SQLITE_LOCKED (another writer held the file past `busy_timeout`).
    fn retryable(&self, error: &sqlx::Error) -> bool {
        matches!(error, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("5" | "6" | "517" | "262")))
    }

    fn rejects_data(&self, error: &dyn sqlx::error::DatabaseError) -> bool {
        error.code().as_deref().and_then(|code| code.parse().ok()).is_some_and(rejects)
    }

    /// Anonymous `?`: SQLite binds a numbered or named parameter by scanning the statement's
    /// parameter names, which makes binding a large statement quadratic; `?` binds by position.
    fn placeholder(&self, _number: usize, out: &mut String) {
        out.push('?');
    }

    fn nan_for_null_doubles(&self) -> bool {
        true
    }

    fn try_session_lock(&self) -> Option<&'static str> {
        None
    }
}

/// SQLite errors caused by the data written (primary result code of the extended code):
/// `SQLITE_TOOBIG` (18), `SQLITE_CONSTRAINT` (19, a trigger's `RAISE(ABORT)` included) and
/// `SQLITE_MISMATCH` (20). `SQLITE_BUSY`, `SQLITE_LOCKED`, `SQLITE_FULL`, `SQLITE_IOERR`,
/// `SQLITE_READONLY` and the rest are the database's state.
fn rejects(code: i32) -> bool {
    matches!(code & 0xff, 18..=20)
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_errors_are_rejections_and_the_rest_outages() {
        // SQLITE_TOOBIG, SQLITE_CONSTRAINT_CHECK, SQLITE_CONSTRAINT_TRIGGER, SQLITE_MISMATCH.
        for code in [18, 275, 1811, 20] {
            assert!(super::rejects(code), "{code}");
        }
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR_WRITE, SQLITE_FULL, SQLITE_ERROR.
        for code in [5, 6, 8, 778, 13, 1] {
            assert!(!super::rejects(code), "{code}");
        }
    }
}
