-- Upstream credentials of one key or one tenant for one MCP server (/api/mcp/auth/{server}):
-- headers sent instead of the server's own for that key's calls (a key's before its tenant's),
-- sealed like the servers' (only their names are returned).
CREATE TABLE mcp_credentials (
    server VARCHAR(256) NOT NULL,
    owner_kind VARCHAR(32) NOT NULL,
    owner_id VARCHAR(255) NOT NULL,
    headers_sealed BLOB NOT NULL,
    header_names LONGTEXT NOT NULL DEFAULT ('[]'),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (server, owner_kind, owner_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
