-- Tenants may have the prompts and answers of their requests kept in the audit trail, redacted
-- (PII and secrets replaced by placeholders) before they are written. Off unless set.
ALTER TABLE tenants ADD COLUMN store_prompts BIGINT NOT NULL DEFAULT 0;
