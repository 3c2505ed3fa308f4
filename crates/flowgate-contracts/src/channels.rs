//! Redis pub/sub channels: the api-server publishes on them after a committed change, the proxy
//! and policy services subscribe.

/// A key changed (revoked, rotated, edited, deleted). Payload: the key id, or `tenant:{id}` for
/// every key of a tenant.
pub const KEYS_INVALIDATE: &str = "keys:invalidate";

/// The guardrail catalog changed. Payload: the guardrail's name.
pub const GUARDRAILS_CHANGED: &str = "guardrails:changed";

/// A policy rule set changed. Payload: the policy's name.
pub const POLICIES_CHANGED: &str = "policies:changed";

/// Semantic and exact cache entries to forget (`DELETE /api/metacache`). Payload: a
/// [`crate::metacache::StreamRecord::Delete`] as JSON.
pub const METACACHE_DELETE: &str = "metacache:delete";
