//! `/api/enterprise/vkeys`: virtual keys. Thin handlers over [`super::store`].
//!
//! The plaintext key exists only in the responses to create and rotate; the database holds its
//! keyed hash. Every change that affects how the proxy treats a key (patch, revoke, rotate,
//! delete) publishes the key id on `keys:invalidate`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use flowgate_common::budget::period_bounds;
use flowgate_common::keys::{self, KeyHasher};
use flowgate_db::{Database, now_millis};
use secrecy::ExposeSecret;

use super::model::{
    BudgetView, CreateKey, KeyFields, KeyView, KeyWithSecret, ListQuery, MAX_GRACE_SECS, PatchKey, RotateKey,
};
use super::store::{self, Rotated};
use crate::access::Scope;
use crate::error::{ApiError, is_unique_violation};
use crate::events::invalidate;
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::fields::{Cursor, Page, page_size};
use crate::state::AppState;
use crate::tenants::store as tenants;

const KIND: &str = "virtual key";

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound { kind: KIND, id: id.to_owned() }
}

/// Generates a key, stores its hash and returns it with its plaintext. Retries on the
/// (astronomically unlikely) collision of a generated id.
async fn insert_new_key(
    database: &Database,
    hasher: &KeyHasher,
    tenant_id: &str,
    fields: &KeyFields,
) -> Result<KeyWithSecret, ApiError> {
    let mut attempts = 0;
    loop {
        let generated = keys::generate()?;
        let hash = hasher.hash(generated.plaintext.expose_secret());
        match store::insert_key(database, &generated.id, tenant_id, &hash, fields).await {
            Ok(row) => return Ok(KeyWithSecret::new(&generated.plaintext, KeyView::new(row, now_millis()))),
            Err(error) if is_unique_violation(&error) && attempts < 3 => attempts += 1,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Refuses a key the caller's tenant scope does not see (as `not_found`, so other tenants' key
/// ids are not confirmed).
async fn ensure_visible(database: &Database, scope: &Scope, id: &str) -> Result<(), ApiError> {
    if !scope.is_confined() {
        return Ok(());
    }
    match store::get_key(database, id).await? {
        Some(row) if scope.sees(&row.tenant_id) => Ok(()),
        _ => Err(not_found(id)),
    }
}

/// The tenant a new key goes to: the one named, which must exist, or `default`.
async fn tenant_for(database: &Database, tenant_id: Option<&str>) -> Result<String, ApiError> {
    match tenant_id.map(str::trim) {
        Some(id) => match tenants::get_tenant(database, id).await? {
            Some(tenant) => Ok(tenant.id),
            None => Err(ApiError::field("tenant_id", format!("no tenant has id `{id}`"))),
        },
        None => Ok(tenants::default_tenant(database).await?.id),
    }
}

/// `POST /api/enterprise/vkeys` → 201 with the key, shown this once.
#[tracing::instrument(name = "vkeys.create", skip_all, fields(key_id, tenant_id))]
pub(crate) async fn create(
    State(state): State<AppState>,
    scope: Scope,
    ApiJson(request): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<KeyWithSecret>), ApiError> {
    let fields = request.validate()?;
    let tenant_asked = scope.tenant_filter(request.tenant_id.as_deref())?;
    let tenant_id = tenant_for(&state.database, tenant_asked.as_deref()).await?;
    let created = insert_new_key(&state.database, &state.hasher, &tenant_id, &fields).await?;
    let span = tracing::Span::current();
    span.record("key_id", created.id());
    span.record("tenant_id", tenant_id.as_str());
    tracing::info!(key_id = created.id(), tenant_id, "virtual key created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /api/enterprise/vkeys?tenant_id=&limit=&cursor=`.
#[tracing::instrument(name = "vkeys.list", skip_all)]
pub(crate) async fn list(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Page<KeyView>>, ApiError> {
    let limit = page_size(query.limit)?;
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let tenant = scope.tenant_filter(query.tenant_id.as_deref())?;
    let (rows, more) = store::list_keys(&state.database, tenant.as_deref(), cursor.as_ref(), limit).await?;
    let next_cursor = if more {
        rows.last().map(|row| Cursor { created_at: row.created_at, id: row.id.clone() }.encode())
    } else {
        None
    };
    let now = now_millis();
    Ok(Json(Page { data: rows.into_iter().map(|row| KeyView::new(row, now)).collect(), next_cursor }))
}

/// `GET /api/enterprise/vkeys/{id}`: every field but the key and its hash.
#[tracing::instrument(name = "vkeys.get", skip_all, fields(key_id = %id))]
pub(crate) async fn get(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let row = store::get_key(&state.database, &id)
        .await?
        .filter(|row| scope.sees(&row.tenant_id))
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(KeyView::new(row, now_millis())))
}

/// `PATCH /api/enterprise/vkeys/{id}`: absent fields stay, `null` clears.
#[tracing::instrument(name = "vkeys.patch", skip_all, fields(key_id = %id))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<PatchKey>,
) -> Result<Json<KeyView>, ApiError> {
    let mut changes = request.changes()?;
    ensure_visible(&state.database, &scope, &id).await?;
    if let Some(tenant) = request.new_tenant()? {
        let tenant = scope.tenant_filter(Some(&tenant))?.unwrap_or(tenant);
        let tenant = tenant_for(&state.database, Some(&tenant)).await?;
        changes.push(crate::fields::Change::Text("tenant_id", tenant));
    }
    let row = store::update_key(&state.database, &id, changes).await?.ok_or_else(|| not_found(&id))?;
    invalidate(&state, &id).await;
    tracing::info!(key_id = %id, "virtual key updated");
    Ok(Json(KeyView::new(row, now_millis())))
}

/// `DELETE /api/enterprise/vkeys/{id}` → 204. Spend already recorded is kept.
#[tracing::instrument(name = "vkeys.delete", skip_all, fields(key_id = %id))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ensure_visible(&state.database, &scope, &id).await?;
    if !store::delete_key(&state.database, &id).await? {
        return Err(not_found(&id));
    }
    invalidate(&state, &id).await;
    tracing::info!(key_id = %id, "virtual key deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/enterprise/vkeys/{id}/revoke`: idempotent; the key stops working at once.
#[tracing::instrument(name = "vkeys.revoke", skip_all, fields(key_id = %id))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    ensure_visible(&state.database, &scope, &id).await?;
    let row = store::revoke_key(&state.database, &id).await?.ok_or_else(|| not_found(&id))?;
    invalidate(&state, &id).await;
    tracing::info!(key_id = %id, "virtual key revoked");
    Ok(Json(KeyView::new(row, now_millis())))
}

/// `POST /api/enterprise/vkeys/{id}/rotate` with an optional `{"grace_period_secs": n}`: a new
/// key, shown this once; the old one works for the grace period, or stops at once without one.
#[tracing::instrument(name = "vkeys.rotate", skip_all, fields(key_id = %id))]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<RotateKey>,
) -> Result<Json<KeyWithSecret>, ApiError> {
    ensure_visible(&state.database, &scope, &id).await?;
    let grace = request.grace_period_secs.unwrap_or(0);
    if grace > MAX_GRACE_SECS {
        return Err(ApiError::field("grace_period_secs", format!("must be at most {MAX_GRACE_SECS} (30 days)")));
    }
    let now = now_millis();
    #[expect(clippy::cast_possible_wrap, reason = "bounded by MAX_GRACE_SECS above")]
    let previous_expires_at = (grace > 0).then(|| now + grace as i64 * 1000);
    // Validate the id before generating a key for it: key ids have a fixed alphabet and length.
    let generated = keys::generate_for(&id)?;
    if keys::parse(generated.plaintext.expose_secret()).is_err() {
        return Err(not_found(&id));
    }
    let hash = state.hasher.hash(generated.plaintext.expose_secret());
    match store::rotate_key(&state.database, &id, &hash, previous_expires_at).await? {
        Rotated::Done(row) => {
            invalidate(&state, &id).await;
            tracing::info!(key_id = %id, grace_period_secs = grace, "virtual key rotated");
            Ok(Json(KeyWithSecret::new(&generated.plaintext, KeyView::new(*row, now_millis()))))
        }
        Rotated::Missing => Err(not_found(&id)),
        Rotated::Revoked => Err(ApiError::Conflict(format!("virtual key `{id}` is revoked and cannot be rotated"))),
    }
}

/// `GET /api/enterprise/vkeys/{id}/budget`: budget, settled spend and what remains in the current
/// period.
#[tracing::instrument(name = "vkeys.budget", skip_all, fields(key_id = %id))]
pub(crate) async fn budget(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<BudgetView>, ApiError> {
    let row = store::get_key(&state.database, &id)
        .await?
        .filter(|row| scope.sees(&row.tenant_id))
        .ok_or_else(|| not_found(&id))?;
    let bounds = period_bounds(row.period(), now_millis());
    let spend = store::key_spend(&state.database, &id, bounds.0).await?;
    Ok(Json(BudgetView::new(&row, spend, bounds)))
}

/// What `flowgate init` did.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Bootstrap {
    /// The default tenant exists and a first key was created (its plaintext is shown this once).
    Created {
        /// The default tenant's id.
        tenant_id: String,
        /// The new key, with its plaintext.
        key: Box<KeyWithSecret>,
    },
    /// Keys already exist: nothing was created.
    AlreadyInitialised {
        /// How many keys exist.
        keys: i64,
    },
}

/// `flowgate init`: ensures the `default` tenant and, when no key exists yet, creates a first key
/// in it. The database must be migrated.
pub async fn bootstrap(database: &Database, hasher: &KeyHasher) -> Result<Bootstrap, ApiError> {
    let existing = store::count_keys(database).await?;
    if existing > 0 {
        return Ok(Bootstrap::AlreadyInitialised { keys: existing });
    }
    let tenant = tenants::default_tenant(database).await?;
    let key = insert_new_key(database, hasher, &tenant.id, &KeyFields::named("first key (flowgate init)")).await?;
    tracing::info!(key_id = key.id(), tenant_id = %tenant.id, "first virtual key created by flowgate init");
    Ok(Bootstrap::Created { tenant_id: tenant.id, key: Box::new(key) })
}
