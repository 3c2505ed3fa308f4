//! `/api/analytics/spend` and `/api/providers/perf`: aggregates over `audit_records`.
//!
//! Sums are computed by the database (`CAST(SUM(..) AS BIGINT)`: PostgreSQL sums BIGINT into
//! NUMERIC, which the `Any` driver cannot decode). Percentiles are computed here from the latency
//! values of the window, newest first, capped per deployment.

use axum::Json;
use axum::extract::State;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, now_millis};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::model::{AuditFilter, FilterParams};
use crate::audit::store::float;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::fields::{rfc3339, usd};
use crate::sql::Sql;
use crate::state::AppState;

/// Most groups returned by the spend report (the costliest first; days: the earliest first).
const MAX_GROUPS: usize = 10_000;
/// Most latency samples per deployment used for percentiles (the newest in the window).
pub(crate) const MAX_SAMPLES: usize = 100_000;
/// Default and longest performance windows.
const DEFAULT_WINDOW: &str = "15m";
const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;

// ---------------------------------------------------------------------------------------------
// Spend
// ---------------------------------------------------------------------------------------------

/// What spend is grouped by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GroupBy {
    /// Virtual key id.
    #[default]
    Key,
    /// Tenant id.
    Tenant,
    /// The model used (the one asked when none was used, e.g. a rejected request).
    Model,
    /// UTC calendar day of the request.
    Day,
}

impl GroupBy {
    /// The grouping expression (fixed SQL, never from the request).
    fn expression(self) -> &'static str {
        match self {
            Self::Key => "key_id",
            Self::Tenant => "tenant_id",
            Self::Model => "COALESCE(model_used, model_requested)",
            Self::Day => "(ts / 86400000)",
        }
    }
}

/// `GET /api/analytics/spend` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpendQuery {
    group_by: Option<GroupBy>,
    from: Option<String>,
    to: Option<String>,
    key_id: Option<String>,
    tenant_id: Option<String>,
    model: Option<String>,
}

/// One group's totals.
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct SpendItem {
    /// The key id, tenant id, model or `YYYY-MM-DD`; `null` for records without one (e.g.
    /// requests rejected before a key was known).
    group: Option<String>,
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_usd: f64,
    cost_nanos: i64,
}

/// The spend report.
#[derive(Debug, Serialize)]
pub(crate) struct SpendReport {
    group_by: GroupBy,
    from: Option<String>,
    to: Option<String>,
    items: Vec<SpendItem>,
    /// Sums over `items`.
    totals: SpendItem,
    /// True when more than 10 000 groups matched and only the first were returned.
    truncated: bool,
}

/// `YYYY-MM-DD` of a UTC day number (days since 1970-01-01).
fn day_label(day: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400)) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Err(_) => day.to_string(),
    }
}

async fn spend_rows(db: &Database, group_by: GroupBy, filter: &AuditFilter) -> Result<Vec<SpendItem>, sqlx::Error> {
    let expression = group_by.expression();
    let mut sql = Sql::new(&format!(
        "SELECT {expression} AS grp, COUNT(*) AS requests, \
         CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
         CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
         CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos \
         FROM audit_records WHERE 1 = 1"
    ));
    filter.apply(&mut sql);
    sql.push(match group_by {
        GroupBy::Day => " GROUP BY (ts / 86400000) ORDER BY 1 ASC LIMIT ",
        GroupBy::Key => " GROUP BY key_id ORDER BY 5 DESC, 1 ASC LIMIT ",
        GroupBy::Tenant => " GROUP BY tenant_id ORDER BY 5 DESC, 1 ASC LIMIT ",
        GroupBy::Model => " GROUP BY COALESCE(model_used, model_requested) ORDER BY 5 DESC, 1 ASC LIMIT ",
    });
    sql.int(i64::try_from(MAX_GROUPS).unwrap_or(i64::MAX) + 1);
    let rows = sql.query().fetch_all(db.pool()).await?;
    rows.iter()
        .map(|row| {
            let group = if group_by == GroupBy::Day {
                row.try_get::<Option<i64>, _>("grp")?.map(day_label)
            } else {
                row.try_get::<Option<String>, _>("grp")?
            };
            let cost_nanos: i64 = row.try_get("cost_nanos")?;
            Ok(SpendItem {
                group,
                requests: row.try_get("requests")?,
                prompt_tokens: row.try_get("prompt_tokens")?,
                completion_tokens: row.try_get("completion_tokens")?,
                cost_usd: usd(cost_nanos),
                cost_nanos,
            })
        })
        .collect()
}

/// `GET /api/analytics/spend?group_by=key|tenant|model|day&from=&to=` (plus optional `key_id`,
/// `tenant_id`, `model` filters).
#[tracing::instrument(name = "analytics.spend", skip_all, fields(group_by))]
pub(crate) async fn spend(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SpendQuery>,
) -> Result<Json<SpendReport>, ApiError> {
    let group_by = query.group_by.unwrap_or_default();
    tracing::Span::current().record("group_by", tracing::field::debug(group_by));
    let filter = AuditFilter::parse(FilterParams {
        key_id: query.key_id.as_deref(),
        tenant_id: query.tenant_id.as_deref(),
        model: query.model.as_deref(),
        from: query.from.as_deref(),
        to: query.to.as_deref(),
        ..FilterParams::default()
    })?;
    let mut items = spend_rows(&state.database, group_by, &filter).await?;
    let truncated = items.len() > MAX_GROUPS;
    items.truncate(MAX_GROUPS);
    let mut totals = SpendItem::default();
    for item in &items {
        totals.requests += item.requests;
        totals.prompt_tokens += item.prompt_tokens;
        totals.completion_tokens += item.completion_tokens;
        totals.cost_nanos += item.cost_nanos;
    }
    totals.cost_usd = usd(totals.cost_nanos);
    Ok(Json(SpendReport {
        group_by,
        from: filter.from.map(rfc3339),
        to: filter.to.map(rfc3339),
        items,
        totals,
        truncated,
    }))
}

// ---------------------------------------------------------------------------------------------
// Provider performance
// ---------------------------------------------------------------------------------------------

/// `GET /api/providers/perf` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PerfQuery {
    window: Option<String>,
}

/// A window such as `30s`, `15m` or `2h`, in seconds (1 s to 7 days).
fn parse_window(text: &str) -> Result<u64, ApiError> {
    let invalid =
        || ApiError::field("window", format!("`{text}` is not a window such as `30s`, `15m` or `2h` (at most 7 days)"));
    let unit = match text.as_bytes().last() {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 3600,
        _ => return Err(invalid()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let secs = digits.parse::<u64>().map_err(|_| invalid())? * unit;
    if secs == 0 || secs > MAX_WINDOW_SECS {
        return Err(invalid());
    }
    Ok(secs)
}

/// Nearest-rank percentiles of `values` (sorted in place).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Percentiles {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "ranks of at most MAX_SAMPLES values"
)]
fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let at = |p: f64| {
        let rank = (p * n as f64).ceil() as usize;
        values[rank.clamp(1, n) - 1]
    };
    Percentiles { p50: Some(at(0.50)), p95: Some(at(0.95)), p99: Some(at(0.99)) }
}

/// One deployment's performance over the window.
#[derive(Debug, Serialize)]
pub(crate) struct DeploymentPerf {
    deployment: String,
    provider: Option<String>,
    model: Option<String>,
    requests: i64,
    requests_per_minute: f64,
    /// Requests with status >= 500 or an error code.
    errors: i64,
    error_rate: f64,
    latency_ms: Percentiles,
    upstream_latency_ms: Percentiles,
    /// Latency samples the percentiles are computed from (the newest 100 000 at most).
    samples: usize,
}

/// The performance report.
#[derive(Debug, Serialize)]
pub(crate) struct PerfReport {
    window: String,
    window_secs: u64,
    from: String,
    to: String,
    deployments: Vec<DeploymentPerf>,
}

struct Totals {
    deployment: String,
    provider: Option<String>,
    model: Option<String>,
    requests: i64,
    errors: i64,
}

async fn deployment_totals(db: &Database, from: i64, to: i64) -> Result<Vec<Totals>, sqlx::Error> {
    let mut sql = Sql::new(
        "SELECT deployment, MAX(provider) AS provider, MAX(model_used) AS model, COUNT(*) AS requests, \
         CAST(COALESCE(SUM(CASE WHEN status >= 500 OR error_code IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) \
         AS errors FROM audit_records WHERE deployment IS NOT NULL AND ts >= ",
    );
    sql.int(from).push(" AND ts <= ").int(to).push(" GROUP BY deployment ORDER BY deployment");
    let rows = sql.query().fetch_all(db.pool()).await?;
    rows.iter()
        .map(|row| {
            Ok(Totals {
                deployment: row.try_get("deployment")?,
                provider: row.try_get("provider")?,
                model: row.try_get("model")?,
                requests: row.try_get("requests")?,
                errors: row.try_get("errors")?,
            })
        })
        .collect()
}

/// Total and upstream latencies of `deployment` in the window, newest first, at most
/// [`MAX_SAMPLES`], read row by row.
async fn latencies(db: &Database, deployment: &str, from: i64, to: i64) -> Result<(Vec<f64>, Vec<f64>), sqlx::Error> {
    let mut sql = Sql::new("SELECT latency_ms, upstream_latency_ms FROM audit_records WHERE deployment = ");
    sql.text(deployment).push(" AND ts >= ").int(from).push(" AND ts <= ").int(to);
    sql.push(" ORDER BY ts DESC LIMIT ").int(i64::try_from(MAX_SAMPLES).unwrap_or(i64::MAX));
    let mut rows = sql.query().fetch(db.pool());
    let (mut total, mut upstream) = (Vec::new(), Vec::new());
    while let Some(row) = rows.try_next().await? {
        if let Some(value) = float(&row, "latency_ms")?.filter(|v| v.is_finite()) {
            total.push(value);
        }
        if let Some(value) = float(&row, "upstream_latency_ms")?.filter(|v| v.is_finite()) {
            upstream.push(value);
        }
    }
    Ok((total, upstream))
}

/// `GET /api/providers/perf?window=15m`: per deployment over the window: request rate,
/// latency percentiles, error rate. Cooldown state lives in each proxy's memory and is not here
/// (see the proxy's `/health`, or `GET /api/health/comprehensive`).
#[tracing::instrument(name = "providers.perf", skip_all, fields(window))]
pub(crate) async fn perf(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PerfQuery>,
) -> Result<Json<PerfReport>, ApiError> {
    let window = query.window.unwrap_or_else(|| DEFAULT_WINDOW.to_owned());
    let window_secs = parse_window(&window)?;
    tracing::Span::current().record("window", window.as_str());
    let to = now_millis();
    let from = to - i64::try_from(window_secs).unwrap_or(i64::MAX / 1000) * 1000;
    #[expect(clippy::cast_precision_loss, reason = "windows are at most 7 days")]
    let minutes = window_secs as f64 / 60.0;
    let mut deployments = Vec::new();
    for totals in deployment_totals(&state.database, from, to).await? {
        let (mut total, mut upstream) = latencies(&state.database, &totals.deployment, from, to).await?;
        #[expect(clippy::cast_precision_loss, reason = "request counts are far below 2^53")]
        let (requests, errors) = (totals.requests as f64, totals.errors as f64);
        deployments.push(DeploymentPerf {
            samples: total.len(),
            latency_ms: percentiles(&mut total),
            upstream_latency_ms: percentiles(&mut upstream),
            requests_per_minute: requests / minutes,
            error_rate: if totals.requests > 0 { errors / requests } else { 0.0 },
            deployment: totals.deployment,
            provider: totals.provider,
            model: totals.model,
            requests: totals.requests,
            errors: totals.errors,
        });
    }
    Ok(Json(PerfReport { window, window_secs, from: rfc3339(from), to: rfc3339(to), deployments }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The day of a timestamp, as the spend report labels it (`ts / 86400000`).
    fn day_of(ts: i64) -> String {
        day_label(ts.div_euclid(86_400_000))
    }

    #[test]
    fn windows_parse_in_seconds_minutes_and_hours() {
        assert_eq!(parse_window("30s").unwrap(), 30);
        assert_eq!(parse_window("15m").unwrap(), 900);
        assert_eq!(parse_window("2h").unwrap(), 7200);
        assert_eq!(parse_window("168h").unwrap(), MAX_WINDOW_SECS);
        for bad in ["", "m", "0m", "15", "15d", "-1m", "1.5h", "169h", "9999999999s", "15 m"] {
            assert!(parse_window(bad).unwrap_err().to_string().starts_with("`window`"), "{bad}");
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(&mut values), Percentiles { p50: Some(50.0), p95: Some(95.0), p99: Some(99.0) });
        assert_eq!(percentiles(&mut [7.0]), Percentiles { p50: Some(7.0), p95: Some(7.0), p99: Some(7.0) });
        assert_eq!(percentiles(&mut []), Percentiles::default());
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_893_456_000_000 - 1), "2029-12-31");
        assert_eq!(day_of(1_893_456_000_000), "2030-01-01");
    }
}
