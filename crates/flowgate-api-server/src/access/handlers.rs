//! `/api/admin/session` (sign in with the admin key, who am I, sign out) and `/api/admin/users`
//! (users, their roles and their API tokens).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flowgate_common::auth::constant_time_eq;
use flowgate_common::keys::random_secret;
use flowgate_db::now_millis;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::gate::{self, Origin, SESSION_COOKIE, TOKEN_PREFIX, cookie, csrf_token};
use super::principal::{AuthMethod, Principal};
use super::roles::Role;
use super::store::{self, Kind, NewSession, NewUser, UserRow};
use crate::error::{ApiError, is_unique_violation};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::fields::{Cursor, Page, PageQuery, page_size, rfc3339};
use crate::state::AppState;

/// The issuer recorded for users made through the API rather than by single sign-on.
pub(crate) const LOCAL_ISSUER: &str = "local";
/// The longest a user's API token may live: one year.
const MAX_TOKEN_TTL_SECS: u64 = 366 * 24 * 3600;
/// A token's lifetime when none is asked: 90 days.
const DEFAULT_TOKEN_TTL_SECS: u64 = 90 * 24 * 3600;

/// `POST /api/admin/session`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    admin_key: SecretString,
}

/// Who is signed in, and the CSRF token to send with every change.
#[derive(Debug, Serialize)]
pub(crate) struct SessionView {
    actor: String,
    role: &'static str,
    tenant_id: Option<String>,
    auth_method: &'static str,
    /// Send as `x-csrf-token` with every change made with the session cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

/// Whether the session cookie must be `Secure`: configured so, or the request came over TLS
/// through a reverse proxy.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// Opens a browser session for `principal`: a fresh random id (never one the browser brought:
/// no session fixation), its hash stored, the cookie set.
pub(crate) async fn open_session(
    state: &AppState,
    headers: &HeaderMap,
    origin: &Origin,
    principal: &Principal,
) -> Result<(SessionView, HeaderValue), ApiError> {
    let session_id = random_secret("")?;
    let session_id = session_id.expose_secret();
    let hash = store::secret_hash(&state.hasher, Kind::Browser, session_id);
    #[expect(clippy::cast_possible_wrap, reason = "validated at start: a few days at most in practice")]
    let expires_at = now_millis() + (state.session_ttl_secs as i64).saturating_mul(1000);
    store::insert_session(
        &state.database,
        &NewSession {
            kind: Kind::Browser,
            id_hash: &hash,
            name: None,
            actor: &principal.actor,
            user_id: principal.user_id.as_deref(),
            role: principal.role,
            tenant_id: principal.tenant_id.as_deref(),
            source_ip: origin.source_ip.as_deref(),
            user_agent: origin.user_agent.as_deref(),
            expires_at,
        },
    )
    .await?;
    // A session the browser already had ends here.
    if let Some(previous) = cookie(headers, SESSION_COOKIE) {
        store::revoke_session(&state.database, &store::secret_hash(&state.hasher, Kind::Browser, previous)).await?;
    }
    let cookie = session_cookie(session_id, state.session_ttl_secs, secure(state, headers))
        .ok_or_else(|| ApiError::InvalidRequest("cannot build the session cookie".to_owned()))?;
    let view = SessionView {
        actor: principal.actor.clone(),
        role: principal.role.as_str(),
        tenant_id: principal.tenant_id.clone(),
        auth_method: AuthMethod::Session.as_str(),
        csrf_token: Some(csrf_token(state, session_id)),
        expires_at: Some(rfc3339(expires_at)),
    };
    Ok((view, cookie))
}

/// `POST /api/admin/session` with `{"admin_key": "..."}`: signs in with the admin key. Public
/// (it is how one gets a session); every attempt is in the admin audit log.
#[tracing::instrument(name = "session.create", skip_all)]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let origin = Origin::of(&headers, peer.map(|c| c.0.0));
    let path = "/api/admin/session";
    let valid = constant_time_eq(body.admin_key.expose_secret().as_bytes(), state.admin_key.expose_secret().as_bytes());
    if !valid {
        let entry = gate::record(
            None,
            "session.create_failed".to_owned(),
            &Method::POST,
            path,
            StatusCode::UNAUTHORIZED,
            &origin,
        );
        gate::write(&state, &entry).await;
        return Err(ApiError::Unauthorized {
            code: "invalid_admin_key",
            message: "the admin key is not valid".to_owned(),
        });
    }
    let principal = Principal { method: AuthMethod::Session, ..Principal::admin_key() };
    // Housekeeping: sessions that ended a week ago are of no further use.
    store::purge_ended(&state.database, 7 * 24 * 3600 * 1000).await?;
    let (view, cookie) = open_session(&state, &headers, &origin, &principal).await?;
    let entry =
        gate::record(Some(&principal), "session.create".to_owned(), &Method::POST, path, StatusCode::CREATED, &origin);
    gate::write(&state, &entry).await;
    tracing::info!(actor = %principal.actor, "signed in to the management plane");
    Ok((StatusCode::CREATED, [(header::SET_COOKIE, cookie)], Json(view)).into_response())
}

/// `GET /api/admin/session`: who is calling (with the CSRF token when by session cookie).
pub(crate) async fn whoami(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
) -> Json<SessionView> {
    let csrf = (principal.method == AuthMethod::Session)
        .then(|| cookie(&headers, SESSION_COOKIE).map(|id| csrf_token(&state, id)))
        .flatten();
    Json(SessionView {
        actor: principal.actor,
        role: principal.role.as_str(),
        tenant_id: principal.tenant_id,
        auth_method: principal.method.as_str(),
        csrf_token: csrf,
        expires_at: None,
    })
}

/// `DELETE /api/admin/session` → 204: signs out (the session is revoked server-side and the
/// cookie cleared). With a bearer credential there is nothing to end: 204 as well.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(hash) = &principal.session_hash {
        store::revoke_session(&state.database, hash).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(clear) = session_cookie("", 0, secure(&state, &headers)) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    Ok(response)
}

/// A user as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct UserView {
    id: String,
    /// `local` for users made here; the identity provider's issuer for single sign-on users.
    issuer: String,
    subject: String,
    email: Option<String>,
    name: Option<String>,
    role: String,
    tenant_id: Option<String>,
    created_at: String,
    updated_at: String,
    last_login_at: Option<String>,
}

impl From<UserRow> for UserView {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            issuer: row.issuer,
            subject: row.subject,
            email: row.email,
            name: row.name,
            role: row.role,
            tenant_id: row.tenant_id,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            last_login_at: row.last_login_at.map(rfc3339),
        }
    }
}

/// `POST /api/admin/users`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    name: String,
    email: Option<String>,
    role: String,
    tenant_id: Option<String>,
}

/// `PATCH /api/admin/users/{id}`'s body: the role and, for `tenant-admin`, the tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchUser {
    role: String,
    tenant_id: Option<String>,
}

/// A role and the tenant that goes with it, checked: `tenant-admin` needs an existing tenant;
/// the other roles take none.
async fn role_and_tenant(
    state: &AppState,
    role: &str,
    tenant_id: Option<&str>,
) -> Result<(Role, Option<String>), ApiError> {
    let parsed = Role::parse(role.trim())
        .ok_or_else(|| ApiError::field("role", "must be one of admin, operator, tenant-admin, auditor, viewer"))?;
    match (parsed, tenant_id.map(str::trim)) {
        (Role::TenantAdmin, None | Some("")) => Err(ApiError::field("tenant_id", "is required for tenant-admin")),
        (Role::TenantAdmin, Some(tenant)) => {
            if crate::tenants::store::get_tenant(&state.database, tenant).await?.is_none() {
                return Err(ApiError::field("tenant_id", format!("no tenant has id `{tenant}`")));
            }
            Ok((parsed, Some(tenant.to_owned())))
        }
        (_, None) => Ok((parsed, None)),
        (_, Some(_)) => Err(ApiError::field("tenant_id", "is only for the tenant-admin role")),
    }
}

fn user_not_found(id: &str) -> ApiError {
    ApiError::NotFound { kind: "user", id: id.to_owned() }
}

/// `POST /api/admin/users` → 201: a user who signs in with API tokens (or later by single
/// sign-on with the same identity).
#[tracing::instrument(name = "users.create", skip_all)]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let name = crate::fields::validate_name("name", &body.name)?;
    let email = body.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    if email.is_some_and(|e| e.len() > 320 || !e.contains('@')) {
        return Err(ApiError::field("email", "is not an email address"));
    }
    let (role, tenant) = role_and_tenant(&state, &body.role, body.tenant_id.as_deref()).await?;
    let subject = uuid::Uuid::now_v7().to_string();
    let new = NewUser {
        issuer: LOCAL_ISSUER,
        subject: &subject,
        email,
        name: Some(&name),
        role,
        tenant_id: tenant.as_deref(),
    };
    let row = store::insert_user(&state.database, &new).await.map_err(|error| {
        if is_unique_violation(&error) { ApiError::Conflict("this user exists".to_owned()) } else { error.into() }
    })?;
    tracing::info!(user_id = %row.id, role = role.as_str(), "management user created");
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// `GET /api/admin/users?limit=&cursor=`.
pub(crate) async fn list_users(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<UserView>>, ApiError> {
    let limit = page_size(query.limit)?;
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let (rows, more) = store::list_users(&state.database, cursor.as_ref(), limit).await?;
    let next_cursor =
        if more { rows.last().map(|r| Cursor { created_at: r.created_at, id: r.id.clone() }.encode()) } else { None };
    Ok(Json(Page { data: rows.into_iter().map(UserView::from).collect(), next_cursor }))
}

/// `GET /api/admin/users/{id}`.
pub(crate) async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let row = store::get_user(&state.database, &id).await?.ok_or_else(|| user_not_found(&id))?;
    Ok(Json(row.into()))
}

/// `PATCH /api/admin/users/{id}`: a new role (and tenant); it applies to the user's live
/// sessions and tokens at once.
pub(crate) async fn patch_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchUser>,
) -> Result<Json<UserView>, ApiError> {
    let (role, tenant) = role_and_tenant(&state, &body.role, body.tenant_id.as_deref()).await?;
    let row = store::set_user_role(&state.database, &id, role, tenant.as_deref())
        .await?
        .ok_or_else(|| user_not_found(&id))?;
    Ok(Json(row.into()))
}

/// `DELETE /api/admin/users/{id}` → 204: the user and every session and token of theirs end.
pub(crate) async fn delete_user(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if !store::delete_user(&state.database, &id).await? {
        return Err(user_not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/admin/users/{id}/tokens`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    name: Option<String>,
    ttl_secs: Option<u64>,
}

/// A new API token, shown this once.
#[derive(Debug, Serialize)]
pub(crate) struct TokenView {
    /// `fgm-…`: send as `Authorization: Bearer`. Shown only in this answer.
    token: String,
    user_id: String,
    name: Option<String>,
    expires_at: String,
}

/// `POST /api/admin/users/{id}/tokens` → 201: a management API token acting as the user (with
/// the user's role at each call), for automation. Stored only as its keyed hash.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CreateToken>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let user = store::get_user(&state.database, &id).await?.ok_or_else(|| user_not_found(&id))?;
    let ttl = body.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if !(60..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::field("ttl_secs", format!("must be between 60 and {MAX_TOKEN_TTL_SECS}")));
    }
    let name = body.name.as_deref().map(|n| crate::fields::validate_name("name", n)).transpose()?;
    let token = random_secret(TOKEN_PREFIX)?;
    let hash = store::secret_hash(&state.hasher, Kind::Token, token.expose_secret());
    #[expect(clippy::cast_possible_wrap, reason = "bounded by MAX_TOKEN_TTL_SECS")]
    let expires_at = now_millis() + ttl as i64 * 1000;
    let actor = format!("user:{}", user.id);
    let role = Role::parse(&user.role).ok_or_else(|| ApiError::Conflict("the user's role is not known".to_owned()))?;
    store::insert_session(
        &state.database,
        &NewSession {
            kind: Kind::Token,
            id_hash: &hash,
            name: name.as_deref(),
            actor: &actor,
            user_id: Some(&user.id),
            role,
            tenant_id: user.tenant_id.as_deref(),
            source_ip: None,
            user_agent: None,
            expires_at,
        },
    )
    .await?;
    let view =
        TokenView { token: token.expose_secret().to_owned(), user_id: user.id, name, expires_at: rfc3339(expires_at) };
    Ok((StatusCode::CREATED, Json(view)))
}
