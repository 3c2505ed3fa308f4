//! Redis pub/sub channels: the api-server publishes on them after a committed change, the proxy
//! and policy services subscribe.

/// A key changed (revoked, rotated, edited, deleted). Payload: the key id, or `tenant:{id}` for
/// every key of a tenant.
pub const KEYS_INVALIDATE: &str = "keys:invalidate";

/// The guardrail catalog changed. Payload: the guardrail's name.
pub const GUARDRAILS_CHANGED: &str = "guardrails:changed";

/// A policy rule set changed. Payload: the policy's name.
pub const POLICIES_CHANGED: &str = "policies:changed";

/// The routing table changed (a deployment or a provider credential was written through
/// `/api/routing` or `/api/credentials`). Payload: the new routing revision.
pub const ROUTING_CHANGED: &str = "routing:changed";

/// An A2A agent was registered, changed or removed (`/api/admin/a2a/agents`). Payload: the
/// agent's name. Proxies reload the registered agents.
pub const A2A_AGENTS_CHANGED: &str = "a2a:changed";

/// An MCP server was registered, changed or removed (`/api/admin/mcp/servers`). Payload: the
/// server's name. Proxies reload their upstream servers and tell connected clients that the tool
/// list changed.
pub const MCP_SERVERS_CHANGED: &str = "mcp:servers:changed";

/// A key's or tenant's upstream credential for an MCP server was stored or removed
/// (`/api/mcp/auth/{server}`). Payload: the server's name. Proxies drop the credentials they hold.
pub const MCP_CREDENTIALS_CHANGED: &str = "mcp:credentials:changed";

/// Semantic and exact cache entries to forget (`DELETE /api/metacache`). Payload: a
/// [`crate::metacache::StreamRecord::Delete`] as JSON.
pub const METACACHE_DELETE: &str = "metacache:delete";
