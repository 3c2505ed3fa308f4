//! SQL of `/api/alerts`: alerts by page, and their deliveries. Only reads.

use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};

use super::model::{AlertFilter, AlertRow, DeliveryView};
use crate::fields::rfc3339;
use crate::sql::Sql;

/// One page of alerts matching `filter`, oldest first, and whether there are more.
pub(crate) async fn list_alerts(
    db: &Database,
    filter: &AlertFilter,
    limit: u32,
) -> Result<(Vec<AlertRow>, bool), sqlx::Error> {
    let mut sql = Sql::new(
        "SELECT id, kind, subject, tenant_id, period_start, threshold, message, document, status, created_at, \
         updated_at FROM alerts WHERE 1 = 1",
    );
    if let Some(status) = &filter.status {
        sql.push(" AND status = ").text(status);
    }
    if let Some(kind) = &filter.kind {
        sql.push(" AND kind = ").text(kind);
    }
    if let Some(tenant_id) = &filter.tenant_id {
        sql.push(" AND tenant_id = ").text(tenant_id);
    }
    if let Some(cursor) = &filter.cursor {
        sql.push(" AND (created_at > ").int(cursor.created_at);
        sql.push(" OR (created_at = ").int(cursor.created_at).push(" AND id > ").text(&cursor.id).push("))");
    }
    sql.push(" ORDER BY created_at, id LIMIT ").int(i64::from(limit) + 1);
    let rows = sql.query(db).fetch_all(db.pool()).await?;
    let mut alerts = rows
        .iter()
        .map(|row| {
            Ok(AlertRow {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                subject: row.try_get("subject")?,
                tenant_id: row.try_get("tenant_id")?,
                period_start: row.try_get("period_start")?,
                threshold: row.try_get("threshold")?,
                message: row.try_get("message")?,
                document: row.try_get("document")?,
                status: row.try_get("status")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let more = alerts.len() > limit as usize;
    alerts.truncate(limit as usize);
    Ok((alerts, more))
}

/// Every delivery attempt of the alert `id`, in order.
pub(crate) async fn deliveries(db: &Database, id: &str) -> Result<Vec<DeliveryView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT webhook, attempt, status_code, error, delivered, attempted_at FROM alert_deliveries \
         WHERE alert_id = $1 ORDER BY attempted_at, webhook, attempt",
    )
    .bind(id.to_owned())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DeliveryView {
                webhook: row.try_get("webhook")?,
                attempt: row.try_get("attempt")?,
                delivered: row.try_get::<i64, _>("delivered")? == 1,
                status_code: row.try_get("status_code")?,
                error: row.try_get("error")?,
                attempted_at: rfc3339(row.try_get("attempted_at")?),
            })
        })
        .collect()
}
