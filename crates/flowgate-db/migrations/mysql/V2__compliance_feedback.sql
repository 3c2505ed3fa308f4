-- Compliance learning feedback: per-tenant detection thresholds, moved by false-positive and
-- false-negative reports (POST /api/compliance/feedback), and the reports themselves.

CREATE TABLE compliance_thresholds (
    tenant_id VARCHAR(255) NOT NULL,
    kind VARCHAR(255) NOT NULL,
    threshold DOUBLE NOT NULL,
    false_positives BIGINT NOT NULL DEFAULT 0,
    false_negatives BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE compliance_feedback (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    tenant_id VARCHAR(255) NOT NULL,
    kind VARCHAR(255) NOT NULL,
    verdict VARCHAR(64) NOT NULL,
    score DOUBLE,
    previous_threshold DOUBLE NOT NULL,
    threshold DOUBLE NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX compliance_feedback_tenant ON compliance_feedback (tenant_id, created_at);
