-- Responses API conversation state: responses kept with `store` (for tenants that keep prompts),
-- so that `previous_response_id` can continue them. The conversation (the input items the
-- response answered and the response itself) is one JSON document sealed with ChaCha20-Poly1305
-- under a key derived from the server secret; only ids, owners and times are in the clear.
CREATE TABLE stored_responses (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    tenant_id VARCHAR(255) NOT NULL,
    key_id VARCHAR(255) NOT NULL,
    model VARCHAR(1024) NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    sealed LONGBLOB NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX stored_responses_expiry ON stored_responses (expires_at);
