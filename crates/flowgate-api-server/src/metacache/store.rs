//! The metacache's reads: savings from the audit records of hits (SQL), and the semantic entries
//! from the entries stream the proxies publish to.

use std::collections::BTreeMap;

use flowgate_contracts::metacache::{ENTRIES_STREAM, METADATA_PHASE, StreamRecord};
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, SharedState};

use super::model::{Savings, SavingsItem};
use crate::fields::usd;
use crate::sql::Sql;

/// Most tenant and model groups in the savings.
const MAX_GROUPS: i64 = 500;

/// Per tenant and model: the hits and what their answers cost when they were not hits (the mean
/// cost and upstream latency of that tenant's and model's answered requests), the largest first.
pub(crate) async fn savings(db: &Database) -> Result<Vec<SavingsItem>, sqlx::Error> {
    let mut sql = Sql::new(
        "SELECT tenant_id, model_requested, \
         CAST(COALESCE(SUM(CASE WHEN cache_hit <> 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS hits, \
         CAST(COALESCE(SUM(CASE WHEN cache_hit = 0 AND status = 200 THEN 1 ELSE 0 END), 0) AS BIGINT) AS answered, \
         CAST(COALESCE(SUM(CASE WHEN cache_hit = 0 AND status = 200 THEN cost_nanos ELSE 0 END), 0) AS BIGINT) AS cost, \
         CAST(COALESCE(SUM(CASE WHEN cache_hit = 0 AND status = 200 THEN upstream_latency_ms ELSE 0 END), 0) AS BIGINT) AS latency \
         FROM audit_records GROUP BY tenant_id, model_requested \
         HAVING SUM(CASE WHEN cache_hit <> 0 THEN 1 ELSE 0 END) > 0 ORDER BY 3 DESC LIMIT ",
    );
    sql.int(MAX_GROUPS);
    let rows = sql.query(db).fetch_all(db.pool()).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let tenant_id: Option<String> = row.try_get("tenant_id")?;
        let model: Option<String> = row.try_get("model_requested")?;
        let hits: i64 = row.try_get("hits")?;
        let answered: i64 = row.try_get("answered")?;
        let cost: i64 = row.try_get("cost")?;
        let latency: i64 = row.try_get("latency")?;
        let (tenant_id, model) = (tenant_id.unwrap_or_default(), model.unwrap_or_default());
        let cost_nanos = if answered > 0 { cost.saturating_mul(hits) / answered } else { 0 };
        #[expect(clippy::cast_precision_loss, reason = "milliseconds")]
        let latency_ms = if answered > 0 { latency as f64 * hits as f64 / answered as f64 } else { 0.0 };
        let phases = hit_phases(db, &tenant_id, &model).await?;
        items.push(SavingsItem {
            tenant_id,
            model,
            phases,
            savings: Savings {
                hits: u64::try_from(hits).unwrap_or(0),
                cost_usd: usd(cost_nanos),
                cost_nanos,
                latency_ms,
            },
        });
    }
    items.sort_by(|a, b| b.savings.cost_nanos.cmp(&a.savings.cost_nanos).then(b.savings.hits.cmp(&a.savings.hits)));
    Ok(items)
}

/// The hits of a tenant and model by phase (from their records' metadata; the newest 10,000).
async fn hit_phases(db: &Database, tenant: &str, model: &str) -> Result<BTreeMap<String, u64>, sqlx::Error> {
    let mut sql = Sql::new("SELECT metadata FROM audit_records WHERE cache_hit <> 0 AND tenant_id = ");
    sql.text(tenant).push(" AND model_requested = ").text(model).push(" ORDER BY ts DESC LIMIT 10000");
    let rows = sql.query(db).fetch_all(db.pool()).await?;
    let mut phases = BTreeMap::new();
    for row in rows {
        let metadata: Option<String> = row.try_get("metadata")?;
        let phase = metadata
            .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
            .and_then(|m| m.get(METADATA_PHASE).and_then(serde_json::Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "exact".to_owned());
        *phases.entry(phase).or_insert(0) += 1;
    }
    Ok(phases)
}

/// One semantic entry as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct EntryView {
    pub(crate) tenant_id: String,
    pub(crate) model: String,
    /// The embedded text, only for tenants that store prompts.
    pub(crate) text: Option<String>,
    pub(crate) created_at_ms: u64,
    pub(crate) expires_at_ms: u64,
    pub(crate) stream: bool,
}

/// The live semantic entries on the stream, newest first, of `tenant` when given (and of `model`).
pub(crate) async fn entries(
    shared: &SharedState,
    tenant: Option<&str>,
    model: Option<&str>,
    now_ms: u64,
) -> Result<Vec<EntryView>, flowgate_db::SharedError> {
    let mut live: Vec<EntryView> = Vec::new();
    let mut after = "0-0".to_owned();
    loop {
        let records = shared.stream_after(ENTRIES_STREAM, &after, 1000).await?;
        let Some((last, _)) = records.last() else { break };
        after.clone_from(last);
        for (_, payload) in records {
            match serde_json::from_slice::<StreamRecord>(&payload) {
                Ok(StreamRecord::Put(entry)) => live.push(EntryView {
                    tenant_id: entry.tenant,
                    model: entry.model,
                    text: Some(entry.text),
                    created_at_ms: entry.created_at_ms,
                    expires_at_ms: entry.expires_at_ms,
                    stream: entry.stream,
                }),
                Ok(StreamRecord::Delete { tenant, model }) => live.retain(|e| {
                    !(tenant.as_deref().is_none_or(|t| e.tenant_id == t)
                        && model.as_deref().is_none_or(|m| e.model == m))
                }),
                Err(_) => {}
            }
        }
    }
    live.retain(|e| {
        e.expires_at_ms > now_ms && tenant.is_none_or(|t| e.tenant_id == t) && model.is_none_or(|m| e.model == m)
    });
    live.reverse();
    Ok(live)
}
