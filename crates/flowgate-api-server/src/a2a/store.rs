//! SQL for the registered A2A agents. The sealed headers are written here and never selected
//! back: reads learn only their names.

use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, now_millis};

use super::model::{AgentFields, AgentRow};
use crate::fields::{Change, parse_list};
use crate::sql::update_by;

const COLUMNS: &str = "id, name, card_url, description, header_names, timeout_secs, created_at, updated_at";

fn agent_row(row: &AnyRow) -> Result<(AgentRow, Vec<String>), sqlx::Error> {
    let names: String = row.try_get("header_names")?;
    Ok((
        AgentRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            card_url: row.try_get("card_url")?,
            description: row.try_get("description")?,
            timeout_secs: row.try_get("timeout_secs")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        },
        parse_list(&names),
    ))
}

/// The agent named `name`, with its header names.
pub(crate) async fn get_agent(db: &Database, name: &str) -> Result<Option<(AgentRow, Vec<String>)>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM a2a_agents WHERE name = $1");
    let found = sqlx::query(&sql).bind(name).fetch_optional(db.pool()).await?;
    found.as_ref().map(agent_row).transpose()
}

/// Every registered agent, by name.
pub(crate) async fn list_agents(db: &Database) -> Result<Vec<(AgentRow, Vec<String>)>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM a2a_agents ORDER BY name");
    let rows = sqlx::query(&sql).fetch_all(db.pool()).await?;
    rows.iter().map(agent_row).collect()
}

/// Inserts an agent with its headers already sealed. A duplicate name is a unique violation.
pub(crate) async fn insert_agent(
    db: &Database,
    fields: &AgentFields,
    sealed_headers: Option<Vec<u8>>,
    header_names: &str,
) -> Result<(AgentRow, Vec<String>), sqlx::Error> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO a2a_agents (id, name, card_url, description, headers_sealed, header_names, timeout_secs, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&fields.name)
    .bind(&fields.card_url)
    .bind(&fields.description)
    .bind(sealed_headers)
    .bind(header_names)
    .bind(fields.timeout_secs)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_agent(db, &fields.name).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Applies `changes` to the agent named `name`; `None` when there is no such agent.
pub(crate) async fn update_agent(
    db: &Database,
    name: &str,
    changes: Vec<Change>,
) -> Result<Option<(AgentRow, Vec<String>)>, sqlx::Error> {
    if !changes.is_empty() && update_by("a2a_agents", "name", name, changes).run(db).await? == 0 {
        return Ok(None);
    }
    get_agent(db, name).await
}

/// Deletes the agent named `name`; false when there was none.
pub(crate) async fn delete_agent(db: &Database, name: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM a2a_agents WHERE name = $1").bind(name).execute(db.pool()).await?;
    Ok(result.rows_affected() > 0)
}
