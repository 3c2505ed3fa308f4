//! SQL for the analytics reports: aggregates over `audit_records`. Only reads.
//!
//! Sums are computed by the database (`CAST(SUM(..) AS BIGINT)`: PostgreSQL sums BIGINT into
//! NUMERIC, which the `Any` driver cannot decode). Latencies are read row by row, newest first,
//! capped per deployment; their percentiles are computed in [`super::model`].

use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::text::{opt_text, text};
use futures_util::TryStreamExt;

use super::model::{DeploymentTotals, GroupBy, MAX_GROUPS, SpendItem, day_label};
use crate::audit::model::AuditFilter;
use crate::audit::store::float;
use crate::fields::usd;
use crate::sql::Sql;

/// Most latency samples per deployment used for percentiles (the newest in the window).
pub(crate) const MAX_SAMPLES: usize = 100_000;

/// The grouping expression of `group_by` (fixed SQL, never from the request).
fn group_expression(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::Key => "key_id",
        GroupBy::Tenant => "tenant_id",
        GroupBy::Model => "COALESCE(model_used, model_requested)",
        GroupBy::Day => "(ts - ts % 86400000)",
    }
}

/// Spend of the records matching `filter`, grouped by `group_by`: the costliest groups first
/// (days: the earliest first), at most [`MAX_GROUPS`] + 1 of them so the caller can tell the
/// report was cut.
pub(crate) async fn spend_rows(
    db: &Database,
    group_by: GroupBy,
    filter: &AuditFilter,
) -> Result<Vec<SpendItem>, sqlx::Error> {
    let expression = group_expression(group_by);
    let bigint = db.dialect().bigint();
    let mut sql = Sql::new(&format!(
        "SELECT {expression} AS grp, COUNT(*) AS requests, \
         CAST(COALESCE(SUM(prompt_tokens), 0) AS {bigint}) AS prompt_tokens, \
         CAST(COALESCE(SUM(completion_tokens), 0) AS {bigint}) AS completion_tokens, \
         CAST(COALESCE(SUM(cost_nanos), 0) AS {bigint}) AS cost_nanos \
         FROM audit_records WHERE 1 = 1"
    ));
    filter.apply(&mut sql);
    sql.push(match group_by {
        GroupBy::Day => " GROUP BY (ts - ts % 86400000) ORDER BY 1 ASC LIMIT ",
        GroupBy::Key => " GROUP BY key_id ORDER BY 5 DESC, 1 ASC LIMIT ",
        GroupBy::Tenant => " GROUP BY tenant_id ORDER BY 5 DESC, 1 ASC LIMIT ",
        GroupBy::Model => " GROUP BY COALESCE(model_used, model_requested) ORDER BY 5 DESC, 1 ASC LIMIT ",
    });
    sql.int(i64::try_from(MAX_GROUPS).unwrap_or(i64::MAX) + 1);
    let rows = sql.query(db).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|row| {
            let group = if group_by == GroupBy::Day {
                row.try_get::<Option<i64>, _>("grp")?.map(|start| day_label(start.div_euclid(86_400_000)))
            } else {
                opt_text(row, "grp")?
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

/// Request and error counts per deployment between `from` and `to` (unix milliseconds), by
/// deployment name.
pub(crate) async fn deployment_totals(db: &Database, from: i64, to: i64) -> Result<Vec<DeploymentTotals>, sqlx::Error> {
    let mut sql = Sql::new(&format!(
        "SELECT deployment, MAX(provider) AS provider, MAX(model_used) AS model, COUNT(*) AS requests, \
         CAST(COALESCE(SUM(CASE WHEN status >= 500 OR error_code IS NOT NULL THEN 1 ELSE 0 END), 0) AS {}) \
         AS errors FROM audit_records WHERE deployment IS NOT NULL AND ts >= ",
        db.dialect().bigint()
    ));
    sql.int(from).push(" AND ts <= ").int(to).push(" GROUP BY deployment ORDER BY deployment");
    let rows = sql.query(db).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|row| {
            Ok(DeploymentTotals {
                deployment: text(row, "deployment")?,
                provider: opt_text(row, "provider")?,
                model: opt_text(row, "model")?,
                requests: row.try_get("requests")?,
                errors: row.try_get("errors")?,
            })
        })
        .collect()
}

/// Total and upstream latencies of `deployment` in the window, newest first, at most
/// [`MAX_SAMPLES`], read row by row.
pub(crate) async fn latencies(
    db: &Database,
    deployment: &str,
    from: i64,
    to: i64,
) -> Result<(Vec<f64>, Vec<f64>), sqlx::Error> {
    let mut sql = Sql::new("SELECT latency_ms, upstream_latency_ms FROM audit_records WHERE deployment = ");
    sql.text(deployment).push(" AND ts >= ").int(from).push(" AND ts <= ").int(to);
    sql.push(" ORDER BY ts DESC LIMIT ").int(i64::try_from(MAX_SAMPLES).unwrap_or(i64::MAX));
    let mut rows = sql.query(db).fetch(db.pool());
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
