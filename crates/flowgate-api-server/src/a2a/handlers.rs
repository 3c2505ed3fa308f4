//! `/api/admin/a2a/agents`: thin handlers over [`super::store`]. An agent's headers are sealed
//! here, before they reach the store; a name the config file declares is refused (409), as
//! config-file agents are read-only through the API.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_common::secretbox;
use flowgate_contracts::channels::A2A_AGENTS_CHANGED;
use secrecy::{ExposeSecret, SecretString};

use super::model::{AgentList, AgentView, CreateAgent, HeadersChange, PatchAgent};
use super::store;
use crate::error::{ApiError, is_unique_violation};
use crate::events::publish;
use crate::extract::ApiJson;
use crate::fields::{Change, list_text};
use crate::state::AppState;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound { kind: "A2A agent", id: name.to_owned() }
}

/// The headers sealed as one JSON object, and their names.
fn seal(state: &AppState, headers: &BTreeMap<String, SecretString>) -> Result<(Vec<u8>, String), ApiError> {
    let plain: BTreeMap<&str, &str> = headers.iter().map(|(k, v)| (k.as_str(), v.expose_secret())).collect();
    let text = SecretString::from(serde_json::to_string(&plain).unwrap_or_default());
    let sealed = secretbox::seal(&state.a2a_seal_key, text.expose_secret()).map_err(ApiError::Seal)?;
    let names: Vec<String> = headers.keys().cloned().collect();
    Ok((sealed, list_text(&names)))
}

fn configured(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.config_agents.iter().any(|n| n == name) {
        return Err(ApiError::Conflict(format!(
            "the A2A agent `{name}` is declared in the config file (a2a_agents) and cannot be changed through the API"
        )));
    }
    Ok(())
}

/// `POST /api/admin/a2a/agents` → 201.
#[tracing::instrument(name = "a2a_agents.create", skip_all, fields(agent))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateAgent>,
) -> Result<(StatusCode, Json<AgentView>), ApiError> {
    let fields = request.validate()?;
    tracing::Span::current().record("agent", fields.name.as_str());
    configured(&state, &fields.name)?;
    let (sealed, names) = match &fields.headers {
        Some(headers) => {
            let (sealed, names) = seal(&state, headers)?;
            (Some(sealed), names)
        }
        None => (None, "[]".to_owned()),
    };
    let (row, header_names) = store::insert_agent(&state.database, &fields, sealed, &names).await.map_err(|error| {
        if is_unique_violation(&error) {
            ApiError::Conflict(format!("an A2A agent named `{}` already exists", fields.name))
        } else {
            error.into()
        }
    })?;
    publish(&state, A2A_AGENTS_CHANGED, &row.name).await;
    tracing::info!(agent = %row.name, "A2A agent registered");
    Ok((StatusCode::CREATED, Json(AgentView::new(row, header_names))))
}

/// `GET /api/admin/a2a/agents`: every registered agent, by name.
#[tracing::instrument(name = "a2a_agents.list", skip_all)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<AgentList>, ApiError> {
    let rows = store::list_agents(&state.database).await?;
    Ok(Json(AgentList { data: rows.into_iter().map(|(row, names)| AgentView::new(row, names)).collect() }))
}

/// `GET /api/admin/a2a/agents/{name}`.
#[tracing::instrument(name = "a2a_agents.get", skip_all, fields(agent = %name))]
pub(crate) async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<AgentView>, ApiError> {
    let (row, names) = store::get_agent(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(AgentView::new(row, names)))
}

/// `PATCH /api/admin/a2a/agents/{name}`: absent fields stay, `null` clears; `headers` or
/// `bearer_token` replace every header.
#[tracing::instrument(name = "a2a_agents.patch", skip_all, fields(agent = %name))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PatchAgent>,
) -> Result<Json<AgentView>, ApiError> {
    configured(&state, &name)?;
    let (mut changes, headers) = request.changes()?;
    match headers {
        HeadersChange::Keep => {}
        HeadersChange::Clear => {
            changes.push(Change::Bytes("headers_sealed", None));
            changes.push(Change::Text("header_names", "[]".to_owned()));
        }
        HeadersChange::Set(headers) => {
            let (sealed, names) = seal(&state, &headers)?;
            changes.push(Change::Bytes("headers_sealed", Some(sealed)));
            changes.push(Change::Text("header_names", names));
        }
    }
    let (row, names) = store::update_agent(&state.database, &name, changes).await?.ok_or_else(|| not_found(&name))?;
    publish(&state, A2A_AGENTS_CHANGED, &name).await;
    tracing::info!(agent = %name, "A2A agent updated");
    Ok(Json(AgentView::new(row, names)))
}

/// `DELETE /api/admin/a2a/agents/{name}` → 204.
#[tracing::instrument(name = "a2a_agents.delete", skip_all, fields(agent = %name))]
pub(crate) async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    configured(&state, &name)?;
    if !store::delete_agent(&state.database, &name).await? {
        return Err(not_found(&name));
    }
    publish(&state, A2A_AGENTS_CHANGED, &name).await;
    tracing::info!(agent = %name, "A2A agent removed");
    Ok(StatusCode::NO_CONTENT)
}
