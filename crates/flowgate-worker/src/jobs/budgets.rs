//! Budget periods and counters, kept right without a request having to arrive.
//!
//! **Rollover.** When a budget's period starts (daily, weekly, monthly; in UTC, as the proxy
//! counts them: [`flowgate_common::budget`]), the job opens it: a `spend` row at zero, so reports
//! show the new period at once, and with Redis the period's settled counter loaded from the
//! database, so the first request of the period claims against a counter that is there. Opening
//! a period that is open already changes nothing. The last period's counters are left to expire
//! (requests that started in it still settle against them).
//!
//! **Reconciliation.** The spend recorded in the database is the source of truth; Redis's
//! settled counter is what requests are admitted against. For every budget's current period the
//! job compares them and adjusts the counter by the difference (an increment, so a request settled
//! meanwhile is not lost):
//! - Redis below the database (a Redis restart without persistence, an eviction, a lost
//!   settlement): raised at once;
//! - Redis above the database: lowered only when the database row has not changed for
//!   [`QUIET_MS`] — spend settled in Redis reaches the database within a second, so a difference
//!   that outlives that is drift, not spend on its way.
//!
//! Every change is logged and returned in the run's report.

use std::time::Duration;

use flowgate_common::budget::BudgetPeriod;
use flowgate_contracts::budgets::{SETTLED_TTL, settled_key};
use flowgate_db::{Database, SharedState, sqlx};

use super::{budgets, recorded_spend};
use crate::JobError;
use crate::runner::Job;

/// How long a database row must be unchanged before Redis holding more than it is repaired.
pub const QUIET_MS: i64 = 60_000;

/// The rollover job.
#[derive(Debug)]
pub struct Rollover {
    database: Database,
    shared: SharedState,
}

impl Rollover {
    /// Opens periods in `database` and `shared`.
    pub fn new(database: Database, shared: SharedState) -> Self {
        Self { database, shared }
    }
}

#[async_trait::async_trait]
impl Job for Rollover {
    fn name(&self) -> &'static str {
        "budget-rollover"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn run(&self, now_ms: i64) -> Result<String, JobError> {
        let mut opened = Vec::new();
        for budget in budgets(&self.database).await? {
            if budget.period == BudgetPeriod::Total {
                continue;
            }
            let (start, _) = budget.period.bounds(now_ms);
            let inserted = sqlx::query(
                "INSERT INTO spend (key_id, tenant_id, period_start, spent_nanos, prompt_tokens, completion_tokens, \
                 requests, updated_at) VALUES ($1, $2, $3, 0, 0, 0, 0, $4) ON CONFLICT (key_id, period_start) DO NOTHING",
            )
            .bind(budget.row.clone())
            .bind(budget.tenant_id.clone())
            .bind(start)
            .bind(now_ms)
            .execute(self.database.pool())
            .await?
            .rows_affected();
            if self.shared.is_shared() {
                let spent = recorded_spend(&self.database, &budget.row, start).await?.map_or(0, |(spent, _)| spent);
                self.shared.set_nx(&settled_key(&budget.row, start), spent, SETTLED_TTL).await?;
            }
            if inserted > 0 {
                tracing::info!(budget = %budget.row, period = %budget.period, start = %flowgate_common::budget::utc_timestamp(start), "budget period opened");
                opened.push(format!(
                    "{} {} from {}",
                    budget.row,
                    budget.period,
                    flowgate_common::budget::utc_timestamp(start)
                ));
            }
        }
        Ok(if opened.is_empty() {
            "no period started".to_owned()
        } else {
            format!("opened {} period(s): {}", opened.len(), opened.join(", "))
        })
    }
}

/// One repaired counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The budget's `spend` row.
    pub row: String,
    /// The period's start (unix ms).
    pub period_start: i64,
    /// What Redis held (nano-dollars).
    pub before: i64,
    /// What it holds now: the database's figure.
    pub after: i64,
}

/// The reconciliation job.
#[derive(Debug)]
pub struct Reconcile {
    database: Database,
    shared: SharedState,
}

impl Reconcile {
    /// Reconciles `shared`'s counters with `database`.
    pub fn new(database: Database, shared: SharedState) -> Self {
        Self { database, shared }
    }

    /// Compares and repairs every budget's current period at `now_ms`; returns the repairs.
    pub async fn reconcile(&self, now_ms: i64) -> Result<Vec<Repair>, JobError> {
        let mut repairs = Vec::new();
        if !self.shared.is_shared() {
            // In process the counters and the database are written by the same process.
            return Ok(repairs);
        }
        for budget in budgets(&self.database).await? {
            let (start, _) = budget.period.bounds(now_ms);
            let key = settled_key(&budget.row, start);
            let Some(held) = self.shared.get(&key).await? else {
                // Not loaded: the first claim of the period loads it from the database.
                continue;
            };
            let held: i64 =
                std::str::from_utf8(&held).ok().and_then(|text| text.trim().parse().ok()).ok_or_else(|| {
                    JobError::Other(format!("the counter of {} holds something that is not a number", budget.row))
                })?;
            let (recorded, updated_at) = recorded_spend(&self.database, &budget.row, start).await?.unwrap_or((0, 0));
            let drift = recorded - held;
            let repair = drift > 0 || (drift < 0 && now_ms - updated_at >= QUIET_MS);
            if !repair {
                continue;
            }
            let after = self.shared.incr_by(&key, drift, SETTLED_TTL).await?;
            tracing::warn!(budget = %budget.row, period_start = start, before = held, after, recorded, "budget counter repaired");
            repairs.push(Repair { row: budget.row, period_start: start, before: held, after });
        }
        Ok(repairs)
    }
}

#[async_trait::async_trait]
impl Job for Reconcile {
    fn name(&self) -> &'static str {
        "budget-reconcile"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn run(&self, now_ms: i64) -> Result<String, JobError> {
        if !self.shared.is_shared() {
            return Ok("no Redis: nothing to reconcile".to_owned());
        }
        let repairs = self.reconcile(now_ms).await?;
        if repairs.is_empty() {
            return Ok("every counter matches the database".to_owned());
        }
        let changes: Vec<String> =
            repairs.iter().map(|r| format!("{} {} -> {} nano-USD", r.row, r.before, r.after)).collect();
        Ok(format!("repaired {} counter(s): {}", repairs.len(), changes.join(", ")))
    }
}
