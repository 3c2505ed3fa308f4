//! Reading text columns of any length on every engine.
//!
//! MySQL and MariaDB report `TEXT`/`LONGTEXT` columns as blobs, which sqlx's `Any` driver
//! hands over as bytes, not as a string; short `VARCHAR` columns arrive as strings everywhere.
//! Stores read the long text columns (JSON documents, prompts, descriptions) through [`text`]
//! and [`opt_text`], which take either.

use sqlx::Row;
use sqlx::any::AnyRow;

/// The text in `column` (NOT NULL).
pub fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    opt_text(row, column)?
        .ok_or_else(|| sqlx::Error::ColumnDecode { index: column.to_owned(), source: "unexpected NULL".into() })
}

/// The text in `column`, `None` when NULL.
pub fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    match row.try_get::<Option<String>, _>(column) {
        Ok(value) => Ok(value),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let Some(bytes) = row.try_get::<Option<Vec<u8>>, _>(column)? else { return Ok(None) };
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|error| sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(error) })
        }
        Err(error) => Err(error),
    }
}
