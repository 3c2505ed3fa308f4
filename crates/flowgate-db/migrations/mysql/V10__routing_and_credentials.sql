-- Routing at run time: deployments added through /api/routing (the config file's model_list is
-- not stored: it stays in the file and is shown read-only). `entry` is the model_list entry as
-- JSON text (LiteLLM's shape); provider keys in it are references (`credential/NAME`,
-- `os.environ/NAME`), never values. `routing_revision` has one row whose revision goes up by one
-- in the transaction of every change (deployments or credentials), so a proxy that missed a
-- notification sees it changed.
CREATE TABLE routing_deployments (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    model_name VARCHAR(1024) NOT NULL,
    entry LONGTEXT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX routing_deployments_model ON routing_deployments (model_name(255));

CREATE TABLE routing_revision (
    id BIGINT NOT NULL PRIMARY KEY,
    revision BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO routing_revision (id, revision) VALUES (1, 0);

-- Provider credentials, envelope-encrypted: `sealed_value` is the key under a random data key
-- (AES-256-GCM, base64 of nonce || ciphertext || tag); `wrapped_key` is that data key wrapped by
-- the key-encryption key named by `kek_id`. Neither is ever returned by the API.
CREATE TABLE provider_credentials (
    name VARCHAR(256) NOT NULL PRIMARY KEY,
    description LONGTEXT NOT NULL DEFAULT (''),
    kek_id VARCHAR(255) NOT NULL,
    wrapped_key VARCHAR(2048) NOT NULL,
    sealed_value LONGTEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
