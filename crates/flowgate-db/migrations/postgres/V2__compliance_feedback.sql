-- Compliance learning feedback: per-tenant detection thresholds, moved by false-positive and
-- false-negative reports (POST /api/compliance/feedback), and the reports themselves.

CREATE TABLE compliance_thresholds (
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    false_positives BIGINT NOT NULL DEFAULT 0,
    false_negatives BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

CREATE TABLE compliance_feedback (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    verdict TEXT NOT NULL,
    score DOUBLE PRECISION,
    previous_threshold DOUBLE PRECISION NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX compliance_feedback_tenant ON compliance_feedback (tenant_id, created_at);
