//! `/api/admin/mcp/servers`: the upstream MCP servers registered at run time (Streamable HTTP and
//! SSE; stdio servers run a command on the proxy's host and are declared only in the config
//! file, whose servers are read-only here and not listed). The headers sent to a server (its
//! credentials) are write-only: sealed under
//! [`flowgate_common::secretbox::MCP_HEADERS_CONTEXT`], never selected back, shown only by name.
//! A server is checked exactly as the config file's are (`validate_mcp_server`). Every write
//! publishes the server's name on `mcp:servers:changed`: proxies reload their servers and tell
//! connected clients that the tool list changed.
//!
//! - `auth`: `/api/mcp/auth/{server}`, a key's or tenant's own credential for a server (the admin
//!   key, or the virtual key itself for its own);
//! - `catalog`: `GET /api/mcp/tools`, the tool catalog the proxies wrote, with the keys that may
//!   use each tool;
//! - `handlers`: the HTTP handlers (sealing the headers);
//! - `model`: request and response documents and their validation;
//! - `store`: the SQL.

pub(crate) mod auth;
pub(crate) mod catalog;
pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;
