//! `/api/alerts` documents: the query with its validation, an alert and its deliveries.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::fields::{Cursor, rfc3339};

/// The statuses an alert can have.
const STATUSES: &[&str] = &["pending", "delivered", "failed", "recorded"];
/// The kinds of alert.
const KINDS: &[&str] = &["budget_threshold", "key_expiry"];

/// `GET /api/alerts` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertQuery {
    pub(crate) limit: Option<u32>,
    pub(crate) cursor: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    tenant_id: Option<String>,
}

/// The query, validated.
#[derive(Debug, Default)]
pub(crate) struct AlertFilter {
    pub(crate) status: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) cursor: Option<Cursor>,
}

fn one_of(field: &str, value: Option<&str>, valid: &[&str]) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(value) if valid.contains(&value) => Ok(Some(value.to_owned())),
        Some(value) => Err(ApiError::field(field, format!("`{value}` is not one of {}", valid.join(", ")))),
    }
}

impl AlertQuery {
    /// The filter asked, validated.
    pub(crate) fn filter(&self) -> Result<AlertFilter, ApiError> {
        Ok(AlertFilter {
            status: one_of("status", self.status.as_deref(), STATUSES)?,
            kind: one_of("kind", self.kind.as_deref(), KINDS)?,
            tenant_id: self.tenant_id.clone(),
            cursor: self.cursor.as_deref().map(Cursor::decode).transpose()?,
        })
    }
}

/// One attempt to deliver an alert.
#[derive(Debug, Serialize)]
pub(crate) struct DeliveryView {
    pub(crate) webhook: String,
    pub(crate) attempt: i64,
    pub(crate) delivered: bool,
    pub(crate) status_code: Option<i64>,
    pub(crate) error: Option<String>,
    pub(crate) attempted_at: String,
}

/// An alert as stored.
#[derive(Debug)]
pub(crate) struct AlertRow {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) subject: String,
    pub(crate) tenant_id: Option<String>,
    pub(crate) period_start: i64,
    pub(crate) threshold: i64,
    pub(crate) message: String,
    pub(crate) document: String,
    pub(crate) status: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// An alert as `/api/alerts` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct AlertView {
    pub(crate) id: String,
    pub(crate) kind: String,
    /// The budget's spend row (a key id or `tenant:{id}`), or the expiring key's id.
    pub(crate) subject: String,
    pub(crate) tenant_id: Option<String>,
    /// Budget alerts: the percentage crossed; expiry alerts: the days of notice.
    pub(crate) threshold: i64,
    /// Budget alerts: the period's start; expiry alerts: the key's expiry.
    pub(crate) period_start: String,
    pub(crate) message: String,
    /// The document sent to `json` webhooks.
    pub(crate) document: serde_json::Value,
    pub(crate) status: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) deliveries: Vec<DeliveryView>,
}

impl AlertView {
    pub(crate) fn new(row: AlertRow, deliveries: Vec<DeliveryView>) -> Self {
        Self {
            document: serde_json::from_str(&row.document).unwrap_or(serde_json::Value::Null),
            id: row.id,
            kind: row.kind,
            subject: row.subject,
            tenant_id: row.tenant_id,
            threshold: row.threshold,
            period_start: rfc3339(row.period_start),
            message: row.message,
            status: row.status,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            deliveries,
        }
    }
}
