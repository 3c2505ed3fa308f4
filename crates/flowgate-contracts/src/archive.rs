//! The audit archive's layout in object storage, written by the worker and read back by the
//! api-server (`/api/audit?archived=true`).
//!
//! Records are archived a UTC day at a time, in batches: one batch per run of the archive job that
//! found records of that day past their retention. A batch is
//! - `{prefix}audit/day={YYYY-MM-DD}/{batch}/tenant={tenant}.ndjson.gz` per tenant (the tenant id
//!   percent-encoded; records without a tenant in `untenanted.ndjson.gz`): gzip of one
//!   [`crate::AuditRecord`] JSON document per line, oldest first;
//! - `{prefix}audit/day={YYYY-MM-DD}/{batch}/manifest.json`: a [`Manifest`], written last, once
//!   every object was read back and its checksum matched.
//!
//! Objects are never overwritten: a batch whose records were not deleted (the job stopped between
//! upload and delete) is archived again in a new batch, and readers drop repeated request ids.

use serde::{Deserialize, Serialize};

/// The manifest of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The batch id (a UUIDv7).
    pub batch: String,
    /// Records in the batch.
    pub records: u64,
    /// Its objects.
    pub objects: Vec<ManifestObject>,
    /// When it was written, RFC 3339.
    pub created_at: String,
}

/// One object of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// The object's key.
    pub key: String,
    /// The tenant whose records it holds (`None`: records without a tenant).
    pub tenant_id: Option<String>,
    /// Records in it.
    pub records: u64,
    /// Its size in bytes (compressed).
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the object as stored (compressed).
    pub sha256: String,
    /// The first and last record's `ts` (unix ms).
    pub first_ts: i64,
    /// See `first_ts`.
    pub last_ts: i64,
}

/// The key prefix of a day's batches, e.g. `flowgate/audit/day=2026-03-01/`.
pub fn day_prefix(prefix: &str, day: &str) -> String {
    format!("{prefix}audit/day={day}/")
}

/// Whether `key` is a batch's manifest.
pub fn is_manifest(key: &str) -> bool {
    key.ends_with("/manifest.json")
}
