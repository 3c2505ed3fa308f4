-- The management plane's own identities: people who sign in to the portal (created on their
-- first single sign-on, or by an administrator), their sessions, and the admin audit log of
-- every management action.

-- A person known to the management plane. `issuer` + `subject` identify an SSO user; the role
-- and tenant come from the identity provider's claims at each sign-in (or are set by an admin).
CREATE TABLE admin_users (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    issuer VARCHAR(512) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    email VARCHAR(512),
    name VARCHAR(512),
    role VARCHAR(64) NOT NULL,
    tenant_id VARCHAR(255),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login_at BIGINT,
    UNIQUE KEY admin_users_identity (issuer, subject)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A signed-in browser (`kind` = 'browser', the portal's cookie) or a management API token of a
-- user (`kind` = 'token', a bearer for automation). Only the keyed hash of the secret is stored
-- (`id_hash`, base64 of HMAC-SHA256 under the key-hash secret): a database read does not yield
-- a usable cookie or token.
CREATE TABLE admin_sessions (
    id_hash VARCHAR(255) NOT NULL PRIMARY KEY,
    kind VARCHAR(32) NOT NULL,
    name VARCHAR(512),
    actor VARCHAR(512) NOT NULL,
    user_id VARCHAR(255),
    role VARCHAR(64) NOT NULL,
    tenant_id VARCHAR(255),
    source_ip VARCHAR(255),
    user_agent LONGTEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id);

-- One row per management action (and per sign-in attempt): who, what, the resource before and
-- after (JSON text, as the API shows it: never a secret), and from where.
CREATE TABLE admin_audit (
    id VARCHAR(255) NOT NULL PRIMARY KEY,
    ts BIGINT NOT NULL,
    actor VARCHAR(512) NOT NULL,
    role VARCHAR(64),
    tenant_id VARCHAR(255),
    auth_method VARCHAR(64) NOT NULL,
    action VARCHAR(255) NOT NULL,
    method VARCHAR(16) NOT NULL,
    path LONGTEXT NOT NULL,
    target LONGTEXT,
    status BIGINT NOT NULL,
    before_state LONGTEXT,
    after_state LONGTEXT,
    source_ip VARCHAR(255),
    forwarded_for LONGTEXT,
    user_agent LONGTEXT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX admin_audit_ts ON admin_audit (ts, id);
CREATE INDEX admin_audit_actor ON admin_audit (actor, ts);
