-- Upstream credentials of one key or one tenant for one MCP server (/api/mcp/auth/{server}):
-- headers sent instead of the server's own for that key's calls (a key's before its tenant's),
-- sealed like the servers' (only their names are returned).
CREATE TABLE mcp_credentials (
    server TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    headers_sealed BYTEA NOT NULL,
    header_names TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (server, owner_kind, owner_id)
);
