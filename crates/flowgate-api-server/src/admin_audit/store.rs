//! SQL for the admin audit log: one insert per action, pages newest first.

use flowgate_db::Database;
use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};

use super::model::{AdminAuditCursor, AdminAuditFilter, AdminAuditRecord};
use crate::fields::rfc3339;
use crate::sql::Sql;

const COLUMNS: &str = "id, ts, actor, role, tenant_id, auth_method, action, method, path, target, status, \
                       before_state, after_state, source_ip, forwarded_for, user_agent";

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|text| serde_json::from_str(&text).ok())
}

fn record(row: &AnyRow) -> Result<AdminAuditRecord, sqlx::Error> {
    let ts: i64 = row.try_get("ts")?;
    Ok(AdminAuditRecord {
        id: row.try_get("id")?,
        ts,
        time: rfc3339(ts),
        actor: row.try_get("actor")?,
        role: row.try_get("role")?,
        tenant_id: row.try_get("tenant_id")?,
        auth_method: row.try_get("auth_method")?,
        action: row.try_get("action")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        target: row.try_get("target")?,
        status: row.try_get("status")?,
        before: json(row.try_get("before_state")?),
        after: json(row.try_get("after_state")?),
        source_ip: row.try_get("source_ip")?,
        forwarded_for: row.try_get("forwarded_for")?,
        user_agent: row.try_get("user_agent")?,
    })
}

/// Writes one record.
pub(crate) async fn insert(db: &Database, record: &AdminAuditRecord) -> Result<(), sqlx::Error> {
    let text = |value: &Option<serde_json::Value>| value.as_ref().map(serde_json::Value::to_string);
    sqlx::query(
        "INSERT INTO admin_audit (id, ts, actor, role, tenant_id, auth_method, action, method, path, target, \
         status, before_state, after_state, source_ip, forwarded_for, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&record.id)
    .bind(record.ts)
    .bind(&record.actor)
    .bind(&record.role)
    .bind(&record.tenant_id)
    .bind(&record.auth_method)
    .bind(&record.action)
    .bind(&record.method)
    .bind(&record.path)
    .bind(&record.target)
    .bind(record.status)
    .bind(text(&record.before))
    .bind(text(&record.after))
    .bind(&record.source_ip)
    .bind(&record.forwarded_for)
    .bind(&record.user_agent)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Up to `limit` records matching `filter` after `cursor`, newest first, and whether more follow.
pub(crate) async fn fetch_page(
    db: &Database,
    filter: &AdminAuditFilter,
    cursor: Option<&AdminAuditCursor>,
    limit: u32,
) -> Result<(Vec<AdminAuditRecord>, bool), sqlx::Error> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM admin_audit WHERE 1 = 1"));
    if let Some(actor) = &filter.actor {
        sql.push(" AND actor = ").text(actor);
    }
    if let Some(target) = &filter.target {
        sql.push(" AND target = ").text(target);
    }
    if let Some(action) = &filter.action {
        let escaped = action.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        sql.push(" AND action LIKE ").text(&format!("%{escaped}%")).push(" ESCAPE '\\'");
    }
    if let Some(status) = filter.status {
        sql.push(" AND status = ").int(status);
    }
    if let Some(from) = filter.from {
        sql.push(" AND ts >= ").int(from);
    }
    if let Some(to) = filter.to {
        sql.push(" AND ts <= ").int(to);
    }
    if let Some(cursor) = cursor {
        sql.push(" AND (ts < ").int(cursor.ts).push(" OR (ts = ").int(cursor.ts).push(" AND id < ").text(&cursor.id);
        sql.push("))");
    }
    sql.push(" ORDER BY ts DESC, id DESC LIMIT ").int(i64::from(limit) + 1);
    let rows = sql.query(db).fetch_all(db.pool()).await?;
    let mut records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    Ok((records, more))
}
