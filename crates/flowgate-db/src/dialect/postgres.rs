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

    /// serialization_failure and deadlock_detected.
    fn retryable(&self, error: &sqlx::Error) -> bool {
        matches!(error, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("40001" | "40P01")))
    }

    fn rejects_data(&self, error: &dyn sqlx::error::DatabaseError) -> bool {
        error.code().as_deref().is_some_and(rejects)
    }

    fn placeholder(&self, number: usize, out: &mut String) {
        out.push('$');
        out.push_str(&number.to_string());
    }

    fn nan_for_null_doubles(&self) -> bool {
        true
    }

    fn try_session_lock(&self) -> Option<&'static str> {
        Some("SELECT CAST(CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END AS BIGINT)")
    }
}

/// PostgreSQL errors caused by the data written (SQLSTATE): class 22, data exception (`22021`
/// invalid byte sequence, `22001` value too long, `22P03` invalid binary representation, ...);
/// class 23, integrity constraint violation (check, not-null, foreign key, exclusion); `54000`,
/// program limit exceeded (an index row too large); `P0001`, raised by a trigger. Anything else
/// (connection exceptions `08`, insufficient resources `53`, operator intervention `57`, a
/// missing table or privilege `42`, serialization failures `40`) is the database's state.
fn rejects(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23") || code == "54000" || code == "P0001"
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_errors_are_rejections_and_the_rest_outages() {
        for code in ["22021", "22001", "22P03", "23514", "23502", "54000", "P0001"] {
            assert!(super::rejects(code), "{code}");
        }
        for code in ["08006", "08001", "53100", "53300", "57P01", "57P03", "42P01", "42501", "40001", "XX000"] {
            assert!(!super::rejects(code), "{code}");
        }
    }
}
