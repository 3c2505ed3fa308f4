//! `/api/analytics/spend` and `/api/providers/perf`: thin handlers over [`super::store`].

use axum::Json;
use axum::extract::State;
use flowgate_db::now_millis;

use super::model::{DeploymentPerf, PerfQuery, PerfReport, SpendQuery, SpendReport};
use super::store;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::fields::rfc3339;
use crate::state::AppState;

/// `GET /api/analytics/spend?group_by=key|tenant|model|day&from=&to=` (plus optional `key_id`,
/// `tenant_id`, `model` filters).
#[tracing::instrument(name = "analytics.spend", skip_all, fields(group_by))]
pub(crate) async fn spend(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SpendQuery>,
) -> Result<Json<SpendReport>, ApiError> {
    let group_by = query.group_by();
    tracing::Span::current().record("group_by", tracing::field::debug(group_by));
    let filter = query.filter()?;
    let items = store::spend_rows(&state.database, group_by, &filter).await?;
    Ok(Json(SpendReport::new(group_by, &filter, items)))
}

/// `GET /api/providers/perf?window=15m`: per deployment over the window: request rate,
/// latency percentiles, error rate. Cooldown state lives in each proxy's memory and is not here
/// (see the proxy's `/health`, or `GET /api/health/comprehensive`).
#[tracing::instrument(name = "providers.perf", skip_all, fields(window))]
pub(crate) async fn perf(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PerfQuery>,
) -> Result<Json<PerfReport>, ApiError> {
    let (window, window_secs) = query.window()?;
    tracing::Span::current().record("window", window.as_str());
    let to = now_millis();
    let from = to - i64::try_from(window_secs).unwrap_or(i64::MAX / 1000) * 1000;
    let mut deployments = Vec::new();
    for totals in store::deployment_totals(&state.database, from, to).await? {
        let (total, upstream) = store::latencies(&state.database, &totals.deployment, from, to).await?;
        deployments.push(DeploymentPerf::new(totals, total, upstream, window_secs));
    }
    Ok(Json(PerfReport { window, window_secs, from: rfc3339(from), to: rfc3339(to), deployments }))
}
