//! `/api/enterprise/tenants`: tenants own keys and may carry a budget of their own. Thin handlers
//! over [`super::store`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::model::{CreateTenant, PatchTenant, TenantView};
use super::store;
use crate::access::Scope;
use crate::error::{ApiError, is_unique_violation};
use crate::extract::{ApiJson, ApiQuery};
use crate::fields::{Cursor, Page, PageQuery, page_size};
use crate::state::AppState;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound { kind: "tenant", id: id.to_owned() }
}

fn duplicate_name(error: flowgate_db::sqlx::Error) -> ApiError {
    if is_unique_violation(&error) {
        ApiError::Conflict("a tenant with this name already exists".to_owned())
    } else {
        error.into()
    }
}

/// `POST /api/enterprise/tenants` → 201.
#[tracing::instrument(name = "tenants.create", skip_all, fields(tenant_id))]
pub(crate) async fn create(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let fields = request.validate()?;
    let row = store::insert_tenant(&state.database, &fields).await.map_err(duplicate_name)?;
    tracing::Span::current().record("tenant_id", row.id.as_str());
    tracing::info!(tenant_id = %row.id, "tenant created");
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// `GET /api/enterprise/tenants?limit=&cursor=`.
#[tracing::instrument(name = "tenants.list", skip_all)]
pub(crate) async fn list(
    State(state): State<AppState>,
    scope: Scope,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<TenantView>>, ApiError> {
    let limit = page_size(query.limit)?;
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    if let Some(own) = scope.tenant_filter(None)? {
        // A confined caller's list is its one tenant.
        let rows = store::get_tenant(&state.database, &own).await?.filter(|_| cursor.is_none());
        return Ok(Json(Page { data: rows.into_iter().map(TenantView::from).collect(), next_cursor: None }));
    }
    let (rows, more) = store::list_tenants(&state.database, cursor.as_ref(), limit).await?;
    let next_cursor = if more {
        rows.last().map(|row| Cursor { created_at: row.created_at, id: row.id.clone() }.encode())
    } else {
        None
    };
    Ok(Json(Page { data: rows.into_iter().map(TenantView::from).collect(), next_cursor }))
}

/// `GET /api/enterprise/tenants/{id}`.
#[tracing::instrument(name = "tenants.get", skip_all, fields(tenant_id = %id))]
pub(crate) async fn get(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    let row = store::get_tenant(&state.database, &id)
        .await?
        .filter(|row| scope.sees(&row.id))
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(row.into()))
}

/// `PATCH /api/enterprise/tenants/{id}`: absent fields stay, `null` clears.
#[tracing::instrument(name = "tenants.patch", skip_all, fields(tenant_id = %id))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<PatchTenant>,
) -> Result<Json<TenantView>, ApiError> {
    let changes = request.changes()?;
    let row = store::update_tenant(&state.database, &id, changes)
        .await
        .map_err(duplicate_name)?
        .ok_or_else(|| not_found(&id))?;
    tracing::info!(tenant_id = %id, "tenant updated");
    // Proxies cache the tenant's budget with each of its keys.
    crate::events::invalidate(&state, &format!("tenant:{id}")).await;
    Ok(Json(row.into()))
}
