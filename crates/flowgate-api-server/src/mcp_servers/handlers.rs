//! `/api/admin/mcp/servers`: thin handlers over [`super::store`]. A server's headers are sealed
//! here, before they reach the store; a name the config file declares is refused (409), as
//! config-file servers are read-only through the API.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_common::secretbox;
use flowgate_contracts::channels::MCP_SERVERS_CHANGED;
use secrecy::{ExposeSecret, SecretString};

use super::model::{CreateServer, PatchServer, ServerFields, ServerList, ServerView, Transport};
use super::store;
use crate::error::{ApiError, is_unique_violation};
use crate::events::publish;
use crate::extract::ApiJson;
use crate::fields::list_text;
use crate::state::AppState;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound { kind: "MCP server", id: name.to_owned() }
}

/// The headers sealed as one JSON object (none: `None`), and their names.
fn seal(state: &AppState, headers: &BTreeMap<String, SecretString>) -> Result<(Option<Vec<u8>>, String), ApiError> {
    if headers.is_empty() {
        return Ok((None, "[]".to_owned()));
    }
    let plain: BTreeMap<&str, &str> = headers.iter().map(|(k, v)| (k.as_str(), v.expose_secret())).collect();
    let text = SecretString::from(serde_json::to_string(&plain).unwrap_or_default());
    let sealed = secretbox::seal(&state.mcp_seal_key, text.expose_secret()).map_err(ApiError::Seal)?;
    let names: Vec<String> = headers.keys().cloned().collect();
    Ok((Some(sealed), list_text(&names)))
}

fn configured(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.config_mcp_servers.iter().any(|n| n == name) {
        return Err(ApiError::Conflict(format!(
            "the MCP server `{name}` is declared in the config file (mcp_servers) and cannot be changed through the API"
        )));
    }
    Ok(())
}

/// `POST /api/admin/mcp/servers` → 201.
#[tracing::instrument(name = "mcp_servers.create", skip_all, fields(server))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateServer>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let fields = request.validate()?;
    tracing::Span::current().record("server", fields.name.as_str());
    configured(&state, &fields.name)?;
    let (sealed, names) = seal(&state, &fields.headers)?;
    let row = store::insert_server(&state.database, &fields, sealed, &names).await.map_err(|error| {
        if is_unique_violation(&error) {
            ApiError::Conflict(format!("an MCP server named `{}` already exists", fields.name))
        } else {
            error.into()
        }
    })?;
    publish(&state, MCP_SERVERS_CHANGED, &row.name).await;
    tracing::info!(server = %row.name, "MCP server registered");
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// `GET /api/admin/mcp/servers`: every registered server, by name.
#[tracing::instrument(name = "mcp_servers.list", skip_all)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<ServerList>, ApiError> {
    let rows = store::list_servers(&state.database).await?;
    Ok(Json(ServerList { data: rows.into_iter().map(ServerView::from).collect() }))
}

/// `GET /api/admin/mcp/servers/{name}`.
#[tracing::instrument(name = "mcp_servers.get", skip_all, fields(server = %name))]
pub(crate) async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<ServerView>, ApiError> {
    let row = store::get_server(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(row.into()))
}

/// `PATCH /api/admin/mcp/servers/{name}`: absent fields stay, `null` clears; `headers` or
/// `bearer_token` replace every header.
#[tracing::instrument(name = "mcp_servers.patch", skip_all, fields(server = %name))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PatchServer>,
) -> Result<Json<ServerView>, ApiError> {
    configured(&state, &name)?;
    let row = store::get_server(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    let current = ServerFields {
        name: row.name,
        transport: if row.transport == "sse" { Transport::Sse } else { Transport::Http },
        url: row.url,
        description: row.description,
        // Kept sealed unless the patch replaces them (their names were checked when written).
        headers: BTreeMap::new(),
        options: row.options,
        timeout_secs: row
            .timeout_secs
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(super::model::DEFAULT_TIMEOUT_SECS),
    };
    let (fields, headers_changed) = request.apply(current)?;
    let sealed = if headers_changed { Some(seal(&state, &fields.headers)?) } else { None };
    let updated = store::update_server(&state.database, &fields, sealed).await?.ok_or_else(|| not_found(&name))?;
    publish(&state, MCP_SERVERS_CHANGED, &name).await;
    tracing::info!(server = %name, "MCP server updated");
    Ok(Json(updated.into()))
}

/// `DELETE /api/admin/mcp/servers/{name}` → 204.
#[tracing::instrument(name = "mcp_servers.delete", skip_all, fields(server = %name))]
pub(crate) async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    configured(&state, &name)?;
    if !store::delete_server(&state.database, &name).await? {
        return Err(not_found(&name));
    }
    publish(&state, MCP_SERVERS_CHANGED, &name).await;
    tracing::info!(server = %name, "MCP server removed");
    Ok(StatusCode::NO_CONTENT)
}
