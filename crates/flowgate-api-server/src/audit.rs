//! `/api/audit`: the audit trail the proxies write (one row per request in `audit_records`),
//! queried with filters and keyset paging, or exported whole as CSV or NDJSON.
//!
//! Order is newest first by `(ts, request_id)`, descending. A cursor is the opaque base64url of
//! the last row's `[ts, request_id]`; the next page holds rows strictly after it in that order, so
//! rows inserted while a client pages never shift a page, and no row is returned twice.
//!
//! This module only reads the table.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, now_millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::fields::{rfc3339, usd};
use crate::sql::Sql;
use crate::state::AppState;

/// Page size when `limit` is absent, and the largest accepted.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
pub(crate) const MAX_LIMIT: u32 = 1000;
/// Rows fetched per database round trip by the export.
const EXPORT_CHUNK: u32 = 1000;
/// Latest accepted timestamp: 9999-12-31T23:59:59.999Z, in unix milliseconds.
const MAX_MILLIS: i64 = 253_402_300_799_999;
/// Longest accepted filter value.
const MAX_FILTER_LEN: usize = 256;

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// `GET /api/audit` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    key_id: Option<String>,
    tenant_id: Option<String>,
    model: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    guardrail_action: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Export format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ExportFormat {
    /// One JSON object per line, exactly the items of `GET /api/audit`.
    #[default]
    Ndjson,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// `GET /api/audit/export` query: the filters of `GET /api/audit` and a format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    format: Option<ExportFormat>,
    key_id: Option<String>,
    tenant_id: Option<String>,
    model: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    guardrail_action: Option<String>,
}

/// The raw filter parameters shared by the audit, export and analytics queries.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FilterParams<'a> {
    pub(crate) key_id: Option<&'a str>,
    pub(crate) tenant_id: Option<&'a str>,
    pub(crate) model: Option<&'a str>,
    pub(crate) status: Option<&'a str>,
    pub(crate) from: Option<&'a str>,
    pub(crate) to: Option<&'a str>,
    pub(crate) guardrail_action: Option<&'a str>,
}

/// Validated filters over `audit_records`; every one given must hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AuditFilter {
    key_id: Option<String>,
    tenant_id: Option<String>,
    /// Matches `model_requested` or `model_used`.
    model: Option<String>,
    /// Inclusive status range (one code, or a class such as 200..=299).
    status: Option<(i64, i64)>,
    /// Inclusive lower bound, unix ms.
    pub(crate) from: Option<i64>,
    /// Exclusive upper bound, unix ms.
    pub(crate) to: Option<i64>,
    guardrail_action: Option<String>,
}

fn text_filter(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    if value.is_empty() {
        return Err(ApiError::field(field, "must not be empty; omit it to match every row"));
    }
    if value.len() > MAX_FILTER_LEN {
        return Err(ApiError::field(field, format!("must be at most {MAX_FILTER_LEN} bytes")));
    }
    Ok(Some(value.to_owned()))
}

/// An exact status code (`429`) or a class (`2xx`, `4xx`, `5xx`) as an inclusive range.
fn parse_status(text: &str) -> Result<(i64, i64), ApiError> {
    let invalid = || ApiError::field("status", format!("`{text}` is not a status code (100-599) or class (1xx-5xx)"));
    let lower = text.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        return match class.as_bytes() {
            [digit @ b'1'..=b'5'] => {
                let class = i64::from(digit - b'0');
                Ok((class * 100, class * 100 + 99))
            }
            _ => Err(invalid()),
        };
    }
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match text.parse::<i64>() {
        Ok(code @ 100..=599) => Ok((code, code)),
        _ => Err(invalid()),
    }
}

/// A point in time: RFC 3339 (`2026-03-02T10:15:00Z`) or unix milliseconds (`1772446500000`).
pub(crate) fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(ms) if ms <= MAX_MILLIS => Ok(ms),
            _ => Err(ApiError::field(field, format!("unix milliseconds `{text}` are after the year 9999"))),
        };
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        ApiError::field(field, format!("`{text}` is neither RFC 3339 (2026-03-02T10:15:00Z) nor unix milliseconds"))
    })?;
    let millis = i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::field(field, "is out of range"))?;
    if (0..=MAX_MILLIS).contains(&millis) {
        Ok(millis)
    } else {
        Err(ApiError::field(field, format!("`{text}` is outside 1970..=9999")))
    }
}

/// Lowercase letters, digits, `_` and `-`: the action names guardrails record.
fn parse_action(text: &str) -> Result<String, ApiError> {
    if text.is_empty()
        || text.len() > 64
        || !text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(ApiError::field(
            "guardrail_action",
            "must be an action name such as `block`, `redact` or `flag` (lowercase letters, digits, `_`, `-`)",
        ));
    }
    Ok(text.to_owned())
}

impl AuditFilter {
    /// Validates the raw parameters.
    pub(crate) fn parse(params: FilterParams<'_>) -> Result<Self, ApiError> {
        let from = params.from.map(|t| parse_time("from", t)).transpose()?;
        let to = params.to.map(|t| parse_time("to", t)).transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(ApiError::field("from", "must not be after `to`"));
        }
        Ok(Self {
            key_id: text_filter("key_id", params.key_id)?,
            tenant_id: text_filter("tenant_id", params.tenant_id)?,
            model: text_filter("model", params.model)?,
            status: params.status.map(parse_status).transpose()?,
            from,
            to,
            guardrail_action: params.guardrail_action.map(parse_action).transpose()?,
        })
    }

    /// Appends ` AND ...` for every filter (the statement must already have a `WHERE`).
    pub(crate) fn apply(&self, sql: &mut Sql) {
        if let Some(key_id) = &self.key_id {
            sql.push(" AND key_id = ").text(key_id);
        }
        if let Some(tenant_id) = &self.tenant_id {
            sql.push(" AND tenant_id = ").text(tenant_id);
        }
        if let Some(model) = &self.model {
            sql.push(" AND (model_requested = ").text(model).push(" OR model_used = ").text(model).push(")");
        }
        match self.status {
            Some((low, high)) if low == high => {
                sql.push(" AND status = ").int(low);
            }
            Some((low, high)) => {
                sql.push(" AND status >= ").int(low).push(" AND status <= ").int(high);
            }
            None => {}
        }
        if let Some(from) = self.from {
            sql.push(" AND ts >= ").int(from);
        }
        if let Some(to) = self.to {
            sql.push(" AND ts < ").int(to);
        }
        if let Some(action) = &self.guardrail_action {
            // `guardrail_actions` is a compact JSON array written by the proxy, e.g.
            // `[{"guardrail":"pii-redact","action":"redact","count":2}]`.
            sql.push(" AND guardrail_actions LIKE ").text(&action_pattern(action)).push(" ESCAPE '\\'");
        }
    }
}

/// `%"action":"{action}"%` with LIKE's wildcards escaped.
fn action_pattern(action: &str) -> String {
    let mut escaped = String::with_capacity(action.len() + 16);
    for c in action.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("%\"action\":\"{escaped}\"%")
}

impl AuditQuery {
    fn params(&self) -> FilterParams<'_> {
        FilterParams {
            key_id: self.key_id.as_deref(),
            tenant_id: self.tenant_id.as_deref(),
            model: self.model.as_deref(),
            status: self.status.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
            guardrail_action: self.guardrail_action.as_deref(),
        }
    }
}

impl ExportQuery {
    fn params(&self) -> FilterParams<'_> {
        FilterParams {
            key_id: self.key_id.as_deref(),
            tenant_id: self.tenant_id.as_deref(),
            model: self.model.as_deref(),
            status: self.status.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
            guardrail_action: self.guardrail_action.as_deref(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cursor
// ---------------------------------------------------------------------------------------------

/// Position after which the next page starts, in `(ts, request_id)` descending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditCursor {
    ts: i64,
    request_id: String,
}

impl AuditCursor {
    /// base64url (no padding) of the JSON `[ts, request_id]`.
    pub(crate) fn encode(&self) -> String {
        let json = serde_json::json!([self.ts, self.request_id]).to_string();
        URL_SAFE_NO_PAD.encode(json)
    }

    pub(crate) fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::field("cursor", "is not a cursor returned by this API");
        if text.len() > 1024 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|_| invalid())?;
        let (ts, request_id): (i64, String) = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if request_id.is_empty() || request_id.len() > 256 {
            return Err(invalid());
        }
        Ok(Self { ts, request_id })
    }
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

/// One audit record as stored: the type the proxies write.
use flowgate_contracts::audit::{AUDIT_COLUMNS, AuditRecord};

/// A nullable floating-point column (REAL/DOUBLE PRECISION; an integer stored there is accepted).
pub(crate) fn float(row: &AnyRow, column: &str) -> Result<Option<f64>, sqlx::Error> {
    match row.try_get::<Option<f64>, _>(column) {
        Ok(value) => Ok(value),
        #[expect(clippy::cast_precision_loss, reason = "latencies are far below 2^53 ms")]
        Err(_) => Ok(row.try_get::<Option<i64>, _>(column)?.map(|v| v as f64)),
    }
}

/// A JSON array column back to its items. The proxy always writes an array; a row that holds
/// anything else reads as empty (and is logged) rather than failing the whole page.
fn json_array<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<Vec<T>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    Ok(serde_json::from_str(&text).unwrap_or_else(|error| {
        tracing::warn!(column, %error, "an audit row holds a column that is not a JSON array");
        Vec::new()
    }))
}

fn record(row: &AnyRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        request_id: row.try_get("request_id")?,
        ts: row.try_get("ts")?,
        tenant_id: row.try_get("tenant_id")?,
        key_id: row.try_get("key_id")?,
        client_ip: row.try_get("client_ip")?,
        route: row.try_get("route")?,
        model_requested: row.try_get("model_requested")?,
        model_used: row.try_get("model_used")?,
        deployment: row.try_get("deployment")?,
        provider: row.try_get("provider")?,
        status: row.try_get("status")?,
        error_code: row.try_get("error_code")?,
        latency_ms: float(row, "latency_ms")?.unwrap_or_default(),
        upstream_latency_ms: float(row, "upstream_latency_ms")?,
        ttft_ms: float(row, "ttft_ms")?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
        cost_nanos: row.try_get("cost_nanos")?,
        cache_hit: row.try_get::<i64, _>("cache_hit")? != 0,
        stream: row.try_get::<i64, _>("stream")? != 0,
        retries: row.try_get("retries")?,
        fallbacks: json_array(row, "fallbacks")?,
        guardrail_actions: json_array(row, "guardrail_actions")?,
        prompt: row.try_get("prompt")?,
        response: row.try_get("response")?,
    })
}

/// Up to `limit` records matching `filter` after `cursor`, newest first, and whether more follow.
pub(crate) async fn fetch_page(
    db: &Database,
    filter: &AuditFilter,
    cursor: Option<&AuditCursor>,
    limit: u32,
) -> Result<(Vec<AuditRecord>, bool), sqlx::Error> {
    let columns = AUDIT_COLUMNS.join(", ");
    let mut sql = Sql::new(&format!("SELECT {columns} FROM audit_records WHERE 1 = 1"));
    filter.apply(&mut sql);
    if let Some(cursor) = cursor {
        // A row-value comparison, so PostgreSQL and SQLite seek the (ts, request_id) index.
        sql.push(" AND (ts, request_id) < (").int(cursor.ts).push(", ").text(&cursor.request_id).push(")");
    }
    sql.push(" ORDER BY ts DESC, request_id DESC LIMIT ").int(i64::from(limit) + 1);
    let rows = sql.query().fetch_all(db.pool()).await?;
    let mut records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    Ok((records, more))
}

/// One audit record as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct AuditItem {
    request_id: String,
    ts: String,
    ts_ms: i64,
    tenant_id: Option<String>,
    key_id: Option<String>,
    client_ip: Option<String>,
    route: String,
    model_requested: Option<String>,
    model_used: Option<String>,
    deployment: Option<String>,
    provider: Option<String>,
    status: i64,
    error_code: Option<String>,
    latency_ms: Option<f64>,
    upstream_latency_ms: Option<f64>,
    ttft_ms: Option<f64>,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    cost_usd: f64,
    cost_nanos: i64,
    cache_hit: bool,
    stream: bool,
    retries: i64,
    fallbacks: Value,
    guardrail_actions: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<String>,
}

/// CSV columns, in order: every field of [`AuditItem`].
const CSV_COLUMNS: [&str; 28] = [
    "request_id",
    "ts",
    "ts_ms",
    "tenant_id",
    "key_id",
    "client_ip",
    "route",
    "model_requested",
    "model_used",
    "deployment",
    "provider",
    "status",
    "error_code",
    "latency_ms",
    "upstream_latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "cost_nanos",
    "cache_hit",
    "stream",
    "retries",
    "fallbacks",
    "guardrail_actions",
    "prompt",
    "response",
];

impl From<AuditRecord> for AuditItem {
    fn from(r: AuditRecord) -> Self {
        Self {
            ts: rfc3339(r.ts),
            ts_ms: r.ts,
            total_tokens: r.prompt_tokens.saturating_add(r.completion_tokens),
            cost_usd: usd(r.cost_nanos),
            cache_hit: r.cache_hit,
            stream: r.stream,
            fallbacks: Value::Array(r.fallbacks.into_iter().map(Value::String).collect()),
            guardrail_actions: Value::Array(r.guardrail_actions),
            request_id: r.request_id,
            tenant_id: r.tenant_id,
            key_id: r.key_id,
            client_ip: r.client_ip,
            route: r.route,
            model_requested: r.model_requested,
            model_used: r.model_used,
            deployment: r.deployment,
            provider: r.provider,
            status: r.status,
            error_code: r.error_code,
            latency_ms: Some(r.latency_ms),
            upstream_latency_ms: r.upstream_latency_ms,
            ttft_ms: r.ttft_ms,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cost_nanos: r.cost_nanos,
            retries: r.retries,
            prompt: r.prompt,
            response: r.response,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// One page of audit records.
#[derive(Debug, Serialize)]
pub(crate) struct AuditPage {
    items: Vec<AuditItem>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

fn next_cursor(records: &[AuditRecord], more: bool) -> Option<AuditCursor> {
    if !more {
        return None;
    }
    records.last().map(|r| AuditCursor { ts: r.ts, request_id: r.request_id.clone() })
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
    let (records, more) = fetch_page(&state.database, &filter, cursor.as_ref(), limit).await?;
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

fn render(format: ExportFormat, item: &AuditItem, out: &mut Vec<u8>) {
    match format {
        ExportFormat::Ndjson => {
            if serde_json::to_writer(&mut *out, item).is_ok() {
                out.push(b'\n');
            }
        }
        ExportFormat::Csv => {
            let value = serde_json::to_value(item).unwrap_or(Value::Null);
            for (index, column) in CSV_COLUMNS.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                csv_cell(value.get(*column).unwrap_or(&Value::Null), out);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// One CSV cell: RFC 4180 quoting; text that a spreadsheet would run as a formula (`=`, `+`,
/// `-`, `@`, tab, CR first) gets a leading `'`.
fn csv_cell(value: &Value, out: &mut Vec<u8>) {
    let (text, is_text) = match value {
        Value::Null => return,
        Value::String(text) => (std::borrow::Cow::Borrowed(text.as_str()), true),
        Value::Bool(_) | Value::Number(_) => (std::borrow::Cow::Owned(value.to_string()), false),
        Value::Array(_) | Value::Object(_) => (std::borrow::Cow::Owned(value.to_string()), false),
    };
    let guard = is_text && text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = guard || text.contains([',', '"', '\r', '\n']) || text.starts_with(' ') || text.ends_with(' ');
    if quote {
        out.push(b'"');
    }
    if guard {
        out.push(b'\'');
    }
    for byte in text.bytes() {
        if byte == b'"' {
            out.push(b'"');
        }
        out.push(byte);
    }
    if quote {
        out.push(b'"');
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(params: FilterParams<'_>) -> Result<AuditFilter, ApiError> {
        AuditFilter::parse(params)
    }

    #[test]
    fn status_takes_a_code_or_a_class() {
        assert_eq!(parse_status("429").unwrap(), (429, 429));
        assert_eq!(parse_status("2xx").unwrap(), (200, 299));
        assert_eq!(parse_status("5XX").unwrap(), (500, 599));
        for bad in ["", "6xx", "0xx", "20x", "99", "600", "abc", "1e3", "+200", "12xx", "xx"] {
            let error = parse_status(bad).unwrap_err().to_string();
            assert!(error.starts_with("`status`"), "{bad}: {error}");
        }
    }

    #[test]
    fn times_take_rfc3339_or_unix_millis() {
        assert_eq!(parse_time("from", "1772446500123").unwrap(), 1_772_446_500_123);
        assert_eq!(parse_time("from", "2030-01-01T00:00:00Z").unwrap(), 1_893_456_000_000);
        assert_eq!(parse_time("from", "2030-01-01T01:00:00.5+01:00").unwrap(), 1_893_456_000_500);
        for bad in ["", "yesterday", "-5", "1.5", "99999999999999999999", "253402300800000"] {
            assert!(parse_time("to", bad).unwrap_err().to_string().starts_with("`to`"), "{bad}");
        }
        let error = filter(FilterParams { from: Some("2000"), to: Some("1000"), ..FilterParams::default() });
        assert!(error.unwrap_err().to_string().contains("must not be after"));
    }

    #[test]
    fn filters_become_bound_conditions() {
        let parsed = filter(FilterParams {
            key_id: Some("k1"),
            model: Some("gpt-4o"),
            status: Some("5xx"),
            from: Some("1000"),
            guardrail_action: Some("block"),
            ..FilterParams::default()
        })
        .unwrap();
        let mut sql = Sql::new("SELECT 1 FROM audit_records WHERE 1 = 1");
        parsed.apply(&mut sql);
        assert_eq!(
            sql.as_str(),
            "SELECT 1 FROM audit_records WHERE 1 = 1 AND key_id = $1 AND (model_requested = $2 OR model_used = $3) \
             AND status >= $4 AND status <= $5 AND ts >= $6 AND guardrail_actions LIKE $7 ESCAPE '\\'"
        );
        assert_eq!(action_pattern("prompt_injection"), r#"%"action":"prompt\_injection"%"#);
        for bad in ["BLOCK", "a b", "x%", "\"", ""] {
            let params = FilterParams { guardrail_action: Some(bad), ..FilterParams::default() };
            assert!(filter(params).is_err(), "{bad}");
        }
        assert!(filter(FilterParams { key_id: Some(""), ..FilterParams::default() }).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = AuditCursor { ts: 1_772_446_500_123, request_id: "req-1".into() };
        let text = cursor.encode();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
        assert_eq!(AuditCursor::decode(&text).unwrap(), cursor);
        for bad in ["", "!!!", "e30", &URL_SAFE_NO_PAD.encode("[1]"), &URL_SAFE_NO_PAD.encode("[1,\"\"]")] {
            assert!(AuditCursor::decode(bad).is_err(), "{bad}");
        }
    }

    fn sample() -> AuditRecord {
        AuditRecord {
            request_id: "r1".into(),
            ts: 1_893_456_000_250,
            tenant_id: Some("t".into()),
            key_id: None,
            client_ip: Some("10.0.0.1".into()),
            route: "/v1/chat/completions".into(),
            model_requested: Some("gpt".into()),
            model_used: Some("gpt".into()),
            deployment: Some("d1".into()),
            provider: Some("openai".into()),
            status: 200,
            error_code: None,
            latency_ms: 12.5,
            upstream_latency_ms: None,
            ttft_ms: None,
            prompt_tokens: 3,
            completion_tokens: 4,
            cost_nanos: 1_500_000_000,
            cache_hit: true,
            stream: false,
            retries: 0,
            fallbacks: Vec::new(),
            guardrail_actions: vec![serde_json::json!({"guardrail": "pii-redact", "action": "redact", "count": 1})],
            prompt: Some("=SUM(A1), \"quoted\"".into()),
            response: None,
        }
    }

    #[test]
    fn items_have_friendly_types_and_hide_absent_prompts() {
        let item = serde_json::to_value(AuditItem::from(sample())).unwrap();
        assert_eq!(item["ts"], "2030-01-01T00:00:00.25Z");
        assert_eq!(item["cost_usd"], 1.5);
        assert_eq!(item["cache_hit"], true);
        assert_eq!(item["total_tokens"], 7);
        assert_eq!(item["guardrail_actions"][0]["action"], "redact");
        assert!(item.get("response").is_none() && item.get("prompt").is_some());
        let fields: Vec<&String> = item.as_object().unwrap().keys().collect();
        for field in fields {
            assert!(CSV_COLUMNS.contains(&field.as_str()), "{field} is not exported to CSV");
        }
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut out = Vec::new();
        render(ExportFormat::Csv, &AuditItem::from(sample()), &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("r1,2030-01-01T00:00:00.25Z,1893456000250,t,,10.0.0.1,"), "{line}");
        assert!(
            line.contains(r#",true,false,0,[],"[{""action"":""redact"",""count"":1,""guardrail"":""pii-redact""}]","#),
            "{line}"
        );
        assert!(line.ends_with(",\"'=SUM(A1), \"\"quoted\"\"\",\r\n"), "{line}");
        assert_eq!(line.matches(',').count() - 3, CSV_COLUMNS.len() - 1, "{line}");
    }
}
