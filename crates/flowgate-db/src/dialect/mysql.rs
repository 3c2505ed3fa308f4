//! MySQL 8.0+ and MariaDB 10.6+ (Galera clusters included).
//!
//! - Placeholders are `?`, bound in order (every store numbers its `$n` in order).
//! - Upserts are `ON DUPLICATE KEY UPDATE … VALUES(column)`, which both engines accept (MySQL
//!   8.0.20+ warns that `VALUES()` is deprecated there but runs it). "Do nothing" is a no-op
//!   update of the key, not `INSERT IGNORE`, which would also turn a too-long value or a bad
//!   character into a warning and store a truncated row.
//! - `CAST(x AS SIGNED)` is the 64-bit integer cast; `/` is decimal division, `DIV` integral.
//! - Retried: 1213 (deadlock, and how Galera reports a certification failure), 1205 (lock wait
//!   timeout), 1047 (a Galera node that is not ready: `WSREP has not yet prepared node for
//!   application use`), 1180 (error during commit). A lost connection is not retried here: the
//!   statement may have been applied, and only the caller knows whether running it again is safe.

use std::borrow::Cow;

use sqlx::mysql::MySqlDatabaseError;

use super::{Dialect, Set};

/// MySQL and MariaDB.
#[derive(Debug)]
pub(crate) struct MySql;

/// Error numbers worth a retry: see the module documentation.
const RETRYABLE: [u16; 4] = [1213, 1205, 1047, 1180];

impl Dialect for MySql {
    fn placeholders<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        super::question_marks(sql)
    }

    /// A no-op update of the key's first column.
    fn on_conflict_ignore(&self, key: &[&str]) -> String {
        let first = key.first().copied().unwrap_or("id");
        format!(" ON DUPLICATE KEY UPDATE {first} = {first}")
    }

    fn upsert(&self, _table: &str, _key: &[&str], sets: &[Set<'_>]) -> String {
        let sets: Vec<String> = sets
            .iter()
            .map(|set| match set {
                Set::Replace(column) => format!("{column} = VALUES({column})"),
                Set::Add(column) => format!("{column} = {column} + VALUES({column})"),
                Set::Max(column) => format!("{column} = GREATEST({column}, VALUES({column}))"),
                Set::Min(column) => format!("{column} = LEAST({column}, VALUES({column}))"),
            })
            .collect();
        format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
    }

    fn bigint(&self) -> &'static str {
        "SIGNED"
    }

    fn int_div(&self, dividend: &str, divisor: i64) -> String {
        format!("({dividend} DIV {divisor})")
    }

    fn retryable(&self, error: &sqlx::Error) -> bool {
        match error {
            sqlx::Error::Database(e) => {
                e.try_downcast_ref::<MySqlDatabaseError>().is_some_and(|e| RETRYABLE.contains(&e.number()))
                    || e.code().as_deref() == Some("40001")
            }
            _ => false,
        }
    }

    fn rejects_data(&self, error: &dyn sqlx::error::DatabaseError) -> bool {
        let number = error.try_downcast_ref::<MySqlDatabaseError>().map(MySqlDatabaseError::number);
        rejects(error.code().as_deref(), number)
    }

    fn placeholder(&self, _number: usize, out: &mut String) {
        out.push('?');
    }

    fn nan_for_null_doubles(&self) -> bool {
        false
    }

    fn try_session_lock(&self) -> Option<&'static str> {
        // A named lock of the server the connection is on (on a Galera cluster, locks are not
        // replicated: every worker replica must use the same node; docs/deployment.md).
        Some("SELECT CAST(COALESCE(GET_LOCK(CONCAT('flowgate-worker:', $1), 0), 0) AS SIGNED)")
    }
}

/// Errors caused by the data written: SQLSTATE class 22 (data exception: `22001` data too long,
/// `22003` out of range, `22007` incorrect value), class 23 (integrity: duplicate, NOT NULL,
/// foreign key, MariaDB's CHECK failure 4025) and 45000 (a trigger's `SIGNAL`); and by number,
/// what MySQL files under the generic `HY000`: 1366 (incorrect string value: a character the
/// column cannot hold), 3819 (MySQL's CHECK failure), 1118 (row size too large), 1292 and 1367
/// (incorrect value), 3140 (invalid JSON). Connection, resource, privilege and conflict errors
/// (08S01, 1040, 1142, 1213, 1047, …) are the database's state.
fn rejects(code: Option<&str>, number: Option<u16>) -> bool {
    code.is_some_and(|code| code.starts_with("22") || code.starts_with("23") || code == "45000")
        || number.is_some_and(|number| matches!(number, 1366 | 3819 | 1118 | 1292 | 1367 | 3140))
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_errors_are_rejections_and_the_rest_outages() {
        for (code, number) in [("22001", 1406), ("HY000", 1366), ("23000", 4025), ("HY000", 3819), ("45000", 1644)] {
            assert!(super::rejects(Some(code), Some(number)), "{code} {number}");
        }
        for (code, number) in [("08S01", 1047), ("40001", 1213), ("HY000", 1205), ("08004", 1040), ("42000", 1142)] {
            assert!(!super::rejects(Some(code), Some(number)), "{code} {number}");
        }
    }
}
