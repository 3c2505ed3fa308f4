//! PostgreSQL: the spelling every statement is written in.

use std::borrow::Cow;

use super::{Dialect, Set};

/// PostgreSQL 14+.
#[derive(Debug)]
pub(crate) struct Postgres;

impl Dialect for Postgres {
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

    /// serialization_failure and deadlock_detected.
    fn retryable(&self, error: &sqlx::Error) -> bool {
        matches!(error, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("40001" | "40P01")))
    }
}
