//! `/api/admin/a2a/agents`: the remote A2A agents registered at run time (those of the config
//! file's `a2a_agents` are read-only and not listed here). The headers sent to an agent (its
//! credentials) are write-only: sealed with [`flowgate_common::secretbox`] under
//! [`flowgate_common::secretbox::A2A_HEADERS_CONTEXT`] before they are stored, never selected
//! back, shown only by name. Every write publishes the agent's name on `a2a:changed`, so proxies
//! reload their agents without a restart.
//!
//! - `handlers`: the HTTP handlers (sealing the headers);
//! - `model`: request and response documents and their validation;
//! - `store`: the SQL.

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;
