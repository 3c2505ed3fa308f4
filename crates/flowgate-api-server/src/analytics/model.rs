//! Analytics documents: the spend and performance queries with their validation, and the
//! reports (the spend totals and the latency percentiles are computed here, from what
//! [`super::store`] reads).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::model::{AuditFilter, FilterParams};
use crate::error::ApiError;
use crate::fields::{rfc3339, usd};

/// Most groups returned by the spend report (the costliest first; days: the earliest first).
pub(crate) const MAX_GROUPS: usize = 10_000;
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

impl SpendQuery {
    /// The grouping asked (by key when none).
    pub(crate) fn group_by(&self) -> GroupBy {
        self.group_by.unwrap_or_default()
    }

    /// The records the report covers, validated.
    pub(crate) fn filter(&self) -> Result<AuditFilter, ApiError> {
        AuditFilter::parse(FilterParams {
            key_id: self.key_id.as_deref(),
            tenant_id: self.tenant_id.as_deref(),
            model: self.model.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
            ..FilterParams::default()
        })
    }
}

/// One group's totals.
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct SpendItem {
    /// The key id, tenant id, model or `YYYY-MM-DD`; `null` for records without one (e.g.
    /// requests rejected before a key was known).
    pub(crate) group: Option<String>,
    pub(crate) requests: i64,
    pub(crate) prompt_tokens: i64,
    pub(crate) completion_tokens: i64,
    pub(crate) cost_usd: f64,
    pub(crate) cost_nanos: i64,
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

impl SpendReport {
    /// The report over `items` (up to [`MAX_GROUPS`] + 1 of them, as read), with their sums.
    pub(crate) fn new(group_by: GroupBy, filter: &AuditFilter, mut items: Vec<SpendItem>) -> Self {
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
        Self { group_by, from: filter.from.map(rfc3339), to: filter.to.map(rfc3339), items, totals, truncated }
    }
}

/// `YYYY-MM-DD` of a UTC day number (days since 1970-01-01).
pub(crate) fn day_label(day: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(day.saturating_mul(86_400)) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        Err(_) => day.to_string(),
    }
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

impl PerfQuery {
    /// The window asked (`15m` when none) and its length in seconds.
    pub(crate) fn window(self) -> Result<(String, u64), ApiError> {
        let window = self.window.unwrap_or_else(|| DEFAULT_WINDOW.to_owned());
        let secs = parse_window(&window)?;
        Ok((window, secs))
    }
}

/// A window such as `30s`, `15m` or `2h`, in seconds (1 s to 7 days).
fn parse_window(text: &str) -> Result<u64, ApiError> {
    let invalid =
        || ApiError::field("window", format!("`{text}` is not a window such as `30s`, `15m` or `2h` (at most 7 days)"));
    let (digits, unit) = if let Some(digits) = text.strip_suffix('s') {
        (digits, 1)
    } else if let Some(digits) = text.strip_suffix('m') {
        (digits, 60)
    } else if let Some(digits) = text.strip_suffix('h') {
        (digits, 3600)
    } else {
        return Err(invalid());
    };
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
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let at = |p: f64| {
        let rank = (p * n as f64).ceil() as usize;
        values.get(rank.clamp(1, n.max(1)) - 1).copied()
    };
    Percentiles { p50: at(0.50), p95: at(0.95), p99: at(0.99) }
}

/// One deployment's request and error counts over the window, as read.
#[derive(Debug)]
pub(crate) struct DeploymentTotals {
    pub(crate) deployment: String,
    pub(crate) provider: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) requests: i64,
    pub(crate) errors: i64,
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

impl DeploymentPerf {
    /// The performance of a deployment from its totals and its total and upstream latencies
    /// over a window of `window_secs`.
    pub(crate) fn new(totals: DeploymentTotals, mut total: Vec<f64>, mut upstream: Vec<f64>, window_secs: u64) -> Self {
        #[expect(clippy::cast_precision_loss, reason = "windows are at most 7 days")]
        let minutes = window_secs as f64 / 60.0;
        #[expect(clippy::cast_precision_loss, reason = "request counts are far below 2^53")]
        let (requests, errors) = (totals.requests as f64, totals.errors as f64);
        Self {
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
        }
    }
}

/// The performance report.
#[derive(Debug, Serialize)]
pub(crate) struct PerfReport {
    pub(crate) window: String,
    pub(crate) window_secs: u64,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) deployments: Vec<DeploymentPerf>,
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
