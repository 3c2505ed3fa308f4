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

    fn on_conflict_ignore(&self, key: &str) -> String {
        format!(" ON DUPLICATE KEY UPDATE {key} = {key}")
    }

    fn upsert(&self, _table: &str, _key: &[&str], sets: &[Set<'_>]) -> String {
        let sets: Vec<String> = sets
            .iter()
            .map(|set| match set {
                Set::Replace(column) => format!("{column} = VALUES({column})"),
                Set::Add(column) => format!("{column} = {column} + VALUES({column})"),
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
}
