//! SQL for the registered MCP servers. The sealed headers are written here and never selected
//! back: reads learn only their names.

use flowgate_contracts::mcp::McpServerOptions;
use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, now_millis};

use super::model::{ServerFields, ServerRow};
use crate::fields::parse_list;

const COLUMNS: &str =
    "id, name, transport, url, description, header_names, options, timeout_secs, created_at, updated_at";

fn server_row(row: &AnyRow) -> Result<ServerRow, sqlx::Error> {
    let names: String = row.try_get("header_names")?;
    let options: String = row.try_get("options")?;
    Ok(ServerRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        transport: row.try_get("transport")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        header_names: parse_list(&names),
        options: McpServerOptions::from_text(&options).unwrap_or_default(),
        timeout_secs: row.try_get("timeout_secs")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The server named `name`.
pub(crate) async fn get_server(db: &Database, name: &str) -> Result<Option<ServerRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM mcp_servers WHERE name = $1");
    let found = sqlx::query(&sql).bind(name).fetch_optional(db.pool()).await?;
    found.as_ref().map(server_row).transpose()
}

/// Every registered server, by name.
pub(crate) async fn list_servers(db: &Database) -> Result<Vec<ServerRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM mcp_servers ORDER BY name");
    let rows = sqlx::query(&sql).fetch_all(db.pool()).await?;
    rows.iter().map(server_row).collect()
}

/// Inserts a server with its headers already sealed. A duplicate name is a unique violation.
pub(crate) async fn insert_server(
    db: &Database,
    fields: &ServerFields,
    sealed_headers: Option<Vec<u8>>,
    header_names: &str,
) -> Result<ServerRow, sqlx::Error> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO mcp_servers (id, name, transport, url, description, headers_sealed, header_names, options, \
         timeout_secs, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&fields.name)
    .bind(fields.transport.as_str())
    .bind(&fields.url)
    .bind(&fields.description)
    .bind(sealed_headers)
    .bind(header_names)
    .bind(fields.options.to_text())
    .bind(i64::try_from(fields.timeout_secs).unwrap_or(60))
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_server(db, &fields.name).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Replaces the server named `name` with `fields`; `sealed` is `Some` when its headers change.
/// `None` when there is no such server.
pub(crate) async fn update_server(
    db: &Database,
    fields: &ServerFields,
    sealed: Option<(Option<Vec<u8>>, String)>,
) -> Result<Option<ServerRow>, sqlx::Error> {
    let now = now_millis();
    let changed =
        match sealed {
            Some((headers, names)) => sqlx::query(
                "UPDATE mcp_servers SET transport = $1, url = $2, description = $3, options = $4, timeout_secs = $5, \
             headers_sealed = $6, header_names = $7, updated_at = $8 WHERE name = $9",
            )
            .bind(fields.transport.as_str())
            .bind(&fields.url)
            .bind(&fields.description)
            .bind(fields.options.to_text())
            .bind(i64::try_from(fields.timeout_secs).unwrap_or(60))
            .bind(headers)
            .bind(names)
            .bind(now)
            .bind(&fields.name)
            .execute(db.pool())
            .await?,
            None => sqlx::query(
                "UPDATE mcp_servers SET transport = $1, url = $2, description = $3, options = $4, timeout_secs = $5, \
             updated_at = $6 WHERE name = $7",
            )
            .bind(fields.transport.as_str())
            .bind(&fields.url)
            .bind(&fields.description)
            .bind(fields.options.to_text())
            .bind(i64::try_from(fields.timeout_secs).unwrap_or(60))
            .bind(now)
            .bind(&fields.name)
            .execute(db.pool())
            .await?,
        };
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    get_server(db, &fields.name).await
}

/// Deletes the server named `name`; false when there was none.
pub(crate) async fn delete_server(db: &Database, name: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM mcp_servers WHERE name = $1").bind(name).execute(db.pool()).await?;
    Ok(result.rows_affected() > 0)
}

/// One tool of the catalog the proxies wrote.
pub(crate) struct CatalogTool {
    pub(crate) server: String,
    pub(crate) tool: String,
    pub(crate) description: Option<String>,
    pub(crate) seen_at: i64,
}

/// The tool catalog, by server and tool; only `server`'s when given.
pub(crate) async fn catalog(db: &Database, server: Option<&str>) -> Result<Vec<CatalogTool>, sqlx::Error> {
    let rows = match server {
        Some(server) => sqlx::query(
            "SELECT server, tool, description, seen_at FROM mcp_tool_catalog WHERE server = $1 ORDER BY server, tool",
        )
        .bind(server)
        .fetch_all(db.pool())
        .await?,
        None => {
            sqlx::query("SELECT server, tool, description, seen_at FROM mcp_tool_catalog ORDER BY server, tool")
                .fetch_all(db.pool())
                .await?
        }
    };
    rows.iter()
        .map(|row| {
            Ok(CatalogTool {
                server: row.try_get("server")?,
                tool: row.try_get("tool")?,
                description: row.try_get("description")?,
                seen_at: row.try_get("seen_at")?,
            })
        })
        .collect()
}

/// A usable key's MCP lists and its tenant's.
pub(crate) struct KeyLists {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tenant_id: String,
    pub(crate) lists: flowgate_proto::keys::VirtualKey,
}

/// Every key that is neither revoked nor expired (only `key_id` when given), with its MCP lists.
pub(crate) async fn usable_keys(db: &Database, key_id: Option<&str>) -> Result<Vec<KeyLists>, sqlx::Error> {
    let sql = "SELECT k.id, k.name, k.tenant_id, k.mcp_servers, k.mcp_tools, k.mcp_denied_tools, \
               t.mcp_servers AS tenant_mcp_servers, t.mcp_tools AS tenant_mcp_tools, \
               t.mcp_denied_tools AS tenant_mcp_denied_tools \
               FROM virtual_keys k LEFT JOIN tenants t ON t.id = k.tenant_id \
               WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $1) AND ($2 = '' OR k.id = $3) \
               ORDER BY k.created_at, k.id";
    let id = key_id.unwrap_or_default();
    let rows = sqlx::query(sql).bind(now_millis()).bind(id).bind(id).fetch_all(db.pool()).await?;
    let list = |row: &AnyRow, column: &str| -> Result<Vec<String>, sqlx::Error> {
        Ok(parse_list(&row.try_get::<Option<String>, _>(column)?.unwrap_or_default()))
    };
    rows.iter()
        .map(|row| {
            Ok(KeyLists {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                tenant_id: row.try_get("tenant_id")?,
                lists: flowgate_proto::keys::VirtualKey {
                    mcp_servers: list(row, "mcp_servers")?,
                    mcp_tools: list(row, "mcp_tools")?,
                    mcp_denied_tools: list(row, "mcp_denied_tools")?,
                    tenant_mcp_servers: list(row, "tenant_mcp_servers")?,
                    tenant_mcp_tools: list(row, "tenant_mcp_tools")?,
                    tenant_mcp_denied_tools: list(row, "tenant_mcp_denied_tools")?,
                    ..flowgate_proto::keys::VirtualKey::default()
                },
            })
        })
        .collect()
}

/// Stores (or replaces) an owner's credential for `server`; its `updated_at`.
pub(crate) async fn put_credential(
    db: &Database,
    server: &str,
    owner_kind: &str,
    owner_id: &str,
    sealed: Vec<u8>,
    header_names: &str,
) -> Result<i64, sqlx::Error> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO mcp_credentials (server, owner_kind, owner_id, headers_sealed, header_names, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (server, owner_kind, owner_id) \
         DO UPDATE SET headers_sealed = $8, header_names = $9, updated_at = $10",
    )
    .bind(server)
    .bind(owner_kind)
    .bind(owner_id)
    .bind(sealed.clone())
    .bind(header_names)
    .bind(now)
    .bind(now)
    .bind(sealed)
    .bind(header_names)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(now)
}

/// Removes an owner's credential for `server`; false when there was none.
pub(crate) async fn delete_credential(
    db: &Database,
    server: &str,
    owner_kind: &str,
    owner_id: &str,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM mcp_credentials WHERE server = $1 AND owner_kind = $2 AND owner_id = $3")
        .bind(server)
        .bind(owner_kind)
        .bind(owner_id)
        .execute(db.pool())
        .await?;
    Ok(result.rows_affected() > 0)
}

/// The credentials for `server` (only key `key_id`'s when given): kind, id, header names, updated.
pub(crate) async fn list_credentials(
    db: &Database,
    server: &str,
    key_id: Option<&str>,
) -> Result<Vec<(String, String, String, i64)>, sqlx::Error> {
    let id = key_id.unwrap_or_default();
    let rows = sqlx::query(
        "SELECT owner_kind, owner_id, header_names, updated_at FROM mcp_credentials \
         WHERE server = $1 AND ($2 = '' OR (owner_kind = 'key' AND owner_id = $3)) ORDER BY owner_kind, owner_id",
    )
    .bind(server)
    .bind(id)
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("owner_kind")?,
                row.try_get("owner_id")?,
                row.try_get("header_names")?,
                row.try_get("updated_at")?,
            ))
        })
        .collect()
}
