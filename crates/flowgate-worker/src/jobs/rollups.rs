//! Hourly spend rollups: `spend_rollups` holds, per hour, tenant, key and model (asked and used),
//! the requests, tokens and cost of the audit records of that hour.
//!
//! The watermark `rollups.until` says up to where records are rolled up (always a whole hour, never
//! the current one). Each run re-rolls the hour before the watermark (records the proxy's spool
//! wrote late) and then rolls forward, at most [`MAX_SPAN_MS`] at a time, to the start of the
//! current hour. A span is rewritten whole in one transaction (its rows deleted, summed again,
//! the watermark moved), so a run repeated, or run by two workers, changes nothing.
//!
//! Reports read rollups before the watermark and the records themselves after it.

use std::time::Duration;

use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};

use super::watermark;
use crate::JobError;
use crate::runner::Job;

pub use flowgate_contracts::rollups::{HOUR_MS, WATERMARK};
/// Most audit time rolled up in one transaction (a backfill proceeds a day at a time).
pub const MAX_SPAN_MS: i64 = 24 * HOUR_MS;
/// Hours before the watermark rolled again on each run, for records written late.
const LATE_MS: i64 = HOUR_MS;
/// Most spans rolled in one run.
const MAX_SPANS_PER_RUN: usize = 32;

/// The rollup job.
#[derive(Debug)]
pub struct Rollups {
    database: Database,
}

impl Rollups {
    /// Rolls up `database`'s audit records.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    async fn oldest_record(&self) -> Result<Option<i64>, sqlx::Error> {
        let row = sqlx::query("SELECT MIN(ts) FROM audit_records").fetch_one(self.database.pool()).await?;
        row.try_get::<Option<i64>, _>(0)
    }

    /// Rewrites the rollups of `[from, to)` and moves the watermark to `to` (never back).
    pub async fn roll(&self, from: i64, to: i64) -> Result<u64, sqlx::Error> {
        let mut tx = self.database.pool().begin().await?;
        sqlx::query("DELETE FROM spend_rollups WHERE hour_start >= $1 AND hour_start < $2")
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO spend_rollups (hour_start, tenant_id, key_id, model_requested, model_used, requests, \
             prompt_tokens, completion_tokens, cost_nanos) \
             SELECT (ts / 3600000) * 3600000, tenant_id, key_id, model_requested, model_used, COUNT(*), \
             CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) \
             FROM audit_records WHERE ts >= $1 AND ts < $2 \
             GROUP BY (ts / 3600000) * 3600000, tenant_id, key_id, model_requested, model_used",
        )
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO worker_state (name, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value > worker_state.value \
             THEN excluded.value ELSE worker_state.value END, updated_at = excluded.updated_at",
        )
        .bind(WATERMARK)
        .bind(to)
        .bind(flowgate_db::now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted)
    }
}

#[async_trait::async_trait]
impl Job for Rollups {
    fn name(&self) -> &'static str {
        "rollups"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn run(&self, now_ms: i64) -> Result<String, JobError> {
        let current_hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let until = match watermark(&self.database, WATERMARK).await? {
            Some(until) => until,
            None => match self.oldest_record().await? {
                Some(oldest) => oldest.div_euclid(HOUR_MS) * HOUR_MS,
                None => current_hour,
            },
        };
        let mut from = (until - LATE_MS).min(current_hour);
        let (mut spans, mut rows) = (0, 0);
        while from < current_hour && spans < MAX_SPANS_PER_RUN {
            let to = (from + MAX_SPAN_MS).min(current_hour);
            rows += self.roll(from, to).await?;
            from = to;
            spans += 1;
        }
        if spans == 0 {
            // Nothing to roll yet (no complete hour since the first record): keep the mark.
            if watermark(&self.database, WATERMARK).await?.is_none() {
                self.roll(current_hour, current_hour).await?;
            }
            return Ok("up to date".to_owned());
        }
        Ok(format!(
            "rolled up to {} ({rows} rollup rows written in {spans} spans)",
            flowgate_common::budget::utc_timestamp(from)
        ))
    }
}
