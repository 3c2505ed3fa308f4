//! SQL for the analytics reports: aggregates over `audit_records` and the worker's hourly
//! `spend_rollups`. Only reads.
//!
//! Sums are computed by the database (`CAST(SUM(..) AS BIGINT)`: PostgreSQL sums BIGINT into
//! NUMERIC, which the `Any` driver cannot decode). Latencies are read row by row, newest first,
//! capped per deployment; their percentiles are computed in [`super::model`].

use flowgate_contracts::rollups::{FROM_MARK, HOUR_MS, WATERMARK};
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

/// The rows of `audit_records` to sum, with their group (fixed SQL, never from the request).
fn raw_select(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::Key => {
            "SELECT key_id AS grp, 1 AS requests, prompt_tokens, completion_tokens, cost_nanos FROM audit_records WHERE 1 = 1"
        }
        GroupBy::Tenant => {
            "SELECT tenant_id AS grp, 1 AS requests, prompt_tokens, completion_tokens, cost_nanos FROM audit_records WHERE 1 = 1"
        }
        GroupBy::Model => {
            "SELECT COALESCE(model_used, model_requested) AS grp, 1 AS requests, prompt_tokens, completion_tokens, cost_nanos FROM audit_records WHERE 1 = 1"
        }
        GroupBy::Day => {
            "SELECT (ts - ts % 86400000) AS grp, 1 AS requests, prompt_tokens, completion_tokens, cost_nanos FROM audit_records WHERE 1 = 1"
        }
    }
}

/// The same over `spend_rollups`, up to the hour bounds.
fn rollup_select(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::Key => {
            "SELECT key_id AS grp, requests, prompt_tokens, completion_tokens, cost_nanos FROM spend_rollups WHERE hour_start >= "
        }
        GroupBy::Tenant => {
            "SELECT tenant_id AS grp, requests, prompt_tokens, completion_tokens, cost_nanos FROM spend_rollups WHERE hour_start >= "
        }
        GroupBy::Model => {
            "SELECT COALESCE(model_used, model_requested) AS grp, requests, prompt_tokens, completion_tokens, cost_nanos FROM spend_rollups WHERE hour_start >= "
        }
        GroupBy::Day => {
            "SELECT (hour_start - hour_start % 86400000) AS grp, requests, prompt_tokens, completion_tokens, cost_nanos FROM spend_rollups WHERE hour_start >= "
        }
    }
}

fn order_and_limit(sql: &mut Sql, group_by: GroupBy) {
    sql.push(match group_by {
        GroupBy::Day => " GROUP BY grp ORDER BY 1 ASC LIMIT ",
        _ => " GROUP BY grp ORDER BY 5 DESC, 1 ASC LIMIT ",
    });
    sql.int(i64::try_from(MAX_GROUPS).unwrap_or(i64::MAX) + 1);
}

/// The rolled-up hours `[from, until)`: audit records in them are summed in `spend_rollups`.
async fn rolled_range(db: &Database) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(&db.sql("SELECT name, value FROM worker_state WHERE name = $1 OR name = $2"))
        .bind(FROM_MARK)
        .bind(WATERMARK)
        .fetch_all(db.pool())
        .await?;
    let (mut from, mut until) = (None, None);
    for row in &rows {
        let name: String = row.try_get(0)?;
        let value: i64 = row.try_get(1)?;
        if name == FROM_MARK {
            from = Some(value);
        } else {
            until = Some(value);
        }
    }
    Ok(from.zip(until))
}

/// The whole hours `[start, end)` of the report that rollups answer: inside `[from, to)` and
/// within the rolled-up hours `[rolled_from, until)`. `None` when there is none.
pub(crate) fn rolled_hours(from: Option<i64>, to: Option<i64>, rolled_from: i64, until: i64) -> Option<(i64, i64)> {
    let start = from.map_or(rolled_from, |from| {
        let hour = from.div_euclid(HOUR_MS).saturating_mul(HOUR_MS);
        if hour == from { hour } else { hour.saturating_add(HOUR_MS) }
    });
    let start = start.max(rolled_from);
    let end = to.map_or(until, |to| to.div_euclid(HOUR_MS).saturating_mul(HOUR_MS)).min(until);
    (start < end).then_some((start, end))
}

/// Spend of the records matching `filter`, grouped by `group_by`: the costliest groups first
/// (days: the earliest first), at most [`MAX_GROUPS`] + 1 of them so the caller can tell the
/// report was cut.
///
/// Whole hours the worker has rolled up are read from `spend_rollups`; the rest of the range
/// (its ragged edges, and what is newer than the rollups) from the records themselves.
pub(crate) async fn spend_rows(
    db: &Database,
    group_by: GroupBy,
    filter: &AuditFilter,
) -> Result<Vec<SpendItem>, sqlx::Error> {
    let rolled = if filter.rollup_compatible() {
        rolled_range(db)
            .await?
            .and_then(|(rolled_from, until)| rolled_hours(filter.from, filter.to, rolled_from, until))
    } else {
        None
    };
    let bigint = db.dialect().bigint();
    let mut sql = Sql::new(&format!(
        "SELECT grp, CAST(SUM(requests) AS {bigint}) AS requests, \
         CAST(COALESCE(SUM(prompt_tokens), 0) AS {bigint}) AS prompt_tokens, \
         CAST(COALESCE(SUM(completion_tokens), 0) AS {bigint}) AS completion_tokens, \
         CAST(COALESCE(SUM(cost_nanos), 0) AS {bigint}) AS cost_nanos FROM ("
    ));
    match rolled {
        None => {
            sql.push(raw_select(group_by));
            filter.apply(&mut sql);
        }
        Some((start, end)) => {
            sql.push(rollup_select(group_by));
            sql.int(start).push(" AND hour_start < ").int(end);
            filter.apply_identity(&mut sql);
            sql.push(" UNION ALL ").push(raw_select(group_by));
            filter.apply(&mut sql);
            sql.push(" AND (ts < ").int(start).push(" OR ts >= ").int(end).push(")");
        }
    }
    sql.push(") AS spend");
    order_and_limit(&mut sql, group_by);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollups_answer_the_whole_hours_inside_the_range_and_the_rolled_hours() {
        let h = HOUR_MS;
        assert_eq!(rolled_hours(None, None, 0, 10 * h), Some((0, 10 * h)));
        assert_eq!(rolled_hours(None, None, 3 * h, 10 * h), Some((3 * h, 10 * h)));
        assert_eq!(rolled_hours(Some(2 * h), Some(5 * h), 0, 10 * h), Some((2 * h, 5 * h)));
        assert_eq!(rolled_hours(Some(2 * h + 1), Some(5 * h - 1), 0, 10 * h), Some((3 * h, 4 * h)));
        assert_eq!(rolled_hours(Some(2 * h), None, 0, 4 * h), Some((2 * h, 4 * h)));
        assert_eq!(rolled_hours(Some(2 * h), None, 3 * h, 4 * h), Some((3 * h, 4 * h)), "older than the rollups");
        assert_eq!(rolled_hours(Some(2 * h + 1), Some(3 * h - 1), 0, 10 * h), None, "no whole hour");
        assert_eq!(rolled_hours(Some(12 * h), None, 0, 10 * h), None, "all newer than the rollups");
        assert_eq!(rolled_hours(None, None, 5 * h, 5 * h), None, "nothing rolled yet");
    }
}
