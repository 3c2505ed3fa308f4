//! `GET /api/audit?archived=true`: records the worker archived to object storage, read back.
//!
//! The range (`from`, `to`, both required, at most [`MAX_DAYS`] days) names the UTC days to read;
//! for each, every batch's manifest is read, then the objects of the tenants asked (all, or the
//! `tenant_id` filter's), each checked against the manifest's SHA-256 before it is decompressed.
//! The other filters, the cursor and the order (newest first) are those of the database query; a
//! request id archived twice (a batch repeated after an interrupted run) is returned once.

use std::collections::HashSet;
use std::io::Read;
use std::time::Duration;

use flowgate_common::Settings;
use flowgate_common::aws::s3::{S3Client, S3Error};
use flowgate_common::aws::sigv4;
use flowgate_common::budget::utc_timestamp;
use flowgate_contracts::AuditRecord;
use flowgate_contracts::archive::{Manifest, day_prefix, is_manifest};

use super::model::{AuditCursor, AuditFilter};
use crate::error::ApiError;

/// Longest range read from the archive in one query.
pub(crate) const MAX_DAYS: i64 = 31;
const DAY_MS: i64 = 86_400_000;

/// The archive's client and layout.
#[derive(Debug)]
pub(crate) struct Archive {
    client: S3Client,
    prefix: String,
}

impl Archive {
    /// The archive of `settings`, when configured.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Option<Self>, S3Error> {
        let archive = &settings.audit.archive;
        Ok(S3Client::from_archive_settings(archive, Duration::from_secs(30))?
            .map(|client| Self { client, prefix: archive.prefix.clone() }))
    }
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    ApiError::ArchiveUnavailable(error.to_string())
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

/// Up to `limit` archived records matching `filter` after `cursor`, newest first, and whether
/// more follow.
pub(crate) async fn fetch_page(
    archive: Option<&Archive>,
    filter: &AuditFilter,
    cursor: Option<&AuditCursor>,
    limit: u32,
) -> Result<(Vec<AuditRecord>, bool), ApiError> {
    let Some(archive) = archive else {
        return Err(ApiError::field("archived", "no audit archive is configured (S3_ENDPOINT_URL, S3_BUCKET)"));
    };
    let (Some(from), Some(to)) = (filter.from, filter.to) else {
        return Err(ApiError::field("archived", "`from` and `to` are required to read the archive"));
    };
    if to <= from || to - from > MAX_DAYS * DAY_MS {
        return Err(ApiError::field("to", format!("must be after `from` and at most {MAX_DAYS} days from it")));
    }
    let mut records = Vec::new();
    let mut seen = HashSet::new();
    let mut day = from.div_euclid(DAY_MS) * DAY_MS;
    while day < to {
        let label = utc_timestamp(day).get(..10).unwrap_or_default().to_owned();
        let keys = archive.client.list(&day_prefix(&archive.prefix, &label)).await.map_err(unavailable)?;
        for key in keys.iter().filter(|key| is_manifest(key)) {
            let Some(body) = archive.client.get(key).await.map_err(unavailable)? else { continue };
            let manifest: Manifest = serde_json::from_slice(&body)
                .map_err(|error| unavailable(format!("{key} is not a manifest: {error}")))?;
            for object in &manifest.objects {
                if filter.tenant().is_some_and(|tenant| object.tenant_id.as_deref() != Some(tenant)) {
                    continue;
                }
                if object.last_ts < from || object.first_ts >= to {
                    continue;
                }
                let Some(stored) = archive.client.get(&object.key).await.map_err(unavailable)? else {
                    return Err(unavailable(format!("{} is listed in {key} but missing", object.key)));
                };
                if sigv4::sha256_hex(&stored) != object.sha256 {
                    return Err(unavailable(format!("{} does not match its checksum in {key}", object.key)));
                }
                let text = gunzip(&stored).map_err(|error| unavailable(format!("{}: {error}", object.key)))?;
                for line in text.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
                    let record: AuditRecord = serde_json::from_slice(line)
                        .map_err(|error| unavailable(format!("{}: {error}", object.key)))?;
                    let after_cursor =
                        cursor.is_none_or(|c| (record.ts, record.request_id.as_str()) < (c.ts, c.request_id.as_str()));
                    if after_cursor && filter.matches(&record) && seen.insert(record.request_id.clone()) {
                        records.push(record);
                    }
                }
            }
        }
        day += DAY_MS;
    }
    records.sort_by(|a, b| (b.ts, &b.request_id).cmp(&(a.ts, &a.request_id)));
    let limit = limit as usize;
    let more = records.len() > limit;
    records.truncate(limit);
    Ok((records, more))
}
