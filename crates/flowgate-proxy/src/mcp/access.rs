//! Who may use which server and tool: the rules are shared with the api-server's tool catalog,
//! so they live in `flowgate_contracts::mcp_access`.

pub(crate) use flowgate_contracts::mcp_access::{KeyAccess, glob};
