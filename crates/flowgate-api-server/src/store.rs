//! SQL for tenants, virtual keys and spend: portable queries (`$n` placeholders, BIGINT
//! timestamps and money, JSON as TEXT) that run unchanged on PostgreSQL and SQLite.
//!
//! Key hashes are written here and never read back: no query selects `key_hash` or
//! `previous_key_hash`.

use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, now_millis};

use crate::model::{Change, Cursor, KeyFields, KeyRow, SpendRow, TenantFields, TenantRow};

/// Name of the tenant keys created without a `tenant_id` belong to.
pub(crate) const DEFAULT_TENANT: &str = "default";

const TENANT_COLUMNS: &str =
    "id, name, budget_nanos, budget_period, guardrail_defaults, store_prompts, metadata, created_at, updated_at";

const KEY_COLUMNS: &str = "id, tenant_id, name, budget_nanos, budget_period, rpm, tpm, requests_per_hour, \
     max_parallel_requests, allowed_models, ip_allowlist, expires_at, metadata, guardrail_policy, revoked_at, \
     previous_key_expires_at, created_at, updated_at";

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

fn tenant_row(row: &AnyRow) -> Result<TenantRow, sqlx::Error> {
    Ok(TenantRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        budget_nanos: row.try_get("budget_nanos")?,
        budget_period: row.try_get("budget_period")?,
        guardrail_defaults: row.try_get("guardrail_defaults")?,
        store_prompts: row.try_get::<i64, _>("store_prompts")? != 0,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn key_row(row: &AnyRow) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        budget_nanos: row.try_get("budget_nanos")?,
        budget_period: row.try_get("budget_period")?,
        rpm: row.try_get("rpm")?,
        tpm: row.try_get("tpm")?,
        requests_per_hour: row.try_get("requests_per_hour")?,
        max_parallel_requests: row.try_get("max_parallel_requests")?,
        allowed_models: row.try_get("allowed_models")?,
        ip_allowlist: row.try_get("ip_allowlist")?,
        expires_at: row.try_get("expires_at")?,
        metadata: row.try_get("metadata")?,
        guardrail_policy: row.try_get("guardrail_policy")?,
        revoked_at: row.try_get("revoked_at")?,
        previous_key_expires_at: row.try_get("previous_key_expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `WHERE` conditions and binds for a page after `cursor`, ordered by creation time then id.
fn page_clause(conditions: &mut Vec<String>, binds: &mut Vec<Bind>, cursor: Option<&Cursor>) {
    if let Some(cursor) = cursor {
        let n = binds.len();
        conditions.push(format!("(created_at > ${} OR (created_at = ${} AND id > ${}))", n + 1, n + 2, n + 3));
        binds.push(Bind::Int(Some(cursor.created_at)));
        binds.push(Bind::Int(Some(cursor.created_at)));
        binds.push(Bind::Text(cursor.id.clone()));
    }
}

fn select_page(table: &str, columns: &str, conditions: &[String], limit_placeholder: usize) -> String {
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    format!("SELECT {columns} FROM {table}{filter} ORDER BY created_at, id LIMIT ${limit_placeholder}")
}

// ---------------------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------------------

/// A new tenant id: a UUIDv7 (time-ordered).
fn new_tenant_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Inserts a tenant. A duplicate name is a unique violation.
pub(crate) async fn insert_tenant(db: &Database, fields: &TenantFields) -> Result<TenantRow, sqlx::Error> {
    let id = new_tenant_id();
    let now = now_millis();
    sqlx::query(
        "INSERT INTO tenants (id, name, budget_nanos, budget_period, guardrail_defaults, store_prompts, metadata, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(&fields.name)
    .bind(fields.budget_nanos)
    .bind(fields.budget_period.as_str())
    .bind(&fields.guardrail_defaults)
    .bind(i64::from(fields.store_prompts))
    .bind(&fields.metadata)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_tenant(db, &id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// The tenant with `id`.
pub(crate) async fn get_tenant(db: &Database, id: &str) -> Result<Option<TenantRow>, sqlx::Error> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(tenant_row).transpose()
}

/// The tenant named `default`, created if missing (concurrent callers get the same one).
pub(crate) async fn default_tenant(db: &Database) -> Result<TenantRow, sqlx::Error> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(new_tenant_id())
    .bind(DEFAULT_TENANT)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1");
    let row = sqlx::query(&sql).bind(DEFAULT_TENANT).fetch_one(db.pool()).await?;
    tenant_row(&row)
}

/// Up to `limit` tenants after `cursor`, and whether more follow.
pub(crate) async fn list_tenants(
    db: &Database,
    cursor: Option<&Cursor>,
    limit: u32,
) -> Result<(Vec<TenantRow>, bool), sqlx::Error> {
    let (mut conditions, mut binds) = (Vec::new(), Vec::new());
    page_clause(&mut conditions, &mut binds, cursor);
    let sql = select_page("tenants", TENANT_COLUMNS, &conditions, binds.len() + 1);
    binds.push(Bind::Int(Some(i64::from(limit) + 1)));
    let rows = bind_all(sqlx::query(&sql), binds).fetch_all(db.pool()).await?;
    let mut tenants = rows.iter().map(tenant_row).collect::<Result<Vec<_>, _>>()?;
    let more = tenants.len() > limit as usize;
    tenants.truncate(limit as usize);
    Ok((tenants, more))
}

/// Applies `changes` to a tenant; `None` when there is no such tenant.
pub(crate) async fn update_tenant(
    db: &Database,
    id: &str,
    changes: Vec<Change>,
) -> Result<Option<TenantRow>, sqlx::Error> {
    if !changes.is_empty() && update("tenants", id, changes).run(db).await? == 0 {
        return Ok(None);
    }
    get_tenant(db, id).await
}

// ---------------------------------------------------------------------------------------------
// Virtual keys
// ---------------------------------------------------------------------------------------------

/// An `UPDATE {table} SET ... WHERE id = ...` built from a list of changes. Column names come
/// only from [`Change`]'s static strings, never from a request.
pub(crate) struct Update {
    sql: String,
    binds: Vec<Bind>,
}

fn update(table: &'static str, id: &str, changes: Vec<Change>) -> Update {
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
    /// Rows changed.
    pub(crate) async fn run(self, db: &Database) -> Result<u64, sqlx::Error> {
        let result = bind_all(sqlx::query(&self.sql), self.binds).execute(db.pool()).await?;
        Ok(result.rows_affected())
    }
}

/// Inserts a key with id `id` and keyed hash `hash`. A duplicate id is a unique violation.
pub(crate) async fn insert_key(
    db: &Database,
    id: &str,
    tenant_id: &str,
    hash: &[u8],
    fields: &KeyFields,
) -> Result<KeyRow, sqlx::Error> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO virtual_keys (id, tenant_id, name, key_hash, budget_nanos, budget_period, rpm, tpm, \
         requests_per_hour, max_parallel_requests, allowed_models, ip_allowlist, expires_at, metadata, \
         guardrail_policy, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(&fields.name)
    .bind(hash.to_vec())
    .bind(fields.budget_nanos)
    .bind(fields.budget_period.as_str())
    .bind(fields.rpm)
    .bind(fields.tpm)
    .bind(fields.requests_per_hour)
    .bind(fields.max_parallel_requests)
    .bind(&fields.allowed_models)
    .bind(&fields.ip_allowlist)
    .bind(fields.expires_at)
    .bind(&fields.metadata)
    .bind(&fields.guardrail_policy)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_key(db, id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// The key with `id` (never its hashes).
pub(crate) async fn get_key(db: &Database, id: &str) -> Result<Option<KeyRow>, sqlx::Error> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(key_row).transpose()
}

/// Up to `limit` keys (of `tenant_id`, when given) after `cursor`, and whether more follow.
pub(crate) async fn list_keys(
    db: &Database,
    tenant_id: Option<&str>,
    cursor: Option<&Cursor>,
    limit: u32,
) -> Result<(Vec<KeyRow>, bool), sqlx::Error> {
    let (mut conditions, mut binds) = (Vec::new(), Vec::new());
    if let Some(tenant_id) = tenant_id {
        binds.push(Bind::Text(tenant_id.to_owned()));
        conditions.push(format!("tenant_id = ${}", binds.len()));
    }
    page_clause(&mut conditions, &mut binds, cursor);
    let sql = select_page("virtual_keys", KEY_COLUMNS, &conditions, binds.len() + 1);
    binds.push(Bind::Int(Some(i64::from(limit) + 1)));
    let rows = bind_all(sqlx::query(&sql), binds).fetch_all(db.pool()).await?;
    let mut keys = rows.iter().map(key_row).collect::<Result<Vec<_>, _>>()?;
    let more = keys.len() > limit as usize;
    keys.truncate(limit as usize);
    Ok((keys, more))
}

/// Applies `changes` to a key; `None` when there is no such key.
pub(crate) async fn update_key(db: &Database, id: &str, changes: Vec<Change>) -> Result<Option<KeyRow>, sqlx::Error> {
    if !changes.is_empty() && update("virtual_keys", id, changes).run(db).await? == 0 {
        return Ok(None);
    }
    get_key(db, id).await
}

/// Marks a key revoked (keeping the first revocation time); `None` when there is no such key.
pub(crate) async fn revoke_key(db: &Database, id: &str) -> Result<Option<KeyRow>, sqlx::Error> {
    let now = now_millis();
    sqlx::query("UPDATE virtual_keys SET revoked_at = $1, updated_at = $2 WHERE id = $3 AND revoked_at IS NULL")
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(db.pool())
        .await?;
    get_key(db, id).await
}

/// What a rotation found.
#[derive(Debug)]
pub(crate) enum Rotated {
    /// The key now has the new hash.
    Done(Box<KeyRow>),
    /// There is no such key.
    Missing,
    /// The key is revoked; revoked keys stay revoked.
    Revoked,
}

/// Replaces a key's hash with `new_hash`. With a grace period the old hash keeps resolving until
/// `previous_expires_at` (a previous grace period still running ends now); without one it stops
/// at once.
pub(crate) async fn rotate_key(
    db: &Database,
    id: &str,
    new_hash: &[u8],
    previous_expires_at: Option<i64>,
) -> Result<Rotated, sqlx::Error> {
    let now = now_millis();
    let sql = if previous_expires_at.is_some() {
        "UPDATE virtual_keys SET previous_key_hash = key_hash, previous_key_expires_at = $1, key_hash = $2, \
         updated_at = $3 WHERE id = $4 AND revoked_at IS NULL"
    } else {
        "UPDATE virtual_keys SET previous_key_hash = NULL, previous_key_expires_at = $1, key_hash = $2, \
         updated_at = $3 WHERE id = $4 AND revoked_at IS NULL"
    };
    let result = sqlx::query(sql)
        .bind(previous_expires_at)
        .bind(new_hash.to_vec())
        .bind(now)
        .bind(id)
        .execute(db.pool())
        .await?;
    match get_key(db, id).await? {
        None => Ok(Rotated::Missing),
        Some(_) if result.rows_affected() == 0 => Ok(Rotated::Revoked),
        Some(row) => Ok(Rotated::Done(Box::new(row))),
    }
}

/// Deletes a key; `false` when there was no such key. Its spend rows stay, for reporting.
pub(crate) async fn delete_key(db: &Database, id: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM virtual_keys WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(result.rows_affected() > 0)
}

/// How many keys exist (revoked ones included).
pub(crate) async fn count_keys(db: &Database) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM virtual_keys").fetch_one(db.pool()).await?;
    row.try_get("n")
}

/// Settled spend of a key in the period starting at `period_start` (zero when nothing is recorded).
pub(crate) async fn key_spend(db: &Database, key_id: &str, period_start: i64) -> Result<SpendRow, sqlx::Error> {
    let row = sqlx::query(
        "SELECT spent_nanos, requests, prompt_tokens, completion_tokens FROM spend \
         WHERE key_id = $1 AND period_start = $2",
    )
    .bind(key_id)
    .bind(period_start)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(SpendRow::default()) };
    Ok(SpendRow {
        spent_nanos: row.try_get("spent_nanos")?,
        requests: row.try_get("requests")?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
