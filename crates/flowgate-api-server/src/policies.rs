//! `/api/policies`: policy rule sets, validated on write (see [`crate::policy_model`]) and
//! versioned: every new document bumps `version`. Every write publishes the policy's name on
//! `policies:changed`, so policy services reload it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, now_millis};
use serde::Serialize;

use crate::error::{ApiError, is_unique_violation};
use crate::events::publish;
use crate::extract::ApiJson;
use crate::policy_model::{CreatePolicy, PatchPolicy, PolicyRow, PolicyView};
use crate::state::AppState;

use flowgate_contracts::channels::POLICIES_CHANGED;

const COLUMNS: &str = "id, name, version, document, created_at, updated_at";

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound { kind: "policy", id: name.to_owned() }
}

fn row(row: &AnyRow) -> Result<PolicyRow, sqlx::Error> {
    Ok(PolicyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        document: row.try_get("document")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn get_row(db: &Database, name: &str) -> Result<Option<PolicyRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM policies WHERE name = $1");
    let found = sqlx::query(&sql).bind(name).fetch_optional(db.pool()).await?;
    found.as_ref().map(row).transpose()
}

/// Every policy.
#[derive(Debug, Serialize)]
pub(crate) struct PolicyList {
    data: Vec<PolicyView>,
}

/// `POST /api/policies` → 201 with version 1.
#[tracing::instrument(name = "policies.create", skip_all, fields(policy))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreatePolicy>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    let (name, document) = request.validate()?;
    tracing::Span::current().record("policy", name.as_str());
    let now = now_millis();
    sqlx::query(
        "INSERT INTO policies (id, name, version, document, created_at, updated_at) VALUES ($1, $2, 1, $3, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&name)
    .bind(&document)
    .bind(now)
    .bind(now)
    .execute(state.database.pool())
    .await
    .map_err(|error| {
        if is_unique_violation(&error) {
            ApiError::Conflict(format!("a policy named `{name}` already exists"))
        } else {
            error.into()
        }
    })?;
    let created = get_row(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    publish(&state, POLICIES_CHANGED, &name).await;
    tracing::info!(policy = %name, "policy created");
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// `GET /api/policies`: every policy, by name.
#[tracing::instrument(name = "policies.list", skip_all)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<PolicyList>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM policies ORDER BY name");
    let rows = sqlx::query(&sql).fetch_all(state.database.pool()).await?;
    let data = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(PolicyList { data: data.into_iter().map(PolicyView::from).collect() }))
}

/// `GET /api/policies/{name}`.
#[tracing::instrument(name = "policies.get", skip_all, fields(policy = %name))]
pub(crate) async fn get(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<PolicyView>, ApiError> {
    let found = get_row(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
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
    if get_row(&state.database, &name).await?.is_none() {
        return Err(not_found(&name));
    }
    if let Some(document) = request.document(&name)? {
        let result =
            sqlx::query("UPDATE policies SET document = $1, version = version + 1, updated_at = $2 WHERE name = $3")
                .bind(&document)
                .bind(now_millis())
                .bind(&name)
                .execute(state.database.pool())
                .await?;
        if result.rows_affected() == 0 {
            return Err(not_found(&name));
        }
        publish(&state, POLICIES_CHANGED, &name).await;
        tracing::info!(policy = %name, "policy updated");
    }
    let updated = get_row(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    Ok(Json(updated.into()))
}

/// `DELETE /api/policies/{name}` → 204.
#[tracing::instrument(name = "policies.delete", skip_all, fields(policy = %name))]
pub(crate) async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let result = sqlx::query("DELETE FROM policies WHERE name = $1").bind(&name).execute(state.database.pool()).await?;
    if result.rows_affected() == 0 {
        return Err(not_found(&name));
    }
    publish(&state, POLICIES_CHANGED, &name).await;
    tracing::info!(policy = %name, "policy deleted");
    Ok(StatusCode::NO_CONTENT)
}
