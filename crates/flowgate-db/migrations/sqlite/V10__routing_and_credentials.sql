-- Routing at run time: deployments added through /api/routing (the config file's model_list is
-- not stored: it stays in the file and is shown read-only). `entry` is the model_list entry as
-- JSON text (LiteLLM's shape); provider keys in it are references (`credential/NAME`,
-- `os.environ/NAME`), never values. `routing_revision` has one row whose revision goes up by one
-- in the transaction of every change (deployments or credentials), so a proxy that missed a
-- notification sees it changed.
CREATE TABLE routing_deployments (
    id TEXT PRIMARY KEY,
    model_name TEXT NOT NULL,
    entry TEXT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX routing_deployments_model ON routing_deployments (model_name);

CREATE TABLE routing_revision (
    id INTEGER PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO routing_revision (id, revision) VALUES (1, 0);

-- Provider credentials, envelope-encrypted: `sealed_value` is the key under a random data key
-- (AES-256-GCM, base64 of nonce || ciphertext || tag); `wrapped_key` is that data key wrapped by
-- the key-encryption key named by `kek_id`. Neither is ever returned by the API.
CREATE TABLE provider_credentials (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    kek_id TEXT NOT NULL,
    wrapped_key TEXT NOT NULL,
    sealed_value TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
