//! `/api/routing`: thin handlers over `flowgate_db::routing`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_contracts::channels::ROUTING_CHANGED;
use flowgate_contracts::routing::{HEALTH_KEY_PREFIX, HealthSnapshot};
use flowgate_db::routing;
use serde_json::Value;

use super::model::{CheckedEntry, DeploymentView, RoutingView, check_entry};
use crate::error::{ApiError, is_unique_violation};
use crate::events::publish;
use crate::extract::ApiJson;
use crate::state::AppState;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound { kind: "deployment", id: id.to_owned() }
}

fn read_only(state: &AppState, id: &str) -> Result<(), ApiError> {
    if state.file_deployments.contains(id) {
        return Err(ApiError::Conflict(format!(
            "deployment `{id}` is defined in the config file and is read-only here; change the file"
        )));
    }
    Ok(())
}

/// What the proxies report (snapshots younger than their TTL). A shared state that cannot be
/// read gives none: the routing is still answered.
async fn live(state: &AppState) -> Vec<HealthSnapshot> {
    match state.shared.values_with_prefix(HEALTH_KEY_PREFIX).await {
        Ok(values) => {
            let mut snapshots: Vec<HealthSnapshot> =
                values.into_iter().filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok()).collect();
            snapshots.sort_by(|a, b| a.instance.cmp(&b.instance));
            snapshots
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the proxies' deployment snapshots");
            Vec::new()
        }
    }
}

/// Every credential the entry names must exist.
async fn check_credentials(state: &AppState, checked: &CheckedEntry) -> Result<(), ApiError> {
    for name in &checked.credentials {
        if flowgate_db::credentials::get(&state.database, name).await?.is_none() {
            return Err(ApiError::field(
                "litellm_params.api_key",
                format!("credential `{name}` does not exist (create it with POST /api/credentials)"),
            ));
        }
    }
    Ok(())
}

async fn changed(state: &AppState, revision: i64) {
    publish(state, ROUTING_CHANGED, &revision.to_string()).await;
}

/// `GET /api/routing`: the revision, every model with its deployments (the file's, read-only,
/// and the stored ones) and what each live proxy reports about them.
#[tracing::instrument(name = "routing.list", skip_all)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<RoutingView>, ApiError> {
    let (revision, stored) = routing::snapshot(&state.database).await?;
    let live = live(&state).await;
    Ok(Json(RoutingView::new(revision, &state.file_deployments, &stored, &live)))
}

/// `POST /api/routing/deployments` with a `model_list` entry → 201.
#[tracing::instrument(name = "routing.create", skip_all, fields(deployment))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<DeploymentView>), ApiError> {
    let checked = check_entry(body, None)?;
    tracing::Span::current().record("deployment", checked.id.as_str());
    read_only(&state, &checked.id)?;
    check_credentials(&state, &checked).await?;
    let revision =
        routing::insert(&state.database, &checked.id, &checked.model_name, &checked.text).await.map_err(|error| {
            if is_unique_violation(&error) {
                ApiError::Conflict(format!("a deployment with id `{}` already exists", checked.id))
            } else {
                error.into()
            }
        })?;
    changed(&state, revision).await;
    tracing::info!(deployment = %checked.id, model = %checked.model_name, revision, ignored = ?checked.ignored, "deployment created");
    let row = routing::get(&state.database, &checked.id).await?.ok_or_else(|| not_found(&checked.id))?;
    Ok((StatusCode::CREATED, Json(DeploymentView::stored(&row, &live(&state).await))))
}

/// `GET /api/routing/deployments/{id}`: a stored deployment, or the file's (read-only).
#[tracing::instrument(name = "routing.get", skip_all, fields(deployment = %id))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    if let Some(view) = state.file_deployments.view(&id, &live(&state).await) {
        return Ok(Json(view));
    }
    let row = routing::get(&state.database, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(DeploymentView::stored(&row, &live(&state).await)))
}

/// `PUT /api/routing/deployments/{id}` with a whole new entry.
#[tracing::instrument(name = "routing.replace", skip_all, fields(deployment = %id))]
pub(crate) async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<DeploymentView>, ApiError> {
    read_only(&state, &id)?;
    let checked = check_entry(body, Some(&id))?;
    check_credentials(&state, &checked).await?;
    let revision = routing::replace(&state.database, &id, &checked.model_name, &checked.text)
        .await?
        .ok_or_else(|| not_found(&id))?;
    changed(&state, revision).await;
    tracing::info!(deployment = %id, model = %checked.model_name, revision, "deployment replaced");
    let row = routing::get(&state.database, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(DeploymentView::stored(&row, &live(&state).await)))
}

/// `DELETE /api/routing/deployments/{id}` → 204. Requests already running on it finish there.
#[tracing::instrument(name = "routing.delete", skip_all, fields(deployment = %id))]
pub(crate) async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    read_only(&state, &id)?;
    let revision = routing::delete(&state.database, &id).await?.ok_or_else(|| not_found(&id))?;
    changed(&state, revision).await;
    tracing::info!(deployment = %id, revision, "deployment deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/routing/models/{name}` → 204: every stored deployment of the model (the file's
/// stay).
#[tracing::instrument(name = "routing.delete_model", skip_all, fields(model = %name))]
pub(crate) async fn delete_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let revision = routing::delete_model(&state.database, &name)
        .await?
        .ok_or(ApiError::NotFound { kind: "model with stored deployments", id: name.clone() })?;
    changed(&state, revision).await;
    tracing::info!(model = %name, revision, "model's stored deployments deleted");
    Ok(StatusCode::NO_CONTENT)
}
