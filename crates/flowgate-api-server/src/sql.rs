//! A statement built piece by piece with numbered `$n` placeholders.
//!
//! sqlx's `QueryBuilder` writes `?` placeholders for the `Any` driver, which PostgreSQL rejects;
//! this builder numbers them, so one dynamically filtered statement runs on both backends. SQL
//! text comes only from `&'static str` fragments chosen by the code; every value from a request
//! goes through [`Sql::bind`].

use flowgate_db::sqlx;

use crate::store::{Bind, bind_all};

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

    /// The statement with its values bound, ready to execute.
    pub(crate) fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        bind_all(sqlx::query(&self.text), self.binds.clone())
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
}
