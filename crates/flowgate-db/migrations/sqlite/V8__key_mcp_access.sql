-- MCP gateway permissions of a virtual key: glob patterns over server names (`mcp_servers`) and
-- over `server__tool` names (`mcp_tools`, `mcp_denied_tools`), JSON arrays of text. Empty: no
-- restriction (the deny-list always applies).
ALTER TABLE virtual_keys ADD COLUMN mcp_servers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE virtual_keys ADD COLUMN mcp_tools TEXT NOT NULL DEFAULT '[]';
ALTER TABLE virtual_keys ADD COLUMN mcp_denied_tools TEXT NOT NULL DEFAULT '[]';
