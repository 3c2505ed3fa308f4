//! SQL for virtual keys and their spend: portable queries (`$n` placeholders, BIGINT
//! timestamps and money, JSON as TEXT) that run unchanged on PostgreSQL and SQLite.
//!
//! Key hashes are written here and never read back: no query selects `key_hash` or
//! `previous_key_hash`.

use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::text::text;
use flowgate_db::{Database, now_millis};

use super::model::{KeyFields, KeyRow, SpendRow};
use crate::fields::{Change, Cursor};
use crate::sql::{Bind, bind_all, page_clause, select_page, update};

const KEY_COLUMNS: &str = "id, tenant_id, name, budget_nanos, budget_period, rpm, tpm, requests_per_hour, \
     max_parallel_requests, allowed_models, ip_allowlist, expires_at, metadata, guardrail_policy, mcp_servers, mcp_tools, \
     mcp_denied_tools, a2a_agents, revoked_at, previous_key_expires_at, created_at, updated_at";

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
        allowed_models: text(row, "allowed_models")?,
        ip_allowlist: text(row, "ip_allowlist")?,
        expires_at: row.try_get("expires_at")?,
        metadata: text(row, "metadata")?,
        guardrail_policy: text(row, "guardrail_policy")?,
        mcp_servers: text(row, "mcp_servers")?,
        mcp_tools: text(row, "mcp_tools")?,
        mcp_denied_tools: text(row, "mcp_denied_tools")?,
        a2a_agents: text(row, "a2a_agents")?,
        revoked_at: row.try_get("revoked_at")?,
        previous_key_expires_at: row.try_get("previous_key_expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
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
    sqlx::query(&db.sql(
        "INSERT INTO virtual_keys (id, tenant_id, name, key_hash, budget_nanos, budget_period, rpm, tpm, \
         requests_per_hour, max_parallel_requests, allowed_models, ip_allowlist, expires_at, metadata, \
         guardrail_policy, mcp_servers, mcp_tools, mcp_denied_tools, a2a_agents, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
    ))
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
    .bind(&fields.mcp_servers)
    .bind(&fields.mcp_tools)
    .bind(&fields.mcp_denied_tools)
    .bind(&fields.a2a_agents)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_key(db, id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// The key with `id` (never its hashes).
pub(crate) async fn get_key(db: &Database, id: &str) -> Result<Option<KeyRow>, sqlx::Error> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys WHERE id = $1");
    let row = sqlx::query(&db.sql(&sql)).bind(id).fetch_optional(db.pool()).await?;
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
    let rows = bind_all(sqlx::query(&db.sql(&sql)), binds).fetch_all(db.pool()).await?;
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
    sqlx::query(
        &db.sql("UPDATE virtual_keys SET revoked_at = $1, updated_at = $2 WHERE id = $3 AND revoked_at IS NULL"),
    )
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
    let result = sqlx::query(&db.sql(sql))
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
    let result = sqlx::query(&db.sql("DELETE FROM virtual_keys WHERE id = $1")).bind(id).execute(db.pool()).await?;
    Ok(result.rows_affected() > 0)
}

/// How many keys exist (revoked ones included).
pub(crate) async fn count_keys(db: &Database) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(&db.sql("SELECT COUNT(*) AS n FROM virtual_keys")).fetch_one(db.pool()).await?;
    row.try_get("n")
}

/// Settled spend of a key in the period starting at `period_start` (zero when nothing is recorded).
pub(crate) async fn key_spend(db: &Database, key_id: &str, period_start: i64) -> Result<SpendRow, sqlx::Error> {
    let row = sqlx::query(&db.sql(
        "SELECT spent_nanos, requests, prompt_tokens, completion_tokens FROM spend \
         WHERE key_id = $1 AND period_start = $2",
    ))
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
