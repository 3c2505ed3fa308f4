//! `/api/credentials`: thin handlers over `flowgate_db::credentials`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_contracts::channels::ROUTING_CHANGED;
use flowgate_db::credentials::{self, Keyring};
use secrecy::SecretString;

use super::model::{CreateCredential, CredentialList, CredentialView, ReplaceCredential};
use crate::error::ApiError;
use crate::events::publish;
use crate::extract::ApiJson;
use crate::state::AppState;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound { kind: "credential", id: name.to_owned() }
}

fn keyring(state: &AppState) -> Result<&Keyring, ApiError> {
    state.keyring.as_deref().ok_or(ApiError::NoKek)
}

async fn store(
    state: &AppState,
    name: &str,
    value: &SecretString,
    description: Option<&str>,
) -> Result<(bool, CredentialView), ApiError> {
    let sealed = credentials::seal(keyring(state)?, name, value).await.map_err(ApiError::credential)?;
    let (created, revision) = credentials::put(&state.database, name, description, &sealed).await?;
    publish(state, ROUTING_CHANGED, &revision.to_string()).await;
    let info = credentials::get(&state.database, name).await?.ok_or_else(|| not_found(name))?;
    tracing::info!(credential = %name, kek = %info.kek_id, created, revision, "credential stored");
    Ok((created, info.into()))
}

/// `POST /api/credentials` → 201 (the value is never shown again).
#[tracing::instrument(name = "credentials.create", skip_all, fields(credential))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateCredential>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    let (name, value, description) = request.validate()?;
    tracing::Span::current().record("credential", name.as_str());
    keyring(&state)?;
    if credentials::get(&state.database, &name).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "a credential named `{name}` already exists (PUT /api/credentials/{name} replaces its value)"
        )));
    }
    let (_, view) = store(&state, &name, &value, description.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/credentials`.
#[tracing::instrument(name = "credentials.list", skip_all)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<CredentialList>, ApiError> {
    let rows = credentials::list(&state.database).await?;
    Ok(Json(CredentialList { data: rows.into_iter().map(CredentialView::from).collect() }))
}

/// `GET /api/credentials/{name}`.
#[tracing::instrument(name = "credentials.get", skip_all, fields(credential = %name))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CredentialView>, ApiError> {
    let info = credentials::get(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(info.into()))
}

/// `PUT /api/credentials/{name}`: a new value for an existing credential.
#[tracing::instrument(name = "credentials.replace", skip_all, fields(credential = %name))]
pub(crate) async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<ReplaceCredential>,
) -> Result<Json<CredentialView>, ApiError> {
    let (value, description) = request.validate()?;
    if credentials::get(&state.database, &name).await?.is_none() {
        return Err(not_found(&name));
    }
    let (_, view) = store(&state, &name, &value, description.as_deref()).await?;
    Ok(Json(view))
}

/// `DELETE /api/credentials/{name}` → 204; refused while a stored deployment uses it.
#[tracing::instrument(name = "credentials.delete", skip_all, fields(credential = %name))]
pub(crate) async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let reference = format!("\"{}{name}\"", flowgate_contracts::routing::CREDENTIAL_PREFIX);
    let (_, stored) = flowgate_db::routing::snapshot(&state.database).await?;
    if let Some(user) = stored.iter().find(|d| d.entry.contains(&reference)) {
        return Err(ApiError::Conflict(format!("credential `{name}` is used by deployment `{}`", user.id)));
    }
    let revision = credentials::delete(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    publish(&state, ROUTING_CHANGED, &revision.to_string()).await;
    tracing::info!(credential = %name, revision, "credential deleted");
    Ok(StatusCode::NO_CONTENT)
}
