//! The SQL that differs between engines, one module per engine.
//!
//! Stores write one statement in PostgreSQL's spelling (numbered `$n` placeholders, bound in
//! order) and ask the [`Database`](crate::Database)'s dialect for the few pieces that differ:
//! the placeholders themselves ([`Dialect::placeholders`]), upserts
//! ([`Dialect::on_conflict_ignore`], [`Dialect::upsert`]), the integer type of a `CAST`, integer
//! division, and which errors are worth retrying ([`Dialect::retryable`]). Nothing else branches
//! on the engine: adding an engine is one module here and one migration stream.
//!
//! No statement uses `RETURNING` (MySQL 8 has none; MariaDB has it only for `INSERT` and
//! `DELETE`): a store that needs the row back reads it with a second statement.

use std::borrow::Cow;

mod mysql;
mod postgres;
mod sqlite;

pub(crate) use mysql::MySql;
pub(crate) use postgres::Postgres;
pub(crate) use sqlite::Sqlite;

/// One column of an upsert's `UPDATE` part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set<'a> {
    /// The column takes the inserted row's value.
    Replace(&'a str),
    /// The inserted row's value is added to the stored one.
    Add(&'a str),
    /// The larger of the stored and the inserted value (a watermark that never goes back).
    Max(&'a str),
    /// The smaller of the stored and the inserted value.
    Min(&'a str),
}

/// The SQL of one engine.
pub trait Dialect: Send + Sync + std::fmt::Debug + 'static {
    /// The statement with its `$1, $2, …` placeholders (numbered in the order they appear, as
    /// every store writes them) in this engine's spelling.
    fn placeholders<'a>(&self, sql: &'a str) -> Cow<'a, str>;

    /// What follows `INSERT … VALUES (…)` so that a row whose `key` (the columns of a unique
    /// constraint or of the primary key) is already present is left alone. The statement's rows affected do not say
    /// whether it inserted: MySQL counts a row left alone too.
    fn on_conflict_ignore(&self, key: &[&str]) -> String;

    /// What follows `INSERT INTO {table} … VALUES (…)` so that a row whose `key` columns are
    /// already present is updated with `sets` instead.
    fn upsert(&self, table: &str, key: &[&str], sets: &[Set<'_>]) -> String;

    /// The type name of a 64-bit integer in `CAST(x AS …)`.
    fn bigint(&self) -> &'static str;

    /// Integer division of the integer expression `dividend` by `divisor`, an integer.
    fn int_div(&self, dividend: &str, divisor: i64) -> String;

    /// Whether a statement that failed with `error` may succeed if run again unchanged (a
    /// deadlock, a write conflict, a Galera certification failure, a busy file).
    fn retryable(&self, error: &sqlx::Error) -> bool;

    /// Whether the database refused a write because of the data written (a value it cannot
    /// store, a constraint, a limit), so the same rows fail the same way again; anything else
    /// (connection lost, resources, privileges, conflicts) is the database's state.
    fn rejects_data(&self, error: &dyn sqlx::error::DatabaseError) -> bool;

    /// Writes the placeholder of the `number`th parameter (from 1) of a statement built in a
    /// loop (the audit writer's multi-row inserts), in this engine's spelling.
    fn placeholder(&self, number: usize, out: &mut String);

    /// Whether a nullable double parameter is bound as NaN and turned back into NULL by
    /// `NULLIF(…, 'NaN')` (PostgreSQL keeps the parameter types a statement was first prepared
    /// with, and sqlx's `Any` driver binds a NULL double as a 4-byte float); `false` where a
    /// NULL is bound as NULL (MySQL has no NaN).
    fn nan_for_null_doubles(&self) -> bool;

    /// A statement that takes a lock held by the connection's session, named by its one
    /// parameter (a 64-bit key), without waiting: it answers 1 (a `BIGINT`) when the lock is
    /// taken, 0 when another session holds it. `None` where the engine has no such lock (SQLite:
    /// one process owns the database). The worker's leader election uses it.
    fn try_session_lock(&self) -> Option<&'static str>;
}

/// `$n` placeholders rewritten to `?`: the numbers must appear as 1, 2, 3… (checked in debug
/// builds). `$` inside quoted literals is left alone.
pub(crate) fn question_marks(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut expected = 1_u64;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' || c == '`' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut number = 0_u64;
                while let Some(digit) = chars.peek().and_then(|d| d.to_digit(10)) {
                    number = number.saturating_mul(10).saturating_add(u64::from(digit));
                    chars.next();
                }
                debug_assert_eq!(number, expected, "placeholders out of order in {sql}");
                expected += 1;
                out.push('?');
            }
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `ON CONFLICT` clauses, shared by PostgreSQL and SQLite.
pub(crate) fn on_conflict_ignore(key: &[&str]) -> String {
    format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
}

/// `ON CONFLICT … DO UPDATE`, shared by PostgreSQL and SQLite.
pub(crate) fn on_conflict_update(table: &str, key: &[&str], sets: &[Set<'_>]) -> String {
    let sets: Vec<String> = sets
        .iter()
        .map(|set| match set {
            Set::Replace(column) => format!("{column} = excluded.{column}"),
            Set::Add(column) => format!("{column} = {table}.{column} + excluded.{column}"),
            Set::Max(column) => format!(
                "{column} = CASE WHEN excluded.{column} > {table}.{column} THEN excluded.{column} ELSE {table}.{column} END"
            ),
            Set::Min(column) => format!(
                "{column} = CASE WHEN excluded.{column} < {table}.{column} THEN excluded.{column} ELSE {table}.{column} END"
            ),
        })
        .collect();
    format!(" ON CONFLICT ({}) DO UPDATE SET {}", key.join(", "), sets.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_question_marks_outside_literals() {
        assert_eq!(question_marks("SELECT 1"), "SELECT 1");
        assert_eq!(
            question_marks("SELECT a FROM t WHERE b = $1 AND c = '$2' AND (d, e) < ($2, $3) LIMIT $4"),
            "SELECT a FROM t WHERE b = ? AND c = '$2' AND (d, e) < (?, ?) LIMIT ?"
        );
        assert_eq!(question_marks("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)").matches('?').count(), 11);
    }

    #[test]
    fn upserts_are_spelled_per_engine() {
        let sets = [Set::Add("spent_nanos"), Set::Replace("updated_at")];
        assert_eq!(
            Postgres.upsert("spend", &["key_id", "period_start"], &sets),
            " ON CONFLICT (key_id, period_start) DO UPDATE SET spent_nanos = spend.spent_nanos + excluded.spent_nanos, \
             updated_at = excluded.updated_at"
        );
        assert_eq!(
            MySql.upsert("spend", &["key_id", "period_start"], &sets),
            " ON DUPLICATE KEY UPDATE spent_nanos = spent_nanos + VALUES(spent_nanos), updated_at = VALUES(updated_at)"
        );
        assert_eq!(MySql.on_conflict_ignore(&["request_id"]), " ON DUPLICATE KEY UPDATE request_id = request_id");
        assert_eq!(
            MySql.upsert("worker_state", &["name"], &[Set::Max("value")]),
            " ON DUPLICATE KEY UPDATE value = GREATEST(value, VALUES(value))"
        );
        assert_eq!(
            Sqlite.upsert("worker_state", &["name"], &[Set::Min("value")]),
            " ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value < worker_state.value \
             THEN excluded.value ELSE worker_state.value END"
        );
        assert_eq!(Sqlite.on_conflict_ignore(&["name"]), " ON CONFLICT (name) DO NOTHING");
    }
}
