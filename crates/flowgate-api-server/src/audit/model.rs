//! Audit documents: the query filters with their validation, the page cursor, and a record as
//! the API shows it (JSON items, NDJSON lines and CSV rows).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flowgate_contracts::audit::AuditRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::fields::{rfc3339, usd};
use crate::sql::Sql;

/// Page size when `limit` is absent, and the largest accepted.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
pub(crate) const MAX_LIMIT: u32 = 1000;
/// Rows fetched per database round trip by the export.
pub(crate) const EXPORT_CHUNK: u32 = 1000;
/// Latest accepted timestamp: 9999-12-31T23:59:59.999Z, in unix milliseconds.
pub(crate) const MAX_MILLIS: i64 = 253_402_300_799_999;
/// Longest accepted filter value.
pub(crate) const MAX_FILTER_LEN: usize = 256;

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// `GET /api/audit` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    pub(crate) key_id: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) guardrail_action: Option<String>,
    pub(crate) limit: Option<u32>,
    pub(crate) cursor: Option<String>,
    /// Read records archived to object storage instead of the database (`from` and `to` required).
    pub(crate) archived: Option<bool>,
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
    pub(crate) format: Option<ExportFormat>,
    pub(crate) key_id: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) guardrail_action: Option<String>,
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

pub(crate) fn text_filter(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
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
pub(crate) fn parse_status(text: &str) -> Result<(i64, i64), ApiError> {
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
pub(crate) fn parse_action(text: &str) -> Result<String, ApiError> {
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

    /// The tenant filter, if any.
    pub(crate) fn tenant(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }

    /// Whether `record` passes the filter: what [`AuditFilter::apply`] asks of a row, for records
    /// read back from the archive.
    pub(crate) fn matches(&self, record: &flowgate_contracts::AuditRecord) -> bool {
        let same =
            |want: &Option<String>, have: &Option<String>| want.as_ref().is_none_or(|w| have.as_ref() == Some(w));
        same(&self.key_id, &record.key_id)
            && same(&self.tenant_id, &record.tenant_id)
            && self
                .model
                .as_ref()
                .is_none_or(|m| record.model_requested.as_ref() == Some(m) || record.model_used.as_ref() == Some(m))
            && self.status.is_none_or(|(low, high)| (low..=high).contains(&record.status))
            && self.from.is_none_or(|from| record.ts >= from)
            && self.to.is_none_or(|to| record.ts < to)
            && self.guardrail_action.as_ref().is_none_or(|action| {
                record.guardrail_actions.iter().any(|a| a.get("action").and_then(|v| v.as_str()) == Some(action))
            })
    }

    /// Whether only the key, tenant, model and time are filtered: what spend rollups can answer.
    pub(crate) fn rollup_compatible(&self) -> bool {
        self.status.is_none() && self.guardrail_action.is_none()
    }

    /// Appends ` AND ...` for the key, tenant and model filters only (columns `spend_rollups`
    /// shares with `audit_records`).
    pub(crate) fn apply_identity(&self, sql: &mut Sql) {
        if let Some(key_id) = &self.key_id {
            sql.push(" AND key_id = ").text(key_id);
        }
        if let Some(tenant_id) = &self.tenant_id {
            sql.push(" AND tenant_id = ").text(tenant_id);
        }
        if let Some(model) = &self.model {
            sql.push(" AND (model_requested = ").text(model).push(" OR model_used = ").text(model).push(")");
        }
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
pub(crate) fn action_pattern(action: &str) -> String {
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
    pub(crate) fn params(&self) -> FilterParams<'_> {
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
    pub(crate) fn params(&self) -> FilterParams<'_> {
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
    pub(crate) ts: i64,
    pub(crate) request_id: String,
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
    usage_estimated: bool,
    cache_hit: bool,
    stream: bool,
    retries: i64,
    fallbacks: Value,
    guardrail_actions: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<String>,
    metadata: Value,
}

/// CSV columns, in order: every field of [`AuditItem`].
pub(crate) const CSV_COLUMNS: [&str; 30] = [
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
    "usage_estimated",
    "cache_hit",
    "stream",
    "retries",
    "fallbacks",
    "guardrail_actions",
    "prompt",
    "response",
    "metadata",
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
            usage_estimated: r.usage_estimated,
            retries: r.retries,
            prompt: r.prompt,
            response: r.response,
            metadata: Value::Object(r.metadata.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
pub(crate) fn next_cursor(records: &[AuditRecord], more: bool) -> Option<AuditCursor> {
    if !more {
        return None;
    }
    records.last().map(|r| AuditCursor { ts: r.ts, request_id: r.request_id.clone() })
}

/// Appends `item` to `out`: one NDJSON line or one CSV row.
pub(crate) fn render(format: ExportFormat, item: &AuditItem, out: &mut Vec<u8>) {
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
pub(crate) fn csv_cell(value: &Value, out: &mut Vec<u8>) {
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
