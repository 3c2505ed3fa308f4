//! SQL for the audit trail: one page of records matching a filter, newest first. Only reads.

use flowgate_contracts::audit::{AUDIT_COLUMNS, AuditRecord};
use flowgate_db::Database;
use flowgate_db::sqlx;

use super::model::{AuditCursor, AuditFilter};
use crate::sql::Sql;

pub(crate) use flowgate_db::audit::float;
use flowgate_db::audit::record;

/// Up to `limit` records matching `filter` after `cursor`, newest first, and whether more follow.
pub(crate) async fn fetch_page(
    db: &Database,
    filter: &AuditFilter,
    cursor: Option<&AuditCursor>,
    limit: u32,
) -> Result<(Vec<AuditRecord>, bool), sqlx::Error> {
    let columns = AUDIT_COLUMNS.join(", ");
    let mut sql = Sql::new(&format!("SELECT {columns} FROM audit_records WHERE 1 = 1"));
    filter.apply(&mut sql);
    if let Some(cursor) = cursor {
        // A row-value comparison, so PostgreSQL and SQLite seek the (ts, request_id) index.
        sql.push(" AND (ts, request_id) < (").int(cursor.ts).push(", ").text(&cursor.request_id).push(")");
    }
    sql.push(" ORDER BY ts DESC, request_id DESC LIMIT ").int(i64::from(limit) + 1);
    let rows = sql.query(db).fetch_all(db.pool()).await?;
    let mut records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    Ok((records, more))
}
