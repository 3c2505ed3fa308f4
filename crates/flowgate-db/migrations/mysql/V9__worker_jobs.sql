-- The worker's tables: hourly spend rollups, job watermarks, and alerts with their delivery log.
-- MySQL/MariaDB: as the PostgreSQL stream, with a surrogate primary key on spend_rollups (Galera
-- replicates only tables with a primary key; nothing reads it).

-- Spend per hour, tenant, key and model (asked and used), summed from audit_records by the
-- worker's rollup job, so reports filter and group them as they do the records. A rolled hour is rewritten whole (deleted and
-- summed again in one transaction), so running the job twice changes nothing.
CREATE TABLE spend_rollups (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    hour_start BIGINT NOT NULL,
    tenant_id VARCHAR(255),
    key_id VARCHAR(255),
    model_requested VARCHAR(1024),
    model_used VARCHAR(1024),
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX spend_rollups_hour ON spend_rollups (hour_start);

-- Progress of the worker's jobs (e.g. `rollups.until`: audit records before it are rolled up).
CREATE TABLE worker_state (
    name VARCHAR(255) NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per alert raised: a budget threshold crossed in a period, or a key about to expire.
-- The unique key makes an alert happen once, however many workers try.
CREATE TABLE alerts (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    kind VARCHAR(64) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    tenant_id VARCHAR(255),
    period_start BIGINT NOT NULL,
    threshold BIGINT NOT NULL,
    message LONGTEXT NOT NULL,
    document LONGTEXT NOT NULL,
    status VARCHAR(64) NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY alerts_once (kind, subject, period_start, threshold)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX alerts_created ON alerts (created_at, id);

-- Every attempt to deliver an alert to a webhook.
CREATE TABLE alert_deliveries (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    alert_id VARCHAR(255) NOT NULL,
    webhook VARCHAR(2048) NOT NULL,
    attempt BIGINT NOT NULL,
    status_code BIGINT,
    error LONGTEXT,
    delivered BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    CONSTRAINT alert_deliveries_alert_fk FOREIGN KEY (alert_id) REFERENCES alerts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id, attempted_at);
