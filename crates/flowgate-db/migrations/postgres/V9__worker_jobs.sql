-- The worker's tables: hourly spend rollups, job watermarks, and alerts with their delivery log.

-- Spend per hour, tenant, key and model (asked and used), summed from audit_records by the
-- worker's rollup job, so reports filter and group them as they do the records. A rolled hour is rewritten whole (deleted and
-- summed again in one transaction), so running the job twice changes nothing.
CREATE TABLE spend_rollups (
    hour_start BIGINT NOT NULL,
    tenant_id TEXT,
    key_id TEXT,
    model_requested TEXT,
    model_used TEXT,
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL
);
CREATE INDEX spend_rollups_hour ON spend_rollups (hour_start);

-- Progress of the worker's jobs (e.g. `rollups.until`: audit records before it are rolled up).
CREATE TABLE worker_state (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per alert raised: a budget threshold crossed in a period, or a key about to expire.
-- The unique key makes an alert happen once, however many workers try.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    tenant_id TEXT,
    period_start BIGINT NOT NULL,
    threshold BIGINT NOT NULL,
    message TEXT NOT NULL,
    document TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (kind, subject, period_start, threshold)
);
CREATE INDEX alerts_created ON alerts (created_at, id);

-- Every attempt to deliver an alert to a webhook.
CREATE TABLE alert_deliveries (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    webhook TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    delivered BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL
);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id, attempted_at);
