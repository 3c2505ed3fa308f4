//! `GET /api/alerts`: a thin handler over [`super::store`].

use axum::Json;
use axum::extract::State;

use super::model::{AlertQuery, AlertView};
use super::store;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::fields::{Cursor, Page, page_size};
use crate::state::AppState;

/// `GET /api/alerts?status=&kind=&tenant_id=&limit=&cursor=`: alerts oldest first, each with its
/// delivery attempts.
#[tracing::instrument(name = "alerts.list", skip_all)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AlertQuery>,
) -> Result<Json<Page<AlertView>>, ApiError> {
    let limit = page_size(query.limit)?;
    let filter = query.filter()?;
    let (rows, more) = store::list_alerts(&state.database, &filter, limit).await?;
    let next_cursor = if more {
        rows.last().map(|row| Cursor { created_at: row.created_at, id: row.id.clone() }.encode())
    } else {
        None
    };
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        let deliveries = store::deliveries(&state.database, &row.id).await?;
        data.push(AlertView::new(row, deliveries));
    }
    Ok(Json(Page { data, next_cursor }))
}
