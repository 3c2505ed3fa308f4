//! SQL for tenants.

use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::text::text;
use flowgate_db::{Database, now_millis};

use super::model::{TenantFields, TenantRow};
use crate::fields::{Change, Cursor};
use crate::sql::{Bind, bind_all, page_clause, select_page, update};

/// Name of the tenant keys created without a `tenant_id` belong to.
pub(crate) const DEFAULT_TENANT: &str = "default";

const TENANT_COLUMNS: &str = "id, name, budget_nanos, budget_period, guardrail_defaults, store_prompts, mcp_servers, \
     mcp_tools, mcp_denied_tools, a2a_agents, metadata, created_at, updated_at";

fn tenant_row(row: &AnyRow) -> Result<TenantRow, sqlx::Error> {
    Ok(TenantRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        budget_nanos: row.try_get("budget_nanos")?,
        budget_period: row.try_get("budget_period")?,
        guardrail_defaults: text(row, "guardrail_defaults")?,
        store_prompts: row.try_get::<i64, _>("store_prompts")? != 0,
        mcp_servers: text(row, "mcp_servers")?,
        mcp_tools: text(row, "mcp_tools")?,
        mcp_denied_tools: text(row, "mcp_denied_tools")?,
        a2a_agents: text(row, "a2a_agents")?,
        metadata: text(row, "metadata")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A new tenant id: a UUIDv7 (time-ordered).
fn new_tenant_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Inserts a tenant. A duplicate name is a unique violation.
pub(crate) async fn insert_tenant(db: &Database, fields: &TenantFields) -> Result<TenantRow, sqlx::Error> {
    let id = new_tenant_id();
    let now = now_millis();
    sqlx::query(&db.sql(
        "INSERT INTO tenants (id, name, budget_nanos, budget_period, guardrail_defaults, store_prompts, mcp_servers, \
         mcp_tools, mcp_denied_tools, a2a_agents, metadata, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    ))
    .bind(&id)
    .bind(&fields.name)
    .bind(fields.budget_nanos)
    .bind(fields.budget_period.as_str())
    .bind(&fields.guardrail_defaults)
    .bind(i64::from(fields.store_prompts))
    .bind(&fields.mcp_servers)
    .bind(&fields.mcp_tools)
    .bind(&fields.mcp_denied_tools)
    .bind(&fields.a2a_agents)
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
    let row = sqlx::query(&db.sql(&sql)).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(tenant_row).transpose()
}

/// The tenant named `default`, created if missing (concurrent callers get the same one).
pub(crate) async fn default_tenant(db: &Database) -> Result<TenantRow, sqlx::Error> {
    let now = now_millis();
    let sql = format!(
        "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4){}",
        db.dialect().on_conflict_ignore(&["name"])
    );
    sqlx::query(&db.sql(&sql))
        .bind(new_tenant_id())
        .bind(DEFAULT_TENANT)
        .bind(now)
        .bind(now)
        .execute(db.pool())
        .await?;
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1");
    let row = sqlx::query(&db.sql(&sql)).bind(DEFAULT_TENANT).fetch_one(db.pool()).await?;
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
    let rows = bind_all(sqlx::query(&db.sql(&sql)), binds).fetch_all(db.pool()).await?;
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
