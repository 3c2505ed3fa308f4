//! Audit retention: records older than `audit.retention_days` (whole UTC days) are exported to
//! S3-compatible object storage, verified there, and only then deleted from the database.
//!
//! A day is archived as one batch ([`flowgate_contracts::archive`]): per tenant, the day's
//! records as gzip NDJSON; each object is read back and its SHA-256 compared with what was sent;
//! then the manifest (every object's key, count and checksum) is written and read back too. Only
//! when all of that succeeded are exactly the archived rows deleted, in one transaction. A failed
//! upload or check deletes nothing (the day is tried again on the next run, as a new batch).

use std::io::Write;
use std::time::Duration;

use flowgate_common::aws::s3::{S3Client, S3Error};
use flowgate_common::aws::sigv4;
use flowgate_common::budget::utc_timestamp;
use flowgate_contracts::AUDIT_COLUMNS;
use flowgate_contracts::archive::{Manifest, ManifestObject, day_prefix};
use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};

use crate::JobError;
use crate::runner::Job;

const DAY_MS: i64 = 86_400_000;
/// Most days archived in one run.
const DAYS_PER_RUN: usize = 7;
/// Request ids per `DELETE ... IN (...)` statement.
const DELETE_CHUNK: usize = 500;

/// The archive job.
#[derive(Debug)]
pub struct Archive {
    database: Database,
    s3: S3Client,
    prefix: String,
    retention_days: u32,
}

impl From<S3Error> for JobError {
    fn from(error: S3Error) -> Self {
        Self::Other(error.to_string())
    }
}

/// `YYYY-MM-DD` of a day start.
fn day_label(day_start: i64) -> String {
    utc_timestamp(day_start).get(..10).unwrap_or_default().to_owned()
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, JobError> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).map_err(|e| JobError::Other(format!("gzip: {e}")))?;
    encoder.finish().map_err(|e| JobError::Other(format!("gzip: {e}")))
}

impl Archive {
    /// Archives `database`'s records older than `retention_days` into `s3` under `prefix`.
    pub fn new(database: Database, s3: S3Client, prefix: String, retention_days: u32) -> Self {
        Self { database, s3, prefix, retention_days }
    }

    /// Stores `body` at `key`, reads it back and compares checksums.
    async fn put_verified(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<String, JobError> {
        let sha256 = sigv4::sha256_hex(&body);
        self.s3.put(key, body, content_type).await?;
        let stored =
            self.s3.get(key).await?.ok_or_else(|| JobError::Other(format!("{key} is missing after upload")))?;
        let found = sigv4::sha256_hex(&stored);
        if found != sha256 {
            return Err(JobError::Other(format!("{key}: stored checksum {found} differs from the uploaded {sha256}")));
        }
        Ok(sha256)
    }

    /// Archives the day starting at `day_start`; returns the records archived and deleted.
    pub async fn archive_day(&self, day_start: i64, now_ms: i64) -> Result<u64, JobError> {
        let day = day_label(day_start);
        let batch = uuid::Uuid::now_v7().to_string();
        let base = format!("{}{batch}/", day_prefix(&self.prefix, &day));
        let tenants: Vec<Option<String>> =
            sqlx::query("SELECT DISTINCT tenant_id FROM audit_records WHERE ts >= $1 AND ts < $2")
                .bind(day_start)
                .bind(day_start + DAY_MS)
                .fetch_all(self.database.pool())
                .await?
                .iter()
                .map(|row| row.try_get::<Option<String>, _>(0))
                .collect::<Result<_, _>>()?;
        let columns = AUDIT_COLUMNS.join(", ");
        let mut objects = Vec::new();
        let mut archived_ids = Vec::new();
        for tenant in tenants {
            let sql = format!(
                "SELECT {columns} FROM audit_records WHERE ts >= $1 AND ts < $2 AND {} ORDER BY ts, request_id",
                if tenant.is_some() { "tenant_id = $3" } else { "tenant_id IS NULL" }
            );
            let mut query = sqlx::query(&sql).bind(day_start).bind(day_start + DAY_MS);
            if let Some(tenant) = &tenant {
                query = query.bind(tenant.clone());
            }
            let rows = query.fetch_all(self.database.pool()).await?;
            let mut ndjson = Vec::new();
            let (mut first_ts, mut last_ts) = (i64::MAX, i64::MIN);
            for row in &rows {
                let record = flowgate_db::audit::record(row)?;
                first_ts = first_ts.min(record.ts);
                last_ts = last_ts.max(record.ts);
                serde_json::to_writer(&mut ndjson, &record).map_err(|e| JobError::Other(e.to_string()))?;
                ndjson.push(b'\n');
                archived_ids.push(record.request_id);
            }
            if rows.is_empty() {
                continue;
            }
            let name = match &tenant {
                Some(tenant) => format!("tenant={}.ndjson.gz", sigv4::uri_encode(tenant, false)),
                None => "untenanted.ndjson.gz".to_owned(),
            };
            let key = format!("{base}{name}");
            let body = gzip(&ndjson)?;
            let bytes = u64::try_from(body.len()).unwrap_or(u64::MAX);
            let sha256 = self.put_verified(&key, body, "application/gzip").await?;
            objects.push(ManifestObject {
                key,
                tenant_id: tenant,
                records: u64::try_from(rows.len()).unwrap_or(u64::MAX),
                bytes,
                sha256,
                first_ts,
                last_ts,
            });
        }
        if archived_ids.is_empty() {
            return Ok(0);
        }
        let records = u64::try_from(archived_ids.len()).unwrap_or(u64::MAX);
        let manifest = Manifest { day: day.clone(), batch, records, objects, created_at: utc_timestamp(now_ms) };
        let manifest_body = serde_json::to_vec_pretty(&manifest).map_err(|e| JobError::Other(e.to_string()))?;
        self.put_verified(&format!("{base}manifest.json"), manifest_body, "application/json").await?;
        // Everything is stored and checked: delete exactly the archived rows, all or none.
        let mut tx = self.database.pool().begin().await?;
        for chunk in archived_ids.chunks(DELETE_CHUNK) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!("DELETE FROM audit_records WHERE request_id IN ({})", placeholders.join(", "));
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id.clone());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        tracing::info!(day, records, objects = manifest.objects.len(), "audit day archived and deleted");
        Ok(records)
    }
}

#[async_trait::async_trait]
impl Job for Archive {
    fn name(&self) -> &'static str {
        "audit-archive"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(300)
    }

    async fn run(&self, now_ms: i64) -> Result<String, JobError> {
        let cutoff = (now_ms.div_euclid(DAY_MS) - i64::from(self.retention_days)) * DAY_MS;
        let mut done = Vec::new();
        let mut total = 0;
        for _ in 0..DAYS_PER_RUN {
            let oldest: Option<i64> = sqlx::query("SELECT MIN(ts) FROM audit_records WHERE ts < $1")
                .bind(cutoff)
                .fetch_one(self.database.pool())
                .await?
                .try_get(0)?;
            let Some(oldest) = oldest else { break };
            let day_start = oldest.div_euclid(DAY_MS) * DAY_MS;
            let records = self.archive_day(day_start, now_ms).await?;
            if records == 0 {
                break;
            }
            total += records;
            done.push(day_label(day_start));
        }
        Ok(if done.is_empty() {
            format!("nothing older than {}", day_label(cutoff))
        } else {
            format!("archived and deleted {total} record(s) of {}", done.join(", "))
        })
    }
}
