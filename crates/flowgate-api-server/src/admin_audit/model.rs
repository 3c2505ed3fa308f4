//! The admin audit record and the query over the log.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::model::parse_time;
use crate::error::ApiError;

/// One management action, as stored and as `GET /api/admin/audit` returns it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AdminAuditRecord {
    /// Time-ordered id (UUID v7).
    pub(crate) id: String,
    /// When, unix milliseconds.
    pub(crate) ts: i64,
    /// When, RFC 3339.
    pub(crate) time: String,
    /// `admin-key`, `user:<id>`, or `anonymous` for a failed sign-in.
    pub(crate) actor: String,
    /// The actor's role at the time.
    pub(crate) role: Option<String>,
    /// The tenant a `tenant-admin` acted in.
    pub(crate) tenant_id: Option<String>,
    /// `admin_key`, `session`, `token`, `oidc`, or `none`.
    pub(crate) auth_method: String,
    /// `METHOD route` (the route's template, e.g. `POST /api/enterprise/vkeys/{id}/revoke`), or
    /// `session.create` / `session.create_failed` for sign-ins.
    pub(crate) action: String,
    pub(crate) method: String,
    /// The concrete path.
    pub(crate) path: String,
    /// The resource acted on (its id or name), when known.
    pub(crate) target: Option<String>,
    /// The HTTP status of the answer.
    pub(crate) status: i64,
    /// The resource before the action, as the API shows it (never a secret).
    pub(crate) before: Option<Value>,
    /// The resource after the action, as the API shows it (never a secret).
    pub(crate) after: Option<Value>,
    /// The peer address of the connection.
    pub(crate) source_ip: Option<String>,
    /// `X-Forwarded-For` as received (set by the reverse proxy in front).
    pub(crate) forwarded_for: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// The query string of `GET /api/admin/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminAuditQuery {
    pub(crate) actor: Option<String>,
    /// Records whose action contains this text (e.g. `vkeys`, `revoke`, `session`).
    pub(crate) action: Option<String>,
    pub(crate) target: Option<String>,
    /// `2xx`-style classes are not needed here: an exact status, e.g. `403`.
    pub(crate) status: Option<u16>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) limit: Option<u32>,
    pub(crate) cursor: Option<String>,
}

/// The parsed filter.
#[derive(Debug, Default)]
pub(crate) struct AdminAuditFilter {
    pub(crate) actor: Option<String>,
    pub(crate) action: Option<String>,
    pub(crate) target: Option<String>,
    pub(crate) status: Option<i64>,
    pub(crate) from: Option<i64>,
    pub(crate) to: Option<i64>,
}

impl AdminAuditQuery {
    pub(crate) fn filter(&self) -> Result<AdminAuditFilter, ApiError> {
        let text = |field: &str, value: &Option<String>| -> Result<Option<String>, ApiError> {
            match value.as_deref().map(str::trim) {
                Some("") => Err(ApiError::field(field, "must not be empty")),
                Some(v) if v.len() > 200 => Err(ApiError::field(field, "must be at most 200 characters")),
                other => Ok(other.map(str::to_owned)),
            }
        };
        let filter = AdminAuditFilter {
            actor: text("actor", &self.actor)?,
            action: text("action", &self.action)?,
            target: text("target", &self.target)?,
            status: self.status.map(i64::from),
            from: self.from.as_deref().map(|t| parse_time("from", t)).transpose()?,
            to: self.to.as_deref().map(|t| parse_time("to", t)).transpose()?,
        };
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from > to
        {
            return Err(ApiError::field("from", "must not be after `to`"));
        }
        Ok(filter)
    }
}

/// Where the next page starts: the (ts, id) of the last record returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminAuditCursor {
    pub(crate) ts: i64,
    pub(crate) id: String,
}

impl AdminAuditCursor {
    pub(crate) fn encode(&self) -> String {
        format!("{}.{}", self.ts, self.id)
    }

    pub(crate) fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::field("cursor", "is not a cursor returned by this API");
        let (ts, id) = text.split_once('.').ok_or_else(invalid)?;
        let ts = ts.parse().map_err(|_| invalid())?;
        if id.is_empty() || id.len() > 64 {
            return Err(invalid());
        }
        Ok(Self { ts, id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = AdminAuditCursor { ts: 5, id: "0190-ab".into() };
        assert_eq!(AdminAuditCursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "x", "5.", "a.b", "5"] {
            assert!(AdminAuditCursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_checked() {
        let query = AdminAuditQuery { actor: Some(" ".into()), ..AdminAuditQuery::default() };
        assert!(query.filter().unwrap_err().to_string().contains("actor"));
        let query =
            AdminAuditQuery { from: Some("2000".into()), to: Some("1000".into()), ..AdminAuditQuery::default() };
        assert!(query.filter().is_err());
        let query = AdminAuditQuery { action: Some("revoke".into()), ..AdminAuditQuery::default() };
        assert_eq!(query.filter().unwrap().action.as_deref(), Some("revoke"));
    }
}
