//! The jobs, and what several of them read: the budgets in force and the worker's watermarks.

pub mod alerts;
pub mod archive;
pub mod budgets;
pub mod rollups;

use std::sync::Arc;

use flowgate_common::Settings;
use flowgate_common::budget::BudgetPeriod;
use flowgate_contracts::budgets::tenant_row;
use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};

use crate::runner::Job;
use crate::{Dependencies, InitError};

/// Every job of a worker configured by `settings`.
pub(crate) fn all(settings: &Settings, deps: &Dependencies) -> Result<Vec<Arc<dyn Job>>, InitError> {
    let mut jobs: Vec<Arc<dyn Job>> = vec![
        Arc::new(rollups::Rollups::new(deps.database.clone())),
        Arc::new(budgets::Rollover::new(deps.database.clone(), deps.shared.clone())),
        Arc::new(budgets::Reconcile::new(deps.database.clone(), deps.shared.clone())),
        Arc::new(alerts::Alerts::new(deps.database.clone(), deps.shared.clone(), &settings.worker.alerts)?),
    ];
    if settings.audit.retention_days > 0
        && let Some(s3) = archive_client(&settings.audit.archive)?
    {
        jobs.push(Arc::new(archive::Archive::new(
            deps.database.clone(),
            s3,
            settings.audit.archive.prefix.clone(),
            settings.audit.retention_days,
        )));
    }
    Ok(jobs)
}

/// The archive's S3 client, when one is configured.
fn archive_client(
    settings: &flowgate_common::settings::ArchiveSettings,
) -> Result<Option<flowgate_common::aws::s3::S3Client>, InitError> {
    flowgate_common::aws::s3::S3Client::from_archive_settings(settings, std::time::Duration::from_secs(60))
        .map_err(|error| InitError::Archive(error.to_string()))
}

/// A budget in force: a key's or a tenant's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Its `spend` row: the key id, or `tenant:{id}`.
    pub row: String,
    /// `key` or `tenant`.
    pub whose: &'static str,
    /// The key's or the tenant's id.
    pub id: String,
    /// The tenant it belongs to (itself for a tenant budget).
    pub tenant_id: String,
    /// The key's or tenant's name.
    pub name: String,
    /// The budget per period, nano-dollars (> 0).
    pub limit_nanos: i64,
    /// Its period.
    pub period: BudgetPeriod,
}

/// Every budget in force: keys not revoked with a budget, tenants with a budget.
pub async fn budgets(database: &Database) -> Result<Vec<Budget>, sqlx::Error> {
    let mut out = Vec::new();
    let keys = sqlx::query(
        "SELECT id, tenant_id, name, budget_nanos, budget_period FROM virtual_keys \
         WHERE revoked_at IS NULL AND budget_nanos IS NOT NULL AND budget_nanos > 0 ORDER BY id",
    )
    .fetch_all(database.pool())
    .await?;
    for row in &keys {
        let id: String = row.try_get("id")?;
        out.push(Budget {
            row: id.clone(),
            whose: "key",
            id,
            tenant_id: row.try_get("tenant_id")?,
            name: row.try_get("name")?,
            limit_nanos: row.try_get("budget_nanos")?,
            period: row.try_get::<String, _>("budget_period")?.parse().unwrap_or_default(),
        });
    }
    let tenants = sqlx::query(
        "SELECT id, name, budget_nanos, budget_period FROM tenants \
         WHERE budget_nanos IS NOT NULL AND budget_nanos > 0 ORDER BY id",
    )
    .fetch_all(database.pool())
    .await?;
    for row in &tenants {
        let id: String = row.try_get("id")?;
        out.push(Budget {
            row: tenant_row(&id),
            whose: "tenant",
            tenant_id: id.clone(),
            id,
            name: row.try_get("name")?,
            limit_nanos: row.try_get("budget_nanos")?,
            period: row.try_get::<String, _>("budget_period")?.parse().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The spend recorded in the database for a row's period, and when it was last written.
pub async fn recorded_spend(
    database: &Database,
    row: &str,
    period_start: i64,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    let found = sqlx::query("SELECT spent_nanos, updated_at FROM spend WHERE key_id = $1 AND period_start = $2")
        .bind(row.to_owned())
        .bind(period_start)
        .fetch_optional(database.pool())
        .await?;
    found.map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?))).transpose()
}

/// A watermark of the worker (`worker_state`).
pub async fn watermark(database: &Database, name: &str) -> Result<Option<i64>, sqlx::Error> {
    let found = sqlx::query("SELECT value FROM worker_state WHERE name = $1")
        .bind(name.to_owned())
        .fetch_optional(database.pool())
        .await?;
    found.map(|r| r.try_get::<i64, _>(0)).transpose()
}
