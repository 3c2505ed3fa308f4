-- MCP gateway permissions of virtual keys and of tenants (which bound all their keys): glob
-- patterns over server names (`mcp_servers`) and over `server__tool` names (`mcp_tools`,
-- `mcp_denied_tools`), JSON arrays of text. Empty: no restriction (a deny-list always applies).
ALTER TABLE virtual_keys ADD COLUMN mcp_servers LONGTEXT NOT NULL DEFAULT ('[]');
ALTER TABLE virtual_keys ADD COLUMN mcp_tools LONGTEXT NOT NULL DEFAULT ('[]');
ALTER TABLE virtual_keys ADD COLUMN mcp_denied_tools LONGTEXT NOT NULL DEFAULT ('[]');
ALTER TABLE tenants ADD COLUMN mcp_servers LONGTEXT NOT NULL DEFAULT ('[]');
ALTER TABLE tenants ADD COLUMN mcp_tools LONGTEXT NOT NULL DEFAULT ('[]');
ALTER TABLE tenants ADD COLUMN mcp_denied_tools LONGTEXT NOT NULL DEFAULT ('[]');
