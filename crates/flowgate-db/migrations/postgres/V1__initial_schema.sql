-- Flowgate schema, version 1. Timestamps are unix milliseconds (BIGINT), money is integer
-- nano-dollars (BIGINT, exact), JSON documents are TEXT, booleans are BIGINT 0/1: one portable
-- shape for PostgreSQL and SQLite.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    budget_nanos BIGINT,
    budget_period TEXT NOT NULL DEFAULT 'total',
    guardrail_defaults TEXT NOT NULL DEFAULT '{}',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE virtual_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    key_hash BYTEA NOT NULL UNIQUE,
    previous_key_hash BYTEA UNIQUE,
    previous_key_expires_at BIGINT,
    budget_nanos BIGINT,
    budget_period TEXT NOT NULL DEFAULT 'total',
    rpm BIGINT,
    tpm BIGINT,
    requests_per_hour BIGINT,
    max_parallel_requests BIGINT,
    allowed_models TEXT NOT NULL DEFAULT '[]',
    ip_allowlist TEXT NOT NULL DEFAULT '[]',
    expires_at BIGINT,
    metadata TEXT NOT NULL DEFAULT '{}',
    guardrail_policy TEXT NOT NULL DEFAULT '{}',
    revoked_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX virtual_keys_tenant ON virtual_keys (tenant_id);

-- Settled spend per key and budget period. Reservations in flight live in Redis or in process;
-- only settled amounts are written here.
CREATE TABLE spend (
    key_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    spent_nanos BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, period_start)
);
CREATE INDEX spend_tenant ON spend (tenant_id, period_start);

CREATE TABLE guardrails (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    stages TEXT NOT NULL DEFAULT '["pre_call"]',
    runtime_config TEXT NOT NULL DEFAULT '{}',
    config_schema TEXT NOT NULL DEFAULT '{}',
    default_on BIGINT NOT NULL DEFAULT 0,
    fail_open BIGINT NOT NULL DEFAULT 0,
    http_url TEXT,
    http_timeout_ms BIGINT,
    -- Bearer token for HTTP guardrails, sealed with the server secret; never returned by the API.
    http_token_sealed BYTEA,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    version BIGINT NOT NULL DEFAULT 1,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE audit_records (
    request_id TEXT PRIMARY KEY,
    ts BIGINT NOT NULL,
    tenant_id TEXT,
    key_id TEXT,
    client_ip TEXT,
    route TEXT NOT NULL,
    model_requested TEXT,
    model_used TEXT,
    deployment TEXT,
    provider TEXT,
    status BIGINT NOT NULL,
    error_code TEXT,
    latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    upstream_latency_ms DOUBLE PRECISION,
    ttft_ms DOUBLE PRECISION,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost_nanos BIGINT NOT NULL DEFAULT 0,
    cache_hit BIGINT NOT NULL DEFAULT 0,
    stream BIGINT NOT NULL DEFAULT 0,
    retries BIGINT NOT NULL DEFAULT 0,
    fallbacks TEXT NOT NULL DEFAULT '[]',
    guardrail_actions TEXT NOT NULL DEFAULT '[]',
    prompt TEXT,
    response TEXT
);
CREATE INDEX audit_ts ON audit_records (ts, request_id);
CREATE INDEX audit_key_ts ON audit_records (key_id, ts);
CREATE INDEX audit_tenant_ts ON audit_records (tenant_id, ts);
