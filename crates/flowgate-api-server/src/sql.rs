//! The data-access helpers every resource's `store.rs` uses: a statement built piece by piece
//! with numbered `$n` placeholders ([`Sql`]), `UPDATE`s built from a list of [`Change`]s, and
//! keyset pages ordered by `(created_at, id)`.
//!
//! Every resource keeps its SQL in its own `store.rs`, as functions over a [`Database`] that
//! return rows; handlers never build or run a statement.
//!
//! sqlx's `QueryBuilder` writes `?` placeholders for the `Any` driver, which PostgreSQL rejects;
//! this builder numbers them, so one dynamically filtered statement runs on every backend (the
//! engine's dialect rewrites them where it spells them otherwise: `Database::sql`). SQL
//! text comes only from `&'static str` fragments chosen by the code; every value from a request
//! goes through [`Sql::bind`].

use flowgate_db::sqlx;

use flowgate_db::{Database, now_millis};

use crate::fields::{Change, Cursor};

/// SQL text and the values bound to its placeholders, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    /// A statement starting with `text`.
    pub(crate) fn new(text: &str) -> Self {
        Self { text: text.to_owned(), binds: Vec::new() }
    }

    /// Appends SQL text (a fragment chosen by the code, never a request value).
    pub(crate) fn push(&mut self, text: &'static str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the next placeholder (`$n`) and binds `value` to it.
    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.text.push('$');
        self.text.push_str(&self.binds.len().to_string());
        self
    }

    /// Binds a text value.
    pub(crate) fn text(&mut self, value: &str) -> &mut Self {
        self.bind(Bind::Text(value.to_owned()))
    }

    /// Binds an integer.
    pub(crate) fn int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(Some(value)))
    }

    /// The SQL text.
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The statement with its values bound, ready to execute on `db` (its placeholders in the
    /// engine's spelling: the text is rewritten once, in place).
    pub(crate) fn query(&mut self, db: &Database) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        if let std::borrow::Cow::Owned(text) = db.sql(&self.text) {
            self.text = text;
        }
        bind_all(sqlx::query(&self.text), self.binds.clone())
    }
}

/// A value bound to a dynamically built statement.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(Option<i64>),
    Bytes(Option<Vec<u8>>),
}

pub(crate) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(int) => query.bind(int),
            Bind::Bytes(bytes) => query.bind(bytes),
        };
    }
    query
}

/// `WHERE` conditions and binds for a page after `cursor`, ordered by creation time then id.
pub(crate) fn page_clause(conditions: &mut Vec<String>, binds: &mut Vec<Bind>, cursor: Option<&Cursor>) {
    if let Some(cursor) = cursor {
        let n = binds.len();
        conditions.push(format!("(created_at > ${} OR (created_at = ${} AND id > ${}))", n + 1, n + 2, n + 3));
        binds.push(Bind::Int(Some(cursor.created_at)));
        binds.push(Bind::Int(Some(cursor.created_at)));
        binds.push(Bind::Text(cursor.id.clone()));
    }
}

pub(crate) fn select_page(table: &str, columns: &str, conditions: &[String], limit_placeholder: usize) -> String {
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    format!("SELECT {columns} FROM {table}{filter} ORDER BY created_at, id LIMIT ${limit_placeholder}")
}

/// An `UPDATE {table} SET ... WHERE id = ...` built from a list of changes. Column names come
/// only from [`Change`]'s static strings, never from a request.
pub(crate) struct Update {
    sql: String,
    binds: Vec<Bind>,
}

pub(crate) fn update(table: &'static str, id: &str, changes: Vec<Change>) -> Update {
    update_by(table, "id", id, changes)
}

/// An `UPDATE {table} SET ... WHERE {key_column} = ...`; `updated_at` is always set.
pub(crate) fn update_by(table: &'static str, key_column: &'static str, key: &str, changes: Vec<Change>) -> Update {
    let mut sets = Vec::with_capacity(changes.len() + 1);
    let mut binds = Vec::with_capacity(changes.len() + 2);
    for change in changes {
        let (column, bind) = match change {
            Change::Text(column, text) => (column, Bind::Text(text)),
            Change::Int(column, int) => (column, Bind::Int(int)),
            Change::Bytes(column, bytes) => (column, Bind::Bytes(bytes)),
        };
        binds.push(bind);
        sets.push(format!("{column} = ${}", binds.len()));
    }
    binds.push(Bind::Int(Some(now_millis())));
    sets.push(format!("updated_at = ${}", binds.len()));
    binds.push(Bind::Text(key.to_owned()));
    let sql = format!("UPDATE {table} SET {} WHERE {key_column} = ${}", sets.join(", "), binds.len());
    Update { sql, binds }
}

impl Update {
    /// Rows changed. Run again on a conflict the engine reports as transient (a Galera
    /// certification failure when two nodes change the same row): the statement was not applied.
    pub(crate) async fn run(self, db: &Database) -> Result<u64, sqlx::Error> {
        let sql = db.sql(&self.sql);
        let result = db.retry(|| bind_all(sqlx::query(&sql), self.binds.clone()).execute(db.pool())).await?;
        Ok(result.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_bind_order() {
        let mut sql = Sql::new("SELECT 1 FROM t WHERE 1 = 1");
        sql.push(" AND a = ").text("x").push(" AND (b = ").int(2).push(" OR c = ").int(3).push(")");
        assert_eq!(sql.as_str(), "SELECT 1 FROM t WHERE 1 = 1 AND a = $1 AND (b = $2 OR c = $3)");
        assert_eq!(sql.binds.len(), 3);
    }

    #[test]
    fn updates_number_their_placeholders_in_order() {
        let built = update(
            "virtual_keys",
            "k1",
            vec![Change::Text("name", "n".into()), Change::Int("rpm", None), Change::Int("tpm", Some(5))],
        );
        assert_eq!(built.sql, "UPDATE virtual_keys SET name = $1, rpm = $2, tpm = $3, updated_at = $4 WHERE id = $5");
        assert_eq!(built.binds.len(), 5);
    }

    #[test]
    fn pages_filter_after_the_cursor() {
        let (mut conditions, mut binds) = (vec!["tenant_id = $1".to_owned()], vec![Bind::Text("t".into())]);
        page_clause(&mut conditions, &mut binds, Some(&Cursor { created_at: 5, id: "x".into() }));
        let sql = select_page("virtual_keys", "id", &conditions, binds.len() + 1);
        assert_eq!(
            sql,
            "SELECT id FROM virtual_keys WHERE tenant_id = $1 AND (created_at > $2 OR (created_at = $3 AND id > $4)) \
             ORDER BY created_at, id LIMIT $5"
        );
    }
}
