//! Hourly spend rollups: `spend_rollups` holds, per hour, tenant, key and model (asked and used),
//! the requests, tokens and cost of the audit records of that hour.
//!
//! The rolled-up hours are `[rollups.from, rollups.until)` (`worker_state`; whole hours, never the
//! current one). Each run re-rolls the hour before `rollups.until` (records the proxy's spool
//! wrote late), rolls forward, at most [`MAX_SPAN_MS`] at a time, to the start of the current
//! hour, and rolls back to any record older than `rollups.from` (history that predates the first
//! run, or was imported since). A span is rewritten whole in one transaction (its rows deleted,
//! summed again, the marks moved), so a run repeated, or run by two workers, changes nothing.
//!
//! Reports read rollups for the whole hours within the marks and the records themselves outside.

use std::time::Duration;

use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};

use super::watermark;
use crate::JobError;
use crate::runner::Job;

pub use flowgate_contracts::rollups::{FROM_MARK, HOUR_MS, WATERMARK};
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

    /// The oldest record's time (before `before`, when given).
    async fn oldest_record(&self, before: Option<i64>) -> Result<Option<i64>, sqlx::Error> {
        let row = sqlx::query("SELECT MIN(ts) FROM audit_records WHERE ts < $1")
            .bind(before.unwrap_or(i64::MAX))
            .fetch_one(self.database.pool())
            .await?;
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
        for (name, value, keep) in [(WATERMARK, to, ">"), (FROM_MARK, from, "<")] {
            // Marks only widen: `until` never moves back, `from` never forward.
            let sql = format!(
                "INSERT INTO worker_state (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value {keep} worker_state.value \
                 THEN excluded.value ELSE worker_state.value END, updated_at = excluded.updated_at"
            );
            sqlx::query(&sql).bind(name).bind(value).bind(flowgate_db::now_millis()).execute(&mut *tx).await?;
        }
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
        let (until, from_mark) =
            match (watermark(&self.database, WATERMARK).await?, watermark(&self.database, FROM_MARK).await?) {
                (Some(until), Some(from)) => (until, from),
                _ => {
                    // First run: start at the oldest record's hour (or now, over an empty table).
                    let start =
                        self.oldest_record(None).await?.map_or(current_hour, |ts| ts.div_euclid(HOUR_MS) * HOUR_MS);
                    let start = start.min(current_hour);
                    self.roll(start, start).await?;
                    (start, start)
                }
            };
        let mut from = (until - LATE_MS).max(from_mark).min(current_hour);
        let (mut spans, mut rows) = (0, 0);
        while from < current_hour && spans < MAX_SPANS_PER_RUN {
            let to = (from + MAX_SPAN_MS).min(current_hour);
            rows += self.roll(from, to).await?;
            from = to;
            spans += 1;
        }
        let rolled_to = from;
        // Back to records older than the rolled hours.
        let mut back = from_mark;
        while spans < MAX_SPANS_PER_RUN {
            let Some(oldest) = self.oldest_record(Some(back)).await? else { break };
            let start = (oldest.div_euclid(HOUR_MS) * HOUR_MS).max(back - MAX_SPAN_MS);
            rows += self.roll(start, back).await?;
            back = start;
            spans += 1;
        }
        if spans == 0 {
            return Ok("up to date".to_owned());
        }
        Ok(format!(
            "rolled {} to {} ({rows} rollup rows written in {spans} spans)",
            flowgate_common::budget::utc_timestamp(back),
            flowgate_common::budget::utc_timestamp(rolled_to.max(until))
        ))
    }
}
