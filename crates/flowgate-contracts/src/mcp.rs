//! The MCP servers registered at run time (`/api/admin/mcp/servers`, table `mcp_servers`): the
//! api-server writes a server's tool options as one JSON text, the proxy reads it back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `options` column of a registered MCP server: what the config file's `mcp_servers` entries
/// say about tools, with the same meaning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct McpServerOptions {
    /// Tools offered at all (globs on the bare name); empty: every tool.
    pub allowed_tools: Vec<String>,
    /// Tools never offered (globs on the bare name).
    pub disallowed_tools: Vec<String>,
    /// Tool → seconds its answers are cached (read-only tools only).
    pub cacheable_tools: BTreeMap<String, u64>,
    /// Tool (or `*`) → USD a call costs.
    pub tool_costs: BTreeMap<String, f64>,
}

impl McpServerOptions {
    /// The options as stored.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The options stored as `text`; `None` when it cannot be read.
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_back_as_written_and_absent_members_default() {
        let options = McpServerOptions {
            allowed_tools: vec!["get_*".into()],
            cacheable_tools: BTreeMap::from([("forecast".into(), 60)]),
            ..McpServerOptions::default()
        };
        assert_eq!(McpServerOptions::from_text(&options.to_text()), Some(options));
        assert_eq!(McpServerOptions::from_text("{}"), Some(McpServerOptions::default()));
        assert_eq!(McpServerOptions::from_text("3"), None);
    }
}
