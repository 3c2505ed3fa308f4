//! Persistence of per-tenant thresholds (`compliance_thresholds`) and of the feedback reports that
//! moved them (`compliance_feedback`), migration `V2__compliance_feedback`.

use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, Set, now_millis};

use crate::detect::{ALL_KINDS, kind_index};
use crate::tenants::{Adjustment, TenantThresholds, Verdict};

/// Thresholds in the SQL store.
#[derive(Debug, Clone)]
pub struct ThresholdStore {
    database: Database,
}

#[expect(clippy::cast_possible_truncation, reason = "thresholds are in [0, 1]")]
fn to_f32(value: f64) -> f32 {
    value.clamp(0.0, 1.0) as f32
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl ThresholdStore {
    /// A store over `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    fn apply(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(String, TenantThresholds)>, sqlx::Error> {
        let mut tenants: Vec<(String, TenantThresholds)> = Vec::new();
        for row in rows {
            let tenant: String = row.try_get("tenant_id")?;
            let kind: String = row.try_get("kind")?;
            let Some(index) = kind_index(&kind) else { continue };
            let position = match tenants.iter().position(|(t, _)| *t == tenant) {
                Some(position) => position,
                None => {
                    tenants.push((tenant, TenantThresholds::default()));
                    tenants.len() - 1
                }
            };
            let entry = &mut tenants[position].1;
            entry.values[index] = to_f32(row.try_get("threshold")?);
            entry.false_positives[index] = count(row.try_get("false_positives")?);
            entry.false_negatives[index] = count(row.try_get("false_negatives")?);
        }
        Ok(tenants)
    }

    /// Every tenant's thresholds.
    pub async fn load_all(&self) -> Result<Vec<(String, TenantThresholds)>, sqlx::Error> {
        let rows = sqlx::query(&self.database.sql(
            "SELECT tenant_id, kind, threshold, false_positives, false_negatives FROM compliance_thresholds \
             ORDER BY tenant_id",
        ))
        .fetch_all(self.database.pool())
        .await?;
        Self::apply(&rows)
    }

    /// One tenant's thresholds (the defaults when it has none stored).
    pub async fn load_tenant(&self, tenant: &str) -> Result<TenantThresholds, sqlx::Error> {
        let rows = sqlx::query(&self.database.sql(
            "SELECT tenant_id, kind, threshold, false_positives, false_negatives FROM compliance_thresholds \
             WHERE tenant_id = $1",
        ))
        .bind(tenant)
        .fetch_all(self.database.pool())
        .await?;
        Ok(Self::apply(&rows)?.pop().map(|(_, t)| t).unwrap_or_default())
    }

    /// Stores the new threshold of `tenant`/`kind` and the report, in one transaction, run
    /// again when the engine reports a conflict (a deadlock, a Galera certification failure).
    pub async fn record(
        &self,
        tenant: &str,
        kind_index: usize,
        verdict: Verdict,
        score: Option<f32>,
        adjustment: &Adjustment,
    ) -> Result<(), sqlx::Error> {
        self.database.retry(|| self.record_once(tenant, kind_index, verdict, score, adjustment)).await
    }

    async fn record_once(
        &self,
        tenant: &str,
        kind_index: usize,
        verdict: Verdict,
        score: Option<f32>,
        adjustment: &Adjustment,
    ) -> Result<(), sqlx::Error> {
        let kind = ALL_KINDS[kind_index];
        let now = now_millis();
        let upsert = self.database.dialect().upsert(
            "compliance_thresholds",
            &["tenant_id", "kind"],
            &[
                Set::Replace("threshold"),
                Set::Replace("false_positives"),
                Set::Replace("false_negatives"),
                Set::Replace("updated_at"),
            ],
        );
        let thresholds = format!(
            "INSERT INTO compliance_thresholds \
             (tenant_id, kind, threshold, false_positives, false_negatives, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6){upsert}"
        );
        let mut tx = self.database.pool().begin().await?;
        sqlx::query(&self.database.sql(&thresholds))
            .bind(tenant)
            .bind(kind)
            .bind(f64::from(adjustment.threshold))
            .bind(i64::try_from(adjustment.false_positives).unwrap_or(i64::MAX))
            .bind(i64::try_from(adjustment.false_negatives).unwrap_or(i64::MAX))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.database.sql(
            "INSERT INTO compliance_feedback \
             (id, tenant_id, kind, verdict, score, previous_threshold, threshold, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        ))
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant)
        .bind(kind)
        .bind(match verdict {
            Verdict::FalsePositive => "false_positive",
            Verdict::FalseNegative => "false_negative",
        })
        .bind(score.map(f64::from))
        .bind(f64::from(adjustment.previous_threshold))
        .bind(f64::from(adjustment.threshold))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flowgate_test_utils::{Engine, TempDir, ThrowawayDb};
    use secrecy::SecretString;

    use super::*;

    async fn round_trip(database: Database) {
        flowgate_db::migrate::run(&database).await.unwrap();
        let store = ThresholdStore::new(database);
        assert!(store.load_all().await.unwrap().is_empty());
        let phone = kind_index("phone").unwrap();
        let injection = kind_index("prompt_injection").unwrap();
        let first = Adjustment { previous_threshold: 0.0, threshold: 0.355, false_positives: 1, false_negatives: 0 };
        store.record("acme", phone, Verdict::FalsePositive, Some(0.7), &first).await.unwrap();
        let second =
            Adjustment { previous_threshold: 0.355, threshold: 0.5325, false_positives: 2, false_negatives: 0 };
        store.record("acme", phone, Verdict::FalsePositive, Some(0.7), &second).await.unwrap();
        let lowered = Adjustment { previous_threshold: 0.5, threshold: 0.45, false_positives: 0, false_negatives: 1 };
        store.record("acme", injection, Verdict::FalseNegative, None, &lowered).await.unwrap();
        store.record("globex", phone, Verdict::FalseNegative, None, &lowered).await.unwrap();

        let all = store.load_all().await.unwrap();
        assert_eq!(all.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(), vec!["acme", "globex"]);
        let acme = store.load_tenant("acme").await.unwrap();
        assert!((acme.values[phone] - 0.5325).abs() < 1e-6);
        assert_eq!((acme.false_positives[phone], acme.false_negatives[injection]), (2, 1));
        assert!((acme.values[injection] - 0.45).abs() < 1e-6);
        assert_eq!(acme.values[kind_index("email").unwrap()], 0.0, "untouched kinds keep the default");
        assert_eq!(store.load_tenant("nobody").await.unwrap(), TenantThresholds::default());
    }

    #[tokio::test]
    async fn thresholds_round_trip_on_sqlite() {
        let dir = TempDir::new();
        round_trip(Database::connect(None, dir.path(), 2, Duration::from_secs(5)).await.unwrap()).await;
    }

    async fn round_trip_on(engine: Engine) {
        let Some(throwaway) = ThrowawayDb::create_on(engine).await else { return };
        let dir = TempDir::new();
        let url = SecretString::from(throwaway.url.clone());
        let database = Database::connect(Some(&url), dir.path(), 2, Duration::from_secs(5)).await.unwrap();
        round_trip(database.clone()).await;
        database.close().await;
        throwaway.drop_db().await;
    }

    #[tokio::test]
    async fn thresholds_round_trip_on_postgres() {
        round_trip_on(Engine::Postgres).await;
    }

    #[tokio::test]
    async fn thresholds_round_trip_on_mariadb() {
        round_trip_on(Engine::MySql).await;
    }
}
