-- A2A agents registered at run time (/api/admin/a2a/agents): the URL of the agent's card, and
-- the headers sent to the agent (credentials), a JSON object sealed with the server secret and
-- never returned by the API (only their names, `header_names`, a JSON array); and the seconds a
-- call may take (null: 300).
CREATE TABLE a2a_agents (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    name VARCHAR(256) NOT NULL UNIQUE,
    card_url VARCHAR(2048) NOT NULL,
    description LONGTEXT,
    headers_sealed BLOB,
    header_names LONGTEXT NOT NULL DEFAULT ('[]'),
    timeout_secs BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
-- The agents a key and a tenant (which bounds all its keys) may reach: glob patterns over agent
-- names, a JSON array of text. Empty: no restriction.
ALTER TABLE virtual_keys ADD COLUMN a2a_agents LONGTEXT NOT NULL DEFAULT ('[]');
ALTER TABLE tenants ADD COLUMN a2a_agents LONGTEXT NOT NULL DEFAULT ('[]');
-- Upstream MCP servers registered at run time (/api/admin/mcp/servers; http and sse transports):
-- the headers sent to the server, sealed like the agents' (only their names are returned), and
-- its tool options (allowed, disallowed, cacheable tools, prices), a JSON object.
CREATE TABLE mcp_servers (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    name VARCHAR(256) NOT NULL UNIQUE,
    transport VARCHAR(32) NOT NULL,
    url VARCHAR(2048) NOT NULL,
    description LONGTEXT,
    headers_sealed BLOB,
    header_names LONGTEXT NOT NULL DEFAULT ('[]'),
    options LONGTEXT NOT NULL DEFAULT ('{}'),
    timeout_secs BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
-- The MCP tool catalog as the proxies last listed it (every tool their upstream servers offer,
-- after the servers' allowed/disallowed tools), for the api-server's GET /api/mcp/tools; written
-- by every proxy after a change of servers and every 5 minutes.
CREATE TABLE mcp_tool_catalog (
    server VARCHAR(256) NOT NULL,
    tool VARCHAR(255) NOT NULL,
    description LONGTEXT,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (server, tool)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
