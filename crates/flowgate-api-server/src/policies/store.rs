//! SQL for policies. `version` starts at 1 and goes up by one with every new document, in the
//! same `UPDATE` that writes it.

use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::text::text;
use flowgate_db::{Database, now_millis};

use super::model::PolicyRow;

const COLUMNS: &str = "id, name, version, document, created_at, updated_at";

fn policy_row(row: &AnyRow) -> Result<PolicyRow, sqlx::Error> {
    Ok(PolicyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        document: text(row, "document")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The policy named `name`.
pub(crate) async fn get_policy(db: &Database, name: &str) -> Result<Option<PolicyRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM policies WHERE name = $1");
    let found = sqlx::query(&db.sql(&sql)).bind(name).fetch_optional(db.pool()).await?;
    found.as_ref().map(policy_row).transpose()
}

/// Every policy, by name.
pub(crate) async fn list_policies(db: &Database) -> Result<Vec<PolicyRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM policies ORDER BY name");
    let rows = sqlx::query(&db.sql(&sql)).fetch_all(db.pool()).await?;
    rows.iter().map(policy_row).collect()
}

/// Inserts policy `name` at version 1 and reads it back (`None` if it is already gone). A
/// duplicate name is a unique violation.
pub(crate) async fn insert_policy(db: &Database, name: &str, document: &str) -> Result<Option<PolicyRow>, sqlx::Error> {
    let now = now_millis();
    sqlx::query(&db.sql(
        "INSERT INTO policies (id, name, version, document, created_at, updated_at) VALUES ($1, $2, 1, $3, $4, $5)",
    ))
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(name)
    .bind(document)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_policy(db, name).await
}

/// Replaces the document of policy `name` and bumps its version; false when there is no such
/// policy.
pub(crate) async fn replace_document(db: &Database, name: &str, document: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        &db.sql("UPDATE policies SET document = $1, version = version + 1, updated_at = $2 WHERE name = $3"),
    )
    .bind(document)
    .bind(now_millis())
    .bind(name)
    .execute(db.pool())
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Deletes policy `name`; false when there was none.
pub(crate) async fn delete_policy(db: &Database, name: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(&db.sql("DELETE FROM policies WHERE name = $1")).bind(name).execute(db.pool()).await?;
    Ok(result.rows_affected() > 0)
}
