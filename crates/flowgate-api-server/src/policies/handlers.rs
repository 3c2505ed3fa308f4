//! `/api/policies`: thin handlers over [`super::store`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_contracts::channels::POLICIES_CHANGED;

use super::model::{CreatePolicy, PatchPolicy, PolicyList, PolicyView};
use super::store;
use crate::error::{ApiError, is_unique_violation};
use crate::events::publish;
use crate::extract::ApiJson;
use crate::state::AppState;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound { kind: "policy", id: name.to_owned() }
}

/// `POST /api/policies` → 201 with version 1.
#[tracing::instrument(name = "policies.create", skip_all, fields(policy))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreatePolicy>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    let (name, document) = request.validate()?;
    tracing::Span::current().record("policy", name.as_str());
    let created = store::insert_policy(&state.database, &name, &document)
        .await
        .map_err(|error| {
            if is_unique_violation(&error) {
                ApiError::Conflict(format!("a policy named `{name}` already exists"))
            } else {
                error.into()
            }
        })?
        .ok_or_else(|| not_found(&name))?;
    publish(&state, POLICIES_CHANGED, &name).await;
    tracing::info!(policy = %name, "policy created");
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// `GET /api/policies`: every policy, by name.
#[tracing::instrument(name = "policies.list", skip_all)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<PolicyList>, ApiError> {
    let rows = store::list_policies(&state.database).await?;
    Ok(Json(PolicyList { data: rows.into_iter().map(PolicyView::from).collect() }))
}

/// `GET /api/policies/{name}`.
#[tracing::instrument(name = "policies.get", skip_all, fields(policy = %name))]
pub(crate) async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<PolicyView>, ApiError> {
    let found = store::get_policy(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(found.into()))
}

/// `PATCH /api/policies/{name}` with `{"document": {...}}`: replaces the document and bumps
/// `version` (atomically, in one UPDATE).
#[tracing::instrument(name = "policies.patch", skip_all, fields(policy = %name))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PatchPolicy>,
) -> Result<Json<PolicyView>, ApiError> {
    if store::get_policy(&state.database, &name).await?.is_none() {
        return Err(not_found(&name));
    }
    if let Some(document) = request.document(&name)? {
        if !store::replace_document(&state.database, &name, &document).await? {
            return Err(not_found(&name));
        }
        publish(&state, POLICIES_CHANGED, &name).await;
        tracing::info!(policy = %name, "policy updated");
    }
    let updated = store::get_policy(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(updated.into()))
}

/// `DELETE /api/policies/{name}` → 204.
#[tracing::instrument(name = "policies.delete", skip_all, fields(policy = %name))]
pub(crate) async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    if !store::delete_policy(&state.database, &name).await? {
        return Err(not_found(&name));
    }
    publish(&state, POLICIES_CHANGED, &name).await;
    tracing::info!(policy = %name, "policy deleted");
    Ok(StatusCode::NO_CONTENT)
}
