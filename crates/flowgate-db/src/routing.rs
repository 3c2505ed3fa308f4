//! Deployments written through `/api/routing` (`routing_deployments`) and the routing revision
//! (`routing_revision`), which goes up by one in the transaction of every change to them or to a
//! provider credential. The api-server writes; proxies read the revision (cheap, every refresh
//! interval) and the deployments when it moved.

use sqlx::Row;

use crate::{Database, now_millis};

/// A stored deployment: its id, model name, the entry's JSON text (references, never keys) and
/// the revision that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeployment {
    /// Its id (`model_info.id`).
    pub id: String,
    /// The name clients ask for.
    pub model_name: String,
    /// The `model_list` entry, JSON text.
    pub entry: String,
    /// The revision that last wrote it.
    pub revision: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

fn stored(row: &sqlx::any::AnyRow) -> Result<StoredDeployment, sqlx::Error> {
    Ok(StoredDeployment {
        id: row.try_get("id")?,
        model_name: row.try_get("model_name")?,
        entry: row.try_get("entry")?,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const COLUMNS: &str = "id, model_name, entry, revision, created_at, updated_at";

/// The current routing revision.
pub async fn revision(db: &Database) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT revision FROM routing_revision WHERE id = 1").fetch_optional(db.pool()).await?;
    row.map_or(Ok(0), |row| row.try_get("revision"))
}

/// Adds one to the revision inside `tx`; returns the new value.
pub async fn bump_revision(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("UPDATE routing_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision")
        .fetch_one(&mut **tx)
        .await?;
    row.try_get("revision")
}

/// Every stored deployment, in the order they were created, and the revision they are at (read
/// in one transaction, so the two agree).
pub async fn snapshot(db: &Database) -> Result<(i64, Vec<StoredDeployment>), sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let row = sqlx::query("SELECT revision FROM routing_revision WHERE id = 1").fetch_optional(&mut *tx).await?;
    let revision = row.map_or(Ok(0), |row| row.try_get("revision"))?;
    let sql = format!("SELECT {COLUMNS} FROM routing_deployments ORDER BY created_at, id");
    let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok((revision, rows.iter().map(stored).collect::<Result<_, _>>()?))
}

/// Deployment `id`.
pub async fn get(db: &Database, id: &str) -> Result<Option<StoredDeployment>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM routing_deployments WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(stored).transpose()
}

/// Inserts a deployment (a duplicate id is a unique violation); returns the new revision.
pub async fn insert(db: &Database, id: &str, model_name: &str, entry: &str) -> Result<i64, sqlx::Error> {
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let revision = bump_revision(&mut tx).await?;
    sqlx::query(
        "INSERT INTO routing_deployments (id, model_name, entry, revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(model_name)
    .bind(entry)
    .bind(revision)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(revision)
}

/// Replaces deployment `id`'s entry; the new revision, or `None` when there is no such deployment.
pub async fn replace(db: &Database, id: &str, model_name: &str, entry: &str) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let revision = bump_revision(&mut tx).await?;
    let updated = sqlx::query(
        "UPDATE routing_deployments SET model_name = $1, entry = $2, revision = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(model_name)
    .bind(entry)
    .bind(revision)
    .bind(now_millis())
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(revision))
}

/// Deletes deployment `id`; the new revision, or `None` when there is no such deployment.
pub async fn delete(db: &Database, id: &str) -> Result<Option<i64>, sqlx::Error> {
    delete_where(db, "DELETE FROM routing_deployments WHERE id = $1", id).await
}

/// Deletes every stored deployment of `model_name`; the new revision, or `None` when it had none.
pub async fn delete_model(db: &Database, model_name: &str) -> Result<Option<i64>, sqlx::Error> {
    delete_where(db, "DELETE FROM routing_deployments WHERE model_name = $1", model_name).await
}

async fn delete_where(db: &Database, sql: &'static str, value: &str) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let deleted = sqlx::query(sql).bind(value).execute(&mut *tx).await?.rows_affected();
    if deleted == 0 {
        return Ok(None);
    }
    let revision = bump_revision(&mut tx).await?;
    tx.commit().await?;
    Ok(Some(revision))
}
