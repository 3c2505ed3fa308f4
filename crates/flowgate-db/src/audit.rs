//! Reading `audit_records` rows back into [`AuditRecord`]s: what the api-server's audit API and
//! the worker's archive both read.

use flowgate_contracts::audit::AuditRecord;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::text::{opt_text, text};

/// A nullable floating-point column (REAL/DOUBLE PRECISION; an integer stored there is accepted).
pub fn float(row: &AnyRow, column: &str) -> Result<Option<f64>, sqlx::Error> {
    match row.try_get::<Option<f64>, _>(column) {
        Ok(value) => Ok(value),
        #[expect(clippy::cast_precision_loss, reason = "latencies are far below 2^53 ms")]
        Err(_) => Ok(row.try_get::<Option<i64>, _>(column)?.map(|v| v as f64)),
    }
}

/// A JSON column (`fallbacks`, `guardrail_actions`: arrays; `metadata`: an object); one that does
/// not read as its type is logged and read as empty.
fn json_column<T: serde::de::DeserializeOwned + Default>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    let text = text(row, column)?;
    Ok(serde_json::from_str(&text).unwrap_or_else(|error| {
        tracing::warn!(column, %error, "an audit row holds a column that is not the JSON it should be");
        T::default()
    }))
}

/// The record of a row selected with every column of [`flowgate_contracts::AUDIT_COLUMNS`].
pub fn record(row: &AnyRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        request_id: text(row, "request_id")?,
        ts: row.try_get("ts")?,
        tenant_id: opt_text(row, "tenant_id")?,
        key_id: opt_text(row, "key_id")?,
        client_ip: opt_text(row, "client_ip")?,
        route: text(row, "route")?,
        model_requested: opt_text(row, "model_requested")?,
        model_used: opt_text(row, "model_used")?,
        deployment: opt_text(row, "deployment")?,
        provider: opt_text(row, "provider")?,
        status: row.try_get("status")?,
        error_code: opt_text(row, "error_code")?,
        latency_ms: float(row, "latency_ms")?.unwrap_or_default(),
        upstream_latency_ms: float(row, "upstream_latency_ms")?,
        ttft_ms: float(row, "ttft_ms")?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
        cost_nanos: row.try_get("cost_nanos")?,
        usage_estimated: row.try_get::<i64, _>("usage_estimated")? != 0,
        cache_hit: row.try_get::<i64, _>("cache_hit")? != 0,
        stream: row.try_get::<i64, _>("stream")? != 0,
        retries: row.try_get("retries")?,
        fallbacks: json_column(row, "fallbacks")?,
        guardrail_actions: json_column(row, "guardrail_actions")?,
        prompt: opt_text(row, "prompt")?,
        response: opt_text(row, "response")?,
        metadata: json_column(row, "metadata")?,
    })
}
