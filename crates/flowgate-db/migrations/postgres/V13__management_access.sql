-- The management plane's own identities: people who sign in to the portal (created on their
-- first single sign-on, or by an administrator), their sessions, and the admin audit log of
-- every management action.

-- A person known to the management plane. `issuer` + `subject` identify an SSO user; the role
-- and tenant come from the identity provider's claims at each sign-in (or are set by an admin).
CREATE TABLE admin_users (
    id TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT,
    name TEXT,
    role TEXT NOT NULL,
    tenant_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_login_at BIGINT,
    UNIQUE (issuer, subject)
);

-- A signed-in browser (`kind` = 'browser', the portal's cookie) or a management API token of a
-- user (`kind` = 'token', a bearer for automation). Only the keyed hash of the secret is stored
-- (`id_hash`, base64 of HMAC-SHA256 under the key-hash secret): a database read does not yield
-- a usable cookie or token.
CREATE TABLE admin_sessions (
    id_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    actor TEXT NOT NULL,
    user_id TEXT,
    role TEXT NOT NULL,
    tenant_id TEXT,
    source_ip TEXT,
    user_agent TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id);

-- One row per management action (and per sign-in attempt): who, what, the resource before and
-- after (JSON text, as the API shows it: never a secret), and from where.
CREATE TABLE admin_audit (
    id TEXT PRIMARY KEY,
    ts BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT,
    tenant_id TEXT,
    auth_method TEXT NOT NULL,
    action TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    target TEXT,
    status BIGINT NOT NULL,
    before_state TEXT,
    after_state TEXT,
    source_ip TEXT,
    forwarded_for TEXT,
    user_agent TEXT
);
CREATE INDEX admin_audit_ts ON admin_audit (ts, id);
CREATE INDEX admin_audit_actor ON admin_audit (actor, ts);
