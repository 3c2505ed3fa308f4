//! The tool catalog as this proxy sees it, written to the database (`mcp_tool_catalog`) for the
//! api-server's `GET /api/mcp/tools`, which cannot reach the upstream servers itself (stdio
//! servers run inside the proxies): every tool each upstream offers (its `allowed_tools` and
//! `disallowed_tools` applied), refreshed when the servers change and every 5 minutes. Every
//! replica writes the same rows (an upsert); a server that cannot be listed keeps its last rows,
//! whose `seen_at` tells how old they are; the rows of removed servers and vanished tools go.

use std::sync::Arc;
use std::time::Duration;

use flowgate_common::tasks::Tasks;
use flowgate_db::{Database, now_millis, sqlx};
use serde_json::Value;

use super::Gateway;

/// How often the catalog is written when nothing changed.
const REFRESH: Duration = Duration::from_secs(300);

/// Writes the catalog now and then, under `tasks`.
pub(super) fn start(gateway: Arc<Gateway>, database: Database, tasks: &Tasks) {
    tasks.spawn("mcp-tool-catalog", async move {
        loop {
            if let Err(error) = publish(&gateway, &database).await {
                tracing::warn!(%error, "cannot write the MCP tool catalog; the api-server shows the previous one");
            }
            tokio::select! {
                () = gateway.catalog_stale.notified() => {}
                () = tokio::time::sleep(REFRESH) => {}
            }
        }
    });
}

async fn publish(gateway: &Gateway, database: &Database) -> Result<(), sqlx::Error> {
    let servers = gateway.servers();
    let started = now_millis();
    for (name, server) in servers.iter() {
        let tools = match super::methods::upstream_tools(name, &server.upstream).await {
            Ok(tools) => tools,
            Err(error) => {
                tracing::warn!(server = %name, %error, "an MCP server's tools could not be listed for the catalog");
                continue;
            }
        };
        let seen = now_millis();
        for tool in &tools {
            let Some(bare) = tool.get("name").and_then(Value::as_str) else { continue };
            let offered = (server.allowed_tools.is_empty()
                || server.allowed_tools.iter().any(|p| super::access::glob(p, bare)))
                && !server.disallowed_tools.iter().any(|p| super::access::glob(p, bare));
            if !offered {
                continue;
            }
            let description = tool.get("description").and_then(Value::as_str);
            sqlx::query(
                "INSERT INTO mcp_tool_catalog (server, tool, description, seen_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (server, tool) DO UPDATE SET description = $5, seen_at = $6",
            )
            .bind(name.as_str())
            .bind(bare)
            .bind(description)
            .bind(seen)
            .bind(description)
            .bind(seen)
            .execute(database.pool())
            .await?;
        }
        // Tools this server no longer offers.
        sqlx::query("DELETE FROM mcp_tool_catalog WHERE server = $1 AND seen_at < $2")
            .bind(name.as_str())
            .bind(started)
            .execute(database.pool())
            .await?;
    }
    // Servers no longer configured (on this proxy; all replicas share the configuration).
    let names: Vec<String> = servers.keys().cloned().collect();
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT server FROM mcp_tool_catalog").fetch_all(database.pool()).await?;
    for gone in existing.iter().filter(|s| !names.contains(s)) {
        sqlx::query("DELETE FROM mcp_tool_catalog WHERE server = $1").bind(gone).execute(database.pool()).await?;
    }
    Ok(())
}
