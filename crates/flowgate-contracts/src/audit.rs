//! The audit record: one proxied request as the audit trail keeps it, and the one list of its
//! columns. The proxy writes records (`audit_records` rows, and NDJSON lines in its spool); the
//! api-server reads the rows back into the same type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Columns of `audit_records`, in table order: what the proxy writes and the api-server reads.
/// Each is a field of [`AuditRecord`] with the same name (checked by a test).
/// `prompt` and `response` are only filled for tenants that store (redacted) prompts.
pub const AUDIT_COLUMNS: [&str; 27] = [
    "request_id",
    "ts",
    "tenant_id",
    "key_id",
    "client_ip",
    "route",
    "model_requested",
    "model_used",
    "deployment",
    "provider",
    "status",
    "error_code",
    "latency_ms",
    "upstream_latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_nanos",
    "cache_hit",
    "stream",
    "retries",
    "fallbacks",
    "guardrail_actions",
    "prompt",
    "response",
    "usage_estimated",
    "metadata",
];

/// One request, as the audit trail keeps it. Field names are the column names
/// ([`AUDIT_COLUMNS`]); `fallbacks` and `guardrail_actions` are stored as JSON array text,
/// `metadata` as JSON object text, booleans as 0/1.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    /// Request id (UUIDv7), also returned to the client as `x-request-id`.
    pub request_id: String,
    /// Start time, unix milliseconds.
    pub ts: i64,
    /// Tenant of the key, when the key was resolved.
    pub tenant_id: Option<String>,
    /// Key id (never the key).
    pub key_id: Option<String>,
    /// Client address (after trusted-proxy resolution).
    pub client_ip: Option<String>,
    /// Route asked, e.g. `/v1/chat/completions`.
    pub route: String,
    /// Model name asked.
    pub model_requested: Option<String>,
    /// Model name that answered (differs after a fallback).
    pub model_used: Option<String>,
    /// Deployment id that answered.
    pub deployment: Option<String>,
    /// Provider that answered.
    pub provider: Option<String>,
    /// HTTP status returned.
    pub status: i64,
    /// Error code returned, if any (`model_not_found`, `budget_exceeded`, ...).
    pub error_code: Option<String>,
    /// Total time until the response ended (streams: until the last byte).
    pub latency_ms: f64,
    /// Time to the upstream's response head.
    pub upstream_latency_ms: Option<f64>,
    /// Time to the first streamed byte.
    pub ttft_ms: Option<f64>,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Cost in nano-dollars.
    pub cost_nanos: i64,
    /// The tokens (and so the cost) are the gateway's estimate, not the provider's count: a stream
    /// that ended without reporting usage (prompt ≈ request bytes / 4, completion ≈ streamed
    /// text bytes / 4). Records written before this field existed read as `false`.
    #[serde(default)]
    pub usage_estimated: bool,
    /// Served from cache.
    pub cache_hit: bool,
    /// Streamed.
    pub stream: bool,
    /// Attempts beyond the first.
    pub retries: i64,
    /// Model names tried and failed before the answer, JSON array.
    pub fallbacks: Vec<String>,
    /// Guardrail actions: `[{"guardrail","action","findings":{kind: count}}]` (never the text).
    pub guardrail_actions: Vec<serde_json::Value>,
    /// The prompt, redacted; only for tenants that store prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The answer, redacted; only for tenants that store prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// What the client said about itself, by name ([`METADATA_SESSION_ID`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The metadata entry naming the agent session a request belongs to: Claude Code's
/// `X-Claude-Code-Session-Id` header, or the Codex CLI's `session-id`.
pub const METADATA_SESSION_ID: &str = "session_id";

/// The request headers an agent client names its session in, in the order they are read.
pub const SESSION_HEADERS: [&str; 2] = ["x-claude-code-session-id", "session-id"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_a_field_and_every_field_a_column() {
        let record = AuditRecord {
            prompt: Some(String::new()),
            response: Some(String::new()),
            metadata: BTreeMap::from([(METADATA_SESSION_ID.to_owned(), "s".to_owned())]),
            ..AuditRecord::default()
        };
        let value = serde_json::to_value(record).unwrap();
        let fields: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        let mut columns = AUDIT_COLUMNS.to_vec();
        columns.sort_unstable();
        let mut fields = fields;
        fields.sort_unstable();
        assert_eq!(fields, columns);
    }
}
