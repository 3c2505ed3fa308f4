//! Conventions every resource's documents share, and the validation that goes with them.
//!
//! Money is USD in the API and integer nano-dollars in the database; timestamps are RFC 3339
//! strings in responses and unix milliseconds in the database; `expires_at` is accepted as an
//! RFC 3339 string or as unix seconds. In PATCH bodies an absent field is left alone and `null`
//! clears it (back to its default). Lists are paged by `(created_at, id)` cursors. Keys and
//! tenants have free names ([`validate_name`]); guardrails and policies, which keys refer to by
//! name, have kebab-case ones ([`validate_kebab`]).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;

/// Largest budget accepted, in USD (keeps nano-dollars far inside `i64`).
const MAX_BUDGET_USD: f64 = 1e9;
/// Longest accepted name (keys and tenants).
const MAX_NAME_LEN: usize = 256;
/// Longest guardrail or policy name.
const MAX_KEBAB_LEN: usize = 64;
/// Largest unix-seconds value accepted (9999-12-31T23:59:59Z).
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// `Some(value)` for a present field, `null` included: with `#[serde(default)]`, an absent field
/// stays `None`, so PATCH bodies can tell "leave alone" (`None`) from "clear" (`Some(None)`).
pub(crate) fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A point in time given as an RFC 3339 string or as unix seconds; held as unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp(pub(crate) i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp such as \"2030-01-31T00:00:00Z\" or unix seconds")
            }

            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Timestamp, E> {
                if (0..=MAX_UNIX_SECS).contains(&secs) {
                    Ok(Timestamp(secs * 1000))
                } else {
                    Err(E::custom(format!("unix seconds {secs} are outside 1970..=9999")))
                }
            }

            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Timestamp, E> {
                let secs = i64::try_from(secs).map_err(|_| E::custom("unix seconds out of range"))?;
                self.visit_i64(secs)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                let parsed = OffsetDateTime::parse(text, &Rfc3339)
                    .map_err(|error| E::custom(format!("`{text}` is not an RFC 3339 timestamp: {error}")))?;
                let millis = parsed.unix_timestamp_nanos() / 1_000_000;
                let millis = i64::try_from(millis).map_err(|_| E::custom("timestamp out of range"))?;
                if (0..=MAX_UNIX_SECS * 1000).contains(&millis) {
                    Ok(Timestamp(millis))
                } else {
                    Err(E::custom(format!("`{text}` is outside 1970..=9999")))
                }
            }
        }

        deserializer.deserialize_any(TimestampVisitor)
    }
}

/// Unix milliseconds as RFC 3339 (UTC).
pub(crate) fn rfc3339(millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| millis.to_string())
}

/// Nano-dollars as USD.
#[expect(clippy::cast_precision_loss, reason = "budgets and spend are far below 2^53 nano-dollars")]
pub(crate) fn usd(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

pub(crate) fn validate_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::field(field, format!("must be at most {MAX_NAME_LEN} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::field(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// A guardrail or policy name: lowercase letters and digits in words joined by single hyphens
/// (`pii-redact`). Keys and policies refer to these names, so they cannot change.
pub(crate) fn validate_kebab(field: &str, name: &str) -> Result<String, ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_KEBAB_LEN
        && name
            .split('-')
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ApiError::field(
            field,
            format!(
                "must be kebab-case (lowercase letters and digits joined by single hyphens, e.g. `pii-redact`), at most {MAX_KEBAB_LEN} characters"
            ),
        ))
    }
}

pub(crate) fn validate_budget(field: &str, usd: f64) -> Result<i64, ApiError> {
    if !usd.is_finite() || usd <= 0.0 {
        return Err(ApiError::field(field, "must be a positive number of USD; send null for no budget"));
    }
    if usd > MAX_BUDGET_USD {
        return Err(ApiError::field(field, format!("must be at most {MAX_BUDGET_USD} USD")));
    }
    #[expect(clippy::cast_possible_truncation, reason = "bounded by MAX_BUDGET_USD above")]
    let nanos = (usd * 1e9).round() as i64;
    Ok(nanos.max(1))
}

/// A key's `guardrail_policy` or a tenant's `guardrail_defaults`: it must read as a guardrail
/// policy (`flowgate_contracts::GuardrailPolicy`; fields it does not know are kept and ignored),
/// so that no stored policy is one the proxies cannot apply. Returns the text to store.
pub(crate) fn guardrail_policy_text(field: &str, policy: &Map<String, Value>) -> Result<String, ApiError> {
    flowgate_contracts::GuardrailPolicy::from_object(policy).map_err(|error| {
        let at = if error.field.is_empty() { field.to_owned() } else { format!("{field}.{}", error.field) };
        ApiError::field(at, error.message)
    })?;
    Ok(json_text(policy))
}

pub(crate) fn json_text(value: &Map<String, Value>) -> String {
    Value::Object(value.clone()).to_string()
}

/// A stored JSON document back to a value (an empty object when the column is not JSON).
pub(crate) fn parse_object(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::Object(Map::new()))
}

/// A stored JSON list of strings back to a list.
pub(crate) fn parse_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(crate) fn list_text(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

/// One column to set, with its new value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// A TEXT column.
    Text(&'static str, String),
    /// A nullable BIGINT column.
    Int(&'static str, Option<i64>),
    /// A nullable BYTEA/BLOB column.
    Bytes(&'static str, Option<Vec<u8>>),
}

/// `limit` and `cursor` of the tenant list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    pub(crate) limit: Option<u32>,
    pub(crate) cursor: Option<String>,
}

/// Default and largest page sizes.
pub(crate) const DEFAULT_PAGE: u32 = 50;
pub(crate) const MAX_PAGE: u32 = 500;

/// Where a page starts: after the row with this creation time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) created_at: i64,
    pub(crate) id: String,
}

impl Cursor {
    /// The opaque text handed to clients: `{created_at}.{id}`.
    pub(crate) fn encode(&self) -> String {
        format!("{}.{}", self.created_at, self.id)
    }

    pub(crate) fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::field("cursor", "is not a cursor returned by this API");
        let (created_at, id) = text.split_once('.').ok_or_else(invalid)?;
        let created_at = created_at.parse().map_err(|_| invalid())?;
        if id.is_empty() || id.len() > 128 {
            return Err(invalid());
        }
        Ok(Self { created_at, id: id.to_owned() })
    }
}

/// The page size asked, validated.
pub(crate) fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        0 => Err(ApiError::field("limit", "must be at least 1")),
        n if n > MAX_PAGE => Err(ApiError::field("limit", format!("must be at most {MAX_PAGE}"))),
        n => Ok(n),
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    pub(crate) data: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub(crate) next_cursor: Option<String>,
}

/// Most patterns in one MCP list.
const MAX_PATTERNS: usize = 1000;
/// Longest glob pattern accepted in the MCP lists.
const MAX_PATTERN_LEN: usize = 256;

/// `mcp_servers`, `mcp_tools`, `mcp_denied_tools` or `a2a_agents`: glob patterns (`*`, `?`), trimmed, deduplicated.
pub(crate) fn validate_patterns(field: &str, patterns: &[String]) -> Result<Vec<String>, ApiError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(ApiError::field(field, format!("must list at most {MAX_PATTERNS} patterns")));
    }
    let mut out: Vec<String> = Vec::with_capacity(patterns.len());
    for (index, pattern) in patterns.iter().enumerate() {
        let pattern = pattern.trim();
        if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN || pattern.chars().any(char::is_control) {
            return Err(ApiError::field(
                format!("{field}[{index}]"),
                format!("must be a glob pattern of 1 to {MAX_PATTERN_LEN} printable characters"),
            ));
        }
        if !out.iter().any(|p| p == pattern) {
            out.push(pattern.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_at_takes_rfc3339_or_unix_seconds() {
        let a: Timestamp = serde_json::from_str("\"2030-01-01T00:00:00Z\"").unwrap();
        let b: Timestamp = serde_json::from_str("1893456000").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0, 1_893_456_000_000);
        let c: Timestamp = serde_json::from_str("\"2030-01-01T01:00:00+01:00\"").unwrap();
        assert_eq!(c, a);
        for bad in ["\"tomorrow\"", "-5", "1.5", "true", "99999999999999"] {
            assert!(serde_json::from_str::<Timestamp>(bad).is_err(), "{bad}");
        }
        assert_eq!(rfc3339(1_893_456_000_000), "2030-01-01T00:00:00Z");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor { created_at: 1_700_000_000_000, id: "abc123".into() };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "x", "abc.def", "12."] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(MAX_PAGE + 1)).is_err());
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
    }
}
