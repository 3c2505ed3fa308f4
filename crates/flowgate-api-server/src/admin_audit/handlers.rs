//! `GET /api/admin/audit`.

use axum::Json;
use axum::extract::State;

use super::model::{AdminAuditCursor, AdminAuditQuery, AdminAuditRecord};
use super::store;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::fields::{Page, page_size};
use crate::state::AppState;

/// `GET /api/admin/audit?actor=&action=&target=&status=&from=&to=&limit=&cursor=`, newest first.
#[tracing::instrument(name = "admin_audit.list", skip_all)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AdminAuditQuery>,
) -> Result<Json<Page<AdminAuditRecord>>, ApiError> {
    let filter = query.filter()?;
    let limit = page_size(query.limit)?;
    let cursor = query.cursor.as_deref().map(AdminAuditCursor::decode).transpose()?;
    let (records, more) = store::fetch_page(&state.database, &filter, cursor.as_ref(), limit).await?;
    let next_cursor =
        if more { records.last().map(|r| AdminAuditCursor { ts: r.ts, id: r.id.clone() }.encode()) } else { None };
    Ok(Json(Page { data: records, next_cursor }))
}
