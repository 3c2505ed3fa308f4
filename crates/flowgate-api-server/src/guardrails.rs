//! `/api/guardrails`: the guardrail catalog. Built-ins are seeded at start; HTTP guardrails carry
//! a bearer token that is write-only: sealed with [`flowgate_common::secretbox`] before it is
//! stored, never selected back, shown only as `has_bearer_token`. Every write publishes the
//! guardrail's name on `guardrails:changed`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_common::secretbox;
use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, now_millis};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::error::{ApiError, is_unique_violation};
use crate::events::publish;
use crate::extract::{ApiJson, ApiQuery};
use crate::fields::Change;
use crate::guardrail_model::{
    CreateGuardrail, GuardrailFields, GuardrailRow, GuardrailView, ListGuardrails, PatchGuardrail, TokenChange,
    builtin_row, builtins, stages_text,
};
use crate::sql::update_by;
use crate::state::AppState;

use flowgate_contracts::channels::GUARDRAILS_CHANGED;

const COLUMNS: &str = "id, name, kind, description, stages, runtime_config, config_schema, default_on, fail_open, \
     http_url, http_timeout_ms, CAST(CASE WHEN http_token_sealed IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_token, \
     created_at, updated_at";

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound { kind: "guardrail", id: name.to_owned() }
}

fn row(row: &AnyRow) -> Result<GuardrailRow, sqlx::Error> {
    Ok(GuardrailRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        description: row.try_get("description")?,
        stages: row.try_get("stages")?,
        runtime_config: row.try_get("runtime_config")?,
        config_schema: row.try_get("config_schema")?,
        default_on: row.try_get("default_on")?,
        fail_open: row.try_get("fail_open")?,
        http_url: row.try_get("http_url")?,
        http_timeout_ms: row.try_get("http_timeout_ms")?,
        has_token: row.try_get("has_token")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts the built-in guardrails that are missing; existing rows (and their configuration) are
/// left alone, so it is safe on every start and from many replicas at once.
pub(crate) async fn seed_builtins(db: &Database) -> Result<u64, sqlx::Error> {
    let now = now_millis();
    let mut inserted = 0;
    for builtin in builtins() {
        let schema = crate::guardrail_model::kind_schema(builtin.kind).unwrap_or_default().to_string();
        let result = sqlx::query(
            "INSERT INTO guardrails (id, name, kind, description, stages, runtime_config, config_schema, default_on, \
             fail_open, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $9) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(builtin.name)
        .bind(builtin.kind.as_str())
        .bind(builtin.description)
        .bind(stages_text(builtin.stages))
        .bind(builtin.runtime_config.to_string())
        .bind(schema)
        .bind(now)
        .bind(now)
        .execute(db.pool())
        .await?;
        inserted += result.rows_affected();
    }
    Ok(inserted)
}

async fn get_row(db: &Database, name: &str) -> Result<Option<GuardrailRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM guardrails WHERE name = $1");
    let found = sqlx::query(&sql).bind(name).fetch_optional(db.pool()).await?;
    found.as_ref().map(row).transpose()
}

async fn insert(db: &Database, fields: &GuardrailFields, sealed: Option<Vec<u8>>) -> Result<GuardrailRow, sqlx::Error> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO guardrails (id, name, kind, description, stages, runtime_config, config_schema, default_on, \
         fail_open, http_url, http_timeout_ms, http_token_sealed, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&fields.name)
    .bind(fields.kind.as_str())
    .bind(&fields.description)
    .bind(&fields.stages)
    .bind(&fields.runtime_config)
    .bind(&fields.config_schema)
    .bind(i64::from(fields.default_on))
    .bind(i64::from(fields.fail_open))
    .bind(&fields.http_url)
    .bind(fields.http_timeout_ms)
    .bind(sealed)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_row(db, &fields.name).await?.ok_or(sqlx::Error::RowNotFound)
}

fn seal(state: &AppState, token: &secrecy::SecretString) -> Result<Vec<u8>, ApiError> {
    secretbox::seal(&state.seal_key, token.expose_secret()).map_err(ApiError::Seal)
}

/// The catalog.
#[derive(Debug, Serialize)]
pub(crate) struct GuardrailList {
    data: Vec<GuardrailView>,
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
    let created = insert(&state.database, &fields, sealed).await.map_err(|error| {
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
    let rows = match query.kind {
        Some(kind) => {
            let sql = format!("SELECT {COLUMNS} FROM guardrails WHERE kind = $1 ORDER BY name");
            sqlx::query(&sql).bind(kind.as_str()).fetch_all(state.database.pool()).await?
        }
        None => {
            let sql = format!("SELECT {COLUMNS} FROM guardrails ORDER BY name");
            sqlx::query(&sql).fetch_all(state.database.pool()).await?
        }
    };
    let data = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(GuardrailList { data: data.into_iter().map(GuardrailView::from).collect() }))
}

/// `GET /api/guardrails/{name}`.
#[tracing::instrument(name = "guardrails.get", skip_all, fields(guardrail = %name))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<GuardrailView>, ApiError> {
    let found = get_row(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
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
    let current = get_row(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    let (mut changes, token) = request.changes(&current.kind)?;
    match token {
        TokenChange::Keep => {}
        TokenChange::Clear => changes.push(Change::Bytes("http_token_sealed", None)),
        TokenChange::Set(token) => changes.push(Change::Bytes("http_token_sealed", Some(seal(&state, &token)?))),
    }
    if !changes.is_empty() && update_by("guardrails", "name", &name, changes).run(&state.database).await? == 0 {
        return Err(not_found(&name));
    }
    let updated = get_row(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    publish(&state, GUARDRAILS_CHANGED, &name).await;
    tracing::info!(guardrail = %name, "guardrail updated");
    Ok(Json(updated.into()))
}

/// `DELETE /api/guardrails/{name}` → 204. Built-ins cannot be deleted (409): turn them off by
/// leaving them out of key policies and `default_on: false`.
#[tracing::instrument(name = "guardrails.delete", skip_all, fields(guardrail = %name))]
pub(crate) async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let current = get_row(&state.database, &name).await?.ok_or_else(|| not_found(&name))?;
    if builtin_row(&current) {
        return Err(ApiError::Conflict(format!(
            "`{name}` is a built-in guardrail and cannot be deleted; set default_on to false and leave it out of key policies"
        )));
    }
    let result =
        sqlx::query("DELETE FROM guardrails WHERE name = $1").bind(&name).execute(state.database.pool()).await?;
    if result.rows_affected() == 0 {
        return Err(not_found(&name));
    }
    publish(&state, GUARDRAILS_CHANGED, &name).await;
    tracing::info!(guardrail = %name, "guardrail deleted");
    Ok(StatusCode::NO_CONTENT)
}
