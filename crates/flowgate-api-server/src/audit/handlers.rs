//! `GET /api/audit` and `GET /api/audit/export`.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use flowgate_contracts::audit::AuditRecord;
use flowgate_db::{Database, now_millis};
use serde::Serialize;
use time::OffsetDateTime;

use super::model::{
    AuditCursor, AuditFilter, AuditItem, AuditQuery, CSV_COLUMNS, DEFAULT_LIMIT, EXPORT_CHUNK, ExportFormat,
    ExportQuery, MAX_LIMIT, next_cursor, render,
};
use super::store::fetch_page;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// One page of audit records.
#[derive(Debug, Serialize)]
pub(crate) struct AuditPage {
    items: Vec<AuditItem>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /api/audit?key_id=&tenant_id=&model=&status=&from=&to=&guardrail_action=&limit=&cursor=`.
#[tracing::instrument(name = "audit.list", skip_all, fields(rows))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let filter = AuditFilter::parse(query.params())?;
    let limit = match query.limit.unwrap_or(DEFAULT_LIMIT) {
        0 => return Err(ApiError::field("limit", "must be at least 1")),
        n if n > MAX_LIMIT => return Err(ApiError::field("limit", format!("must be at most {MAX_LIMIT}"))),
        n => n,
    };
    let cursor = query.cursor.as_deref().map(AuditCursor::decode).transpose()?;
    let (records, more) = if query.archived == Some(true) {
        super::archived::fetch_page(state.archive.as_deref(), &filter, cursor.as_ref(), limit).await?
    } else {
        fetch_page(&state.database, &filter, cursor.as_ref(), limit).await?
    };
    tracing::Span::current().record("rows", records.len());
    let next = next_cursor(&records, more).map(|c| c.encode());
    Ok(Json(AuditPage { items: records.into_iter().map(AuditItem::from).collect(), next_cursor: next }))
}

/// Where the export is: the rows fetched but not yet sent, and where the next fetch starts.
struct Export {
    database: Database,
    filter: Arc<AuditFilter>,
    format: ExportFormat,
    pending: Option<Vec<AuditRecord>>,
    cursor: Option<AuditCursor>,
    header: bool,
    done: bool,
    rows: u64,
}

impl Export {
    /// The next chunk of the body, or `None` at the end.
    async fn next_chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.done {
            return None;
        }
        let records = match self.pending.take() {
            Some(records) => records,
            None => match fetch_page(&self.database, &self.filter, self.cursor.as_ref(), EXPORT_CHUNK).await {
                Ok((records, more)) => {
                    self.cursor = next_cursor(&records, more);
                    records
                }
                Err(error) => {
                    // The 200 is already sent: abort the body so the client sees a failed
                    // transfer, never a silently short export.
                    tracing::error!(%error, rows = self.rows, "audit export failed mid-stream; aborting the response");
                    self.done = true;
                    return Some((Err(std::io::Error::other("audit export aborted: database error")), self));
                }
            },
        };
        let mut out = Vec::with_capacity(records.len() * 512 + 512);
        if self.header {
            self.header = false;
            if self.format == ExportFormat::Csv {
                out.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        self.rows += records.len() as u64;
        for record in records {
            render(self.format, &AuditItem::from(record), &mut out);
        }
        if self.cursor.is_none() {
            self.done = true;
            tracing::info!(rows = self.rows, "audit export finished");
        }
        Some((Ok(Bytes::from(out)), self))
    }
}

/// `GET /api/audit/export?format=csv|ndjson&...filters`: every matching row, newest first,
/// streamed in chunks of 1000 rows fetched by cursor (never the whole result in memory).
#[tracing::instrument(name = "audit.export", skip_all, fields(format))]
pub(crate) async fn export(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let filter = AuditFilter::parse(query.params())?;
    let format = query.format.unwrap_or_default();
    tracing::Span::current().record("format", tracing::field::debug(format));
    // The first chunk is fetched before the answer starts, so a database that is down is a
    // proper 503 rather than a broken 200.
    let (first, more) = fetch_page(&state.database, &filter, None, EXPORT_CHUNK).await?;
    let cursor = next_cursor(&first, more);
    let export = Export {
        database: state.database.clone(),
        filter: Arc::new(filter),
        format,
        pending: Some(first),
        cursor,
        header: true,
        done: false,
        rows: 0,
    };
    let stream = futures_util::stream::unfold(export, Export::next_chunk);
    let (content_type, extension) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    let stamp = OffsetDateTime::from_unix_timestamp(now_millis() / 1000)
        .map(|t| {
            format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_default();
    let disposition = format!("attachment; filename=\"flowgate-audit-{stamp}.{extension}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
