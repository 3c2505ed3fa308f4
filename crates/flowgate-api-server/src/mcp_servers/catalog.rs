//! `GET /api/mcp/tools`: the MCP tool catalog with the keys that may use each tool. The tools are
//! those the proxies last listed from their upstream servers (`mcp_tool_catalog`, written by each
//! proxy when its servers change and every 5 minutes: the api-server does not reach upstream
//! servers itself, as stdio servers run inside the proxies); the keys are the usable ones, judged
//! by the same rules the proxies apply (`flowgate_contracts::mcp_access`).

use axum::Json;
use axum::extract::State;
use flowgate_contracts::mcp_access::KeyAccess;
use serde::{Deserialize, Serialize};

use super::store;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::fields::rfc3339;
use crate::state::AppState;

/// `?server=&key_id=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogQuery {
    /// Only this server's tools.
    server: Option<String>,
    /// Only this key (is it allowed each tool?).
    key_id: Option<String>,
}

/// A key allowed to use a tool.
#[derive(Debug, Serialize)]
struct AllowedKey {
    id: String,
    name: String,
    tenant_id: String,
}

/// One tool.
#[derive(Debug, Serialize)]
struct CatalogEntry {
    /// `server__tool`, as clients of `/api/mcp` call it.
    name: String,
    server: String,
    tool: String,
    description: Option<String>,
    /// When a proxy last saw the server offer it.
    seen_at: String,
    keys: Vec<AllowedKey>,
}

/// The catalog.
#[derive(Debug, Serialize)]
pub(crate) struct Catalog {
    data: Vec<CatalogEntry>,
}

/// `GET /api/mcp/tools`.
#[tracing::instrument(name = "mcp_tools.catalog", skip_all)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CatalogQuery>,
) -> Result<Json<Catalog>, ApiError> {
    let tools = store::catalog(&state.database, query.server.as_deref()).await?;
    let keys = store::usable_keys(&state.database, query.key_id.as_deref()).await?;
    let data = tools
        .into_iter()
        .map(|tool| {
            let allowed = keys
                .iter()
                .filter(|key| KeyAccess::of(&key.lists).tool(&tool.server, &tool.tool, &[], &[]).is_ok())
                .map(|key| AllowedKey { id: key.id.clone(), name: key.name.clone(), tenant_id: key.tenant_id.clone() })
                .collect();
            CatalogEntry {
                name: format!("{}__{}", tool.server, tool.tool),
                seen_at: rfc3339(tool.seen_at),
                server: tool.server,
                tool: tool.tool,
                description: tool.description,
                keys: allowed,
            }
        })
        .collect();
    Ok(Json(Catalog { data }))
}
