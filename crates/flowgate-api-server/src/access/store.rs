//! SQL for sessions, API tokens and users (`admin_sessions`, `admin_users`). Secrets are stored
//! only as their keyed hash ([`secret_hash`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flowgate_common::keys::KeyHasher;
use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, now_millis};

use super::roles::Role;

/// A browser session (the portal's cookie) or a user's API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Browser,
    Token,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Browser => "browser",
            Kind::Token => "token",
        }
    }
}

/// The keyed hash stored for a session id or token: base64 of HMAC-SHA256 over `kind:secret`.
pub(crate) fn secret_hash(hasher: &KeyHasher, kind: Kind, secret: &str) -> String {
    STANDARD.encode(hasher.hash(&format!("{}:{secret}", kind.as_str())))
}

/// A new session or token to store.
#[derive(Debug)]
pub(crate) struct NewSession<'a> {
    pub(crate) kind: Kind,
    pub(crate) id_hash: &'a str,
    pub(crate) name: Option<&'a str>,
    pub(crate) actor: &'a str,
    pub(crate) user_id: Option<&'a str>,
    pub(crate) role: Role,
    pub(crate) tenant_id: Option<&'a str>,
    pub(crate) source_ip: Option<&'a str>,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) expires_at: i64,
}

pub(crate) async fn insert_session(db: &Database, new: &NewSession<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO admin_sessions (id_hash, kind, name, actor, user_id, role, tenant_id, source_ip, user_agent, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(new.id_hash)
    .bind(new.kind.as_str())
    .bind(new.name)
    .bind(new.actor)
    .bind(new.user_id)
    .bind(new.role.as_str())
    .bind(new.tenant_id)
    .bind(new.source_ip)
    .bind(new.user_agent)
    .bind(now_millis())
    .bind(new.expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// A live session or token, with the role and tenant its user has now.
#[derive(Debug, Clone)]
pub(crate) struct LiveSession {
    pub(crate) actor: String,
    pub(crate) user_id: Option<String>,
    pub(crate) role: Role,
    pub(crate) tenant_id: Option<String>,
}

/// The live (unexpired, unrevoked) session of `id_hash`. A user's session takes the user's
/// current role and tenant, so a change of role applies at once; a session whose user is gone,
/// or whose role is not one this build knows, is not live.
pub(crate) async fn live_session(db: &Database, kind: Kind, id_hash: &str) -> Result<Option<LiveSession>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.actor, s.user_id, s.role, s.tenant_id, u.id AS uid, u.role AS user_role, \
         u.tenant_id AS user_tenant FROM admin_sessions s LEFT JOIN admin_users u ON u.id = s.user_id \
         WHERE s.id_hash = $1 AND s.kind = $2 AND s.revoked_at IS NULL AND s.expires_at > $3",
    )
    .bind(id_hash)
    .bind(kind.as_str())
    .bind(now_millis())
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user_id: Option<String> = row.try_get("user_id")?;
    let (role, tenant_id): (String, Option<String>) = match &user_id {
        None => (row.try_get("role")?, row.try_get("tenant_id")?),
        Some(_) => {
            if row.try_get::<Option<String>, _>("uid")?.is_none() {
                return Ok(None);
            }
            (row.try_get::<Option<String>, _>("user_role")?.unwrap_or_default(), row.try_get("user_tenant")?)
        }
    };
    let Some(role) = Role::parse(&role) else { return Ok(None) };
    Ok(Some(LiveSession { actor: row.try_get("actor")?, user_id, role, tenant_id }))
}

/// Revokes one session; true when it was live.
pub(crate) async fn revoke_session(db: &Database, id_hash: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE admin_sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL")
        .bind(now_millis())
        .bind(id_hash)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes every session and token of a user; how many were live.
pub(crate) async fn revoke_user_sessions(db: &Database, user_id: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE admin_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now_millis())
        .bind(user_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Deletes sessions that ended (expired or revoked) more than `older_than_ms` ago.
pub(crate) async fn purge_ended(db: &Database, older_than_ms: i64) -> Result<u64, sqlx::Error> {
    let cutoff = now_millis() - older_than_ms;
    let done = sqlx::query("DELETE FROM admin_sessions WHERE expires_at < $1 OR revoked_at < $2")
        .bind(cutoff)
        .bind(cutoff)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// A user of the management plane.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct UserRow {
    pub(crate) id: String,
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) email: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) role: String,
    pub(crate) tenant_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) last_login_at: Option<i64>,
}

const USER_COLUMNS: &str = "id, issuer, subject, email, name, role, tenant_id, created_at, updated_at, last_login_at";

fn user(row: &AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: row.try_get("id")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        tenant_id: row.try_get("tenant_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_login_at: row.try_get("last_login_at")?,
    })
}

/// What a new user is made of.
#[derive(Debug)]
pub(crate) struct NewUser<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) email: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
    pub(crate) role: Role,
    pub(crate) tenant_id: Option<&'a str>,
}

pub(crate) async fn insert_user(db: &Database, new: &NewUser<'_>) -> Result<UserRow, sqlx::Error> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_millis();
    sqlx::query(
        "INSERT INTO admin_users (id, issuer, subject, email, name, role, tenant_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(new.issuer)
    .bind(new.subject)
    .bind(new.email)
    .bind(new.name)
    .bind(new.role.as_str())
    .bind(new.tenant_id)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_user(db, &id).await?.ok_or(sqlx::Error::RowNotFound)
}

pub(crate) async fn get_user(db: &Database, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM admin_users WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(user).transpose()
}

/// Up to `limit` users after `after` (by creation, then id), and whether more follow.
pub(crate) async fn list_users(
    db: &Database,
    after: Option<&crate::fields::Cursor>,
    limit: u32,
) -> Result<(Vec<UserRow>, bool), sqlx::Error> {
    let mut sql = crate::sql::Sql::new(&format!("SELECT {USER_COLUMNS} FROM admin_users WHERE 1 = 1"));
    if let Some(cursor) = after {
        sql.push(" AND (created_at > ")
            .int(cursor.created_at)
            .push(" OR (created_at = ")
            .int(cursor.created_at)
            .push(" AND id > ")
            .text(&cursor.id)
            .push("))");
    }
    sql.push(" ORDER BY created_at, id LIMIT ").int(i64::from(limit) + 1);
    let rows = sql.query(db).fetch_all(db.pool()).await?;
    let mut users = rows.iter().map(user).collect::<Result<Vec<_>, _>>()?;
    let more = users.len() > limit as usize;
    users.truncate(limit as usize);
    Ok((users, more))
}

/// Sets a user's role and tenant; the row after, or `None` when there is no such user.
pub(crate) async fn set_user_role(
    db: &Database,
    id: &str,
    role: Role,
    tenant_id: Option<&str>,
) -> Result<Option<UserRow>, sqlx::Error> {
    let done = sqlx::query("UPDATE admin_users SET role = $1, tenant_id = $2, updated_at = $3 WHERE id = $4")
        .bind(role.as_str())
        .bind(tenant_id)
        .bind(now_millis())
        .bind(id)
        .execute(db.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    get_user(db, id).await
}

pub(crate) async fn delete_user(db: &Database, id: &str) -> Result<bool, sqlx::Error> {
    revoke_user_sessions(db, id).await?;
    let done = sqlx::query("DELETE FROM admin_users WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(done.rows_affected() > 0)
}

/// Creates the user `issuer` + `subject` on first sign-in, or brings an existing one's role,
/// tenant, email and name up to date (the identity provider is the source of truth for them),
/// and records the sign-in time.
pub(crate) async fn upsert_sso_user(db: &Database, new: &NewUser<'_>) -> Result<UserRow, sqlx::Error> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO admin_users (id, issuer, subject, email, name, role, tenant_id, created_at, updated_at, \
         last_login_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (issuer, subject) DO UPDATE \
         SET email = excluded.email, name = excluded.name, role = excluded.role, tenant_id = excluded.tenant_id, \
         updated_at = excluded.updated_at, last_login_at = excluded.last_login_at",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(new.issuer)
    .bind(new.subject)
    .bind(new.email)
    .bind(new.name)
    .bind(new.role.as_str())
    .bind(new.tenant_id)
    .bind(now)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    let sql = format!("SELECT {USER_COLUMNS} FROM admin_users WHERE issuer = $1 AND subject = $2");
    let row = sqlx::query(&sql).bind(new.issuer).bind(new.subject).fetch_one(db.pool()).await?;
    user(&row)
}

/// The id of the tenant `reference` names, by id or else by name.
pub(crate) async fn resolve_tenant(db: &Database, reference: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id FROM tenants WHERE id = $1 OR name = $2 ORDER BY CASE WHEN id = $3 THEN 0 ELSE 1 END LIMIT 1",
    )
    .bind(reference)
    .bind(reference)
    .bind(reference)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| row.try_get("id")).transpose()
}
