-- Whether a record's tokens and cost are the gateway's estimate (a stream that reported no usage)
-- rather than the provider's count. Existing records are counts: 0.
ALTER TABLE audit_records ADD COLUMN usage_estimated BIGINT NOT NULL DEFAULT 0;
