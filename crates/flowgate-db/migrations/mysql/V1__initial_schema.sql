-- Flowgate schema, version 1, for MySQL 8.0+ and MariaDB 10.6+ (Galera included). The same
-- tables and columns as the PostgreSQL and SQLite streams: timestamps are unix milliseconds
-- (BIGINT), money is integer nano-dollars (BIGINT, exact), JSON documents are text, booleans
-- are BIGINT 0/1. What differs here:
-- - every table is InnoDB with a primary key (Galera replicates only those), utf8mb4 with the
--   binary collation, so ids and names compare exactly as on PostgreSQL (case and accents
--   matter) and every Unicode character is stored;
-- - ids, names and other indexed text are VARCHAR (an index needs a bounded length; names are
--   at most 256 characters, request ids 64); documents, prompts and other unbounded text are
--   LONGTEXT with an expression default; bytes (hashes, sealed secrets) are BLOB, which reads
--   back as bytes (VARBINARY would read back as text), key hashes unique on their 64 bytes.

CREATE TABLE tenants (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    name VARCHAR(256) NOT NULL UNIQUE,
    budget_nanos BIGINT,
    budget_period VARCHAR(32) NOT NULL DEFAULT 'total',
    guardrail_defaults LONGTEXT NOT NULL DEFAULT ('{}'),
    metadata LONGTEXT NOT NULL DEFAULT ('{}'),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE virtual_keys (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    tenant_id VARCHAR(255) NOT NULL,
    name VARCHAR(256) NOT NULL,
    key_hash BLOB NOT NULL,
    previous_key_hash BLOB,
    previous_key_expires_at BIGINT,
    budget_nanos BIGINT,
    budget_period VARCHAR(32) NOT NULL DEFAULT 'total',
    rpm BIGINT,
    tpm BIGINT,
    requests_per_hour BIGINT,
    max_parallel_requests BIGINT,
    allowed_models LONGTEXT NOT NULL DEFAULT ('[]'),
    ip_allowlist LONGTEXT NOT NULL DEFAULT ('[]'),
    expires_at BIGINT,
    metadata LONGTEXT NOT NULL DEFAULT ('{}'),
    guardrail_policy LONGTEXT NOT NULL DEFAULT ('{}'),
    revoked_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY virtual_keys_key_hash (key_hash(64)),
    UNIQUE KEY virtual_keys_previous_key_hash (previous_key_hash(64)),
    CONSTRAINT virtual_keys_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenants (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX virtual_keys_tenant ON virtual_keys (tenant_id);

-- Settled spend per key and budget period. Reservations in flight live in Redis or in process;
-- only settled amounts are written here.
CREATE TABLE spend (
    key_id VARCHAR(255) NOT NULL,
    tenant_id VARCHAR(255) NOT NULL,
    period_start BIGINT NOT NULL,
    spent_nanos BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, period_start)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX spend_tenant ON spend (tenant_id, period_start);

CREATE TABLE guardrails (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    name VARCHAR(256) NOT NULL UNIQUE,
    kind VARCHAR(64) NOT NULL,
    description LONGTEXT NOT NULL DEFAULT (''),
    stages LONGTEXT NOT NULL DEFAULT ('["pre_call"]'),
    runtime_config LONGTEXT NOT NULL DEFAULT ('{}'),
    config_schema LONGTEXT NOT NULL DEFAULT ('{}'),
    default_on BIGINT NOT NULL DEFAULT 0,
    fail_open BIGINT NOT NULL DEFAULT 0,
    http_url LONGTEXT,
    http_timeout_ms BIGINT,
    -- Bearer token for HTTP guardrails, sealed with the server secret; never returned by the API.
    http_token_sealed BLOB,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE policies (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    name VARCHAR(256) NOT NULL UNIQUE,
    version BIGINT NOT NULL DEFAULT 1,
    document LONGTEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE audit_records (
    request_id VARCHAR(255) NOT NULL PRIMARY KEY,
    ts BIGINT NOT NULL,
    tenant_id VARCHAR(255),
    key_id VARCHAR(255),
    client_ip VARCHAR(255),
    route LONGTEXT NOT NULL,
    model_requested LONGTEXT,
    model_used LONGTEXT,
    deployment LONGTEXT,
    provider LONGTEXT,
    status BIGINT NOT NULL,
    error_code LONGTEXT,
    latency_ms DOUBLE NOT NULL DEFAULT 0,
    upstream_latency_ms DOUBLE,
    ttft_ms DOUBLE,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost_nanos BIGINT NOT NULL DEFAULT 0,
    cache_hit BIGINT NOT NULL DEFAULT 0,
    stream BIGINT NOT NULL DEFAULT 0,
    retries BIGINT NOT NULL DEFAULT 0,
    fallbacks LONGTEXT NOT NULL DEFAULT ('[]'),
    guardrail_actions LONGTEXT NOT NULL DEFAULT ('[]'),
    prompt LONGTEXT,
    response LONGTEXT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX audit_ts ON audit_records (ts, request_id);
CREATE INDEX audit_key_ts ON audit_records (key_id, ts);
CREATE INDEX audit_tenant_ts ON audit_records (tenant_id, ts);
