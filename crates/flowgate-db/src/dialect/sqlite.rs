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

    fn on_conflict_ignore(&self, key: &str) -> String {
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
}
