//! The spend writer: settled spend is summed in memory under a lock and written to the database
//! in batches on a timer (one transaction per batch), never once per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flowgate_db::sqlx;
use flowgate_db::{Database, Set};
use tokio::sync::{mpsc, oneshot};

use super::now_ms;
use crate::wire::Usage;

/// Summed spend per (row, period start): (tenant, nano-dollars, tokens, requests).
pub(super) type Pending = HashMap<(String, i64), (String, i64, Usage, i64)>;

pub(super) fn merge(
    pending: &mut Pending,
    key: (String, i64),
    (tenant_id, nanos, usage, requests): (&str, i64, Usage, i64),
) {
    let entry = pending.entry(key).or_insert_with(|| (tenant_id.to_owned(), 0, Usage::default(), 0));
    entry.1 += nanos;
    entry.2.prompt_tokens += usage.prompt_tokens;
    entry.2.completion_tokens += usage.completion_tokens;
    entry.3 += requests;
}

/// Writes pending spend to the database every 250 ms (or at once on a flush), one transaction per
/// batch. A failed batch is put back and retried with the next one.
pub(super) async fn write_spend(
    database: Database,
    pending: Arc<Mutex<Pending>>,
    mut flush_rx: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut failing = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut flushed = Vec::new();
        let mut closed = false;
        tokio::select! {
            message = flush_rx.recv() => match message {
                Some(done) => {
                    flushed.push(done);
                    while let Ok(done) = flush_rx.try_recv() {
                        flushed.push(done);
                    }
                }
                None => closed = true,
            },
            _ = ticker.tick() => {}
        }
        let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !batch.is_empty() {
            match write_batch(&database, batch).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("spend recorded again after database errors");
                }
                Ok(()) => {}
                Err((error, failed)) => {
                    if !failing {
                        tracing::warn!(%error, "cannot record spend yet; retrying every 250 ms");
                    }
                    failing = true;
                    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
                    for (key, (tenant_id, nanos, usage, requests)) in failed {
                        merge(&mut pending, key, (&tenant_id, nanos, usage, requests));
                    }
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

async fn write_batch(database: &Database, batch: Pending) -> Result<(), (sqlx::Error, Pending)> {
    let mut tx = match database.pool().begin().await {
        Ok(tx) => tx,
        Err(error) => return Err((error, batch)),
    };
    let upsert = database.dialect().upsert(
        "spend",
        &["key_id", "period_start"],
        &[
            Set::Add("spent_nanos"),
            Set::Add("prompt_tokens"),
            Set::Add("completion_tokens"),
            Set::Add("requests"),
            Set::Replace("updated_at"),
        ],
    );
    let sql = format!(
        "INSERT INTO spend (key_id, tenant_id, period_start, spent_nanos, prompt_tokens, completion_tokens, requests, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8){upsert}"
    );
    let sql = database.sql(&sql);
    for ((row, period_start), (tenant_id, nanos, usage, requests)) in &batch {
        let result = sqlx::query(&sql)
            .bind(row.clone())
            .bind(tenant_id.clone())
            .bind(*period_start)
            .bind(*nanos)
            .bind(i64::try_from(usage.prompt_tokens).unwrap_or(i64::MAX))
            .bind(i64::try_from(usage.completion_tokens).unwrap_or(i64::MAX))
            .bind(*requests)
            .bind(now_ms())
            .execute(&mut *tx)
            .await;
        if let Err(error) = result {
            // Dropping the transaction rolls it back: the whole batch is retried.
            return Err((error, batch));
        }
    }
    tx.commit().await.map_err(|error| (error, batch))
}
