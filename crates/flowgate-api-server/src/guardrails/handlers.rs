//! `/api/guardrails`: thin handlers over [`super::store`]. The bearer token of an HTTP guardrail
//! is sealed here, before it reaches the store.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_common::secretbox;
use flowgate_contracts::channels::GUARDRAILS_CHANGED;
use secrecy::{ExposeSecret, SecretString};

use super::model::{CreateGuardrail, GuardrailList, GuardrailView, ListGuardrails, PatchGuardrail, TokenChange};
use super::store;
use crate::error::{ApiError, is_unique_violation};
use crate::events::publish;
use crate::extract::{ApiJson, ApiQuery};
use crate::fields::Change;
use crate::state::AppState;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound { kind: "guardrail", id: name.to_owned() }
}

fn seal(state: &AppState, token: &SecretString) -> Result<Vec<u8>, ApiError> {
    secretbox::seal(&state.seal_key, token.expose_secret()).map_err(ApiError::Seal)
}

/// `POST /api/guardrails` → 201.
#[tracing::instrument(name = "guardrails.create", skip_all, fields(guardrail))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateGuardrail>,
) -> Result<(StatusCode, Json<GuardrailView>), ApiError> {
    let fields = request.validate()?;
    tracing::Span::current().record("guardrail", fields.name.as_str());
    let sealed = fields.bearer_token.as_ref().map(|token| seal(&state, token)).transpose()?;
    let created = store::insert_guardrail(&state.database, &fields, sealed).await.map_err(|error| {
        if is_unique_violation(&error) {
            ApiError::Conflict(format!("a guardrail named `{}` already exists", fields.name))
        } else {
            error.into()
        }
    })?;
    publish(&state, GUARDRAILS_CHANGED, &created.name).await;
    tracing::info!(guardrail = %created.name, kind = %created.kind, "guardrail created");
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// `GET /api/guardrails?kind=`: the whole catalog, by name.
#[tracing::instrument(name = "guardrails.list", skip_all)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListGuardrails>,
) -> Result<Json<GuardrailList>, ApiError> {
    let rows = store::list_guardrails(&state.database, query.kind).await?;
    Ok(Json(GuardrailList { data: rows.into_iter().map(GuardrailView::from).collect() }))
}

/// `GET /api/guardrails/{name}`.
#[tracing::instrument(name = "guardrails.get", skip_all, fields(guardrail = %name))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<GuardrailView>, ApiError> {
    let found = store::get_guardrail(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(found.into()))
}

/// `PATCH /api/guardrails/{name}`: absent fields stay, `null` resets; `bearer_token` replaces
/// (or with `null` removes) the sealed token.
#[tracing::instrument(name = "guardrails.patch", skip_all, fields(guardrail = %name))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PatchGuardrail>,
) -> Result<Json<GuardrailView>, ApiError> {
    let current = store::get_guardrail(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    let (mut changes, token) = request.changes(&current.kind)?;
    match token {
        TokenChange::Keep => {}
        TokenChange::Clear => changes.push(Change::Bytes("http_token_sealed", None)),
        TokenChange::Set(token) => changes.push(Change::Bytes("http_token_sealed", Some(seal(&state, &token)?))),
    }
    let updated = store::update_guardrail(&state.database, &name, changes).await?.ok_or_else(|| not_found(&name))?;
    publish(&state, GUARDRAILS_CHANGED, &name).await;
    tracing::info!(guardrail = %name, "guardrail updated");
    Ok(Json(updated.into()))
}

/// `DELETE /api/guardrails/{name}` → 204. Built-ins cannot be deleted (409): turn them off by
/// leaving them out of key policies and `default_on: false`.
#[tracing::instrument(name = "guardrails.delete", skip_all, fields(guardrail = %name))]
pub(crate) async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let current = store::get_guardrail(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    if current.is_builtin() {
        return Err(ApiError::Conflict(format!(
            "`{name}` is a built-in guardrail and cannot be deleted; set default_on to false and leave it out of key policies"
        )));
    }
    if !store::delete_guardrail(&state.database, &name).await? {
        return Err(not_found(&name));
    }
    publish(&state, GUARDRAILS_CHANGED, &name).await;
    tracing::info!(guardrail = %name, "guardrail deleted");
    Ok(StatusCode::NO_CONTENT)
}
