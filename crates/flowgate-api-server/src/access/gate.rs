//! The gate every management route passes: authenticate (admin key, user API token or session
//! cookie with its CSRF token), authorise (the caller's role against the route's area, see
//! [`super::roles`]), attach the [`Principal`] for the handlers' tenant scope, and write the
//! admin audit record of every change.
//!
//! Order inside: authentication → CSRF (cookie sessions, changing methods only) → role → the
//! handler. A change's audit record holds the resource as `GET` showed it before and after the
//! change: the gate reads it through the same router, without the gate, as [`Principal::internal`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flowgate_common::auth::{bearer_token, constant_time_eq};
use secrecy::{ExposeSecret, SecretString};
use tower::ServiceExt;

use super::principal::{AuthMethod, Principal};
use super::roles::{Access, Role, access_of, area_of};
use super::store::{self, Kind};
use crate::admin_audit::model::AdminAuditRecord;
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "flowgate_session";
/// The header that carries the CSRF token of a cookie session on every change.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// The prefix of a user's management API token.
pub(crate) const TOKEN_PREFIX: &str = "fgm-";
/// The largest resource view the audit log copies (bigger ones are recorded without it).
const MAX_VIEW_BYTES: usize = 256 * 1024;

/// What the gate needs: the handlers' state, the admin key, and the routes without the gate (to
/// read a resource's state for the audit log).
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) state: AppState,
    pub(crate) admin_key: Arc<SecretString>,
    pub(crate) inner: Router,
    /// `(method, template)` of every `GET` route, to find a change's resource.
    pub(crate) readable: Arc<[&'static str]>,
    /// `(method, template)` of the routes that need no credential.
    pub(crate) public: &'static [(&'static str, &'static str)],
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate(..)")
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The CSRF token of a session: a keyed hash of its id, so it needs no storage and cannot be
/// made without the server's secret.
pub(crate) fn csrf_token(state: &AppState, session_id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state.hasher.hash(&format!("csrf:{session_id}")))
}

/// Who is calling, or why not.
pub(crate) async fn authenticate(
    state: &AppState,
    admin_key: &SecretString,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Principal, ApiError> {
    if let Some(presented) = bearer_token(headers).filter(|token| !token.is_empty()) {
        if constant_time_eq(presented.as_bytes(), admin_key.expose_secret().as_bytes()) {
            return Ok(Principal::admin_key());
        }
        if presented.starts_with(TOKEN_PREFIX) {
            let hash = store::secret_hash(&state.hasher, Kind::Token, presented);
            return match store::live_session(&state.database, Kind::Token, &hash).await? {
                Some(live) => Ok(principal(live, AuthMethod::Token, None)),
                None => Err(ApiError::Unauthorized {
                    code: "invalid_token",
                    message: "the API token is not valid (unknown, expired or revoked)".to_owned(),
                }),
            };
        }
        if let Some(oidc) = &state.oidc
            && super::oidc::looks_like_jwt(presented)
        {
            return jwt_principal(state, oidc, presented).await;
        }
        return Err(ApiError::Unauthorized {
            code: "invalid_admin_key",
            message: "the admin key is not valid".to_owned(),
        });
    }
    if let Some(session_id) = cookie(headers, SESSION_COOKIE) {
        let hash = store::secret_hash(&state.hasher, Kind::Browser, session_id);
        let Some(live) = store::live_session(&state.database, Kind::Browser, &hash).await? else {
            return Err(ApiError::Unauthorized {
                code: "invalid_session",
                message: "the session has ended; sign in again".to_owned(),
            });
        };
        if access_of(method) == Access::Write {
            let expected = csrf_token(state, session_id);
            let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
                return Err(ApiError::Forbidden {
                    code: "csrf_failed",
                    message: format!("a change made with the session cookie needs the `{CSRF_HEADER}` header"),
                });
            }
        }
        return Ok(principal(live, AuthMethod::Session, Some(hash)));
    }
    Err(ApiError::Unauthorized {
        code: "missing_admin_key",
        message: "send Authorization: Bearer <ADMIN_API_KEY>, an API token, or sign in".to_owned(),
    })
}

/// The caller of a bearer JWT from the identity provider: verified, mapped to a role, its user
/// created or brought up to date.
async fn jwt_principal(state: &AppState, oidc: &super::oidc::Oidc, token: &str) -> Result<Principal, ApiError> {
    let mut identity = oidc
        .verify(token, None)
        .await
        .and_then(|claims| oidc.identity(&claims))
        .map_err(super::oidc::into_api_error)?;
    if let Some(tenant) = identity.tenant_id.clone() {
        // A mapping may name the tenant by id or by name; one that names none confines to none.
        identity.tenant_id = Some(store::resolve_tenant(&state.database, &tenant).await?.unwrap_or_default());
    }
    let user = store::upsert_sso_user(
        &state.database,
        &store::NewUser {
            issuer: oidc.issuer(),
            subject: &identity.subject,
            email: identity.email.as_deref(),
            name: identity.name.as_deref(),
            role: identity.role,
            tenant_id: identity.tenant_id.as_deref(),
        },
    )
    .await?;
    Ok(Principal {
        actor: format!("user:{}", user.id),
        user_id: Some(user.id),
        role: identity.role,
        tenant_id: identity.tenant_id,
        method: AuthMethod::Jwt,
        session_hash: None,
    })
}

fn principal(live: store::LiveSession, method: AuthMethod, session_hash: Option<String>) -> Principal {
    Principal {
        actor: live.actor,
        user_id: live.user_id,
        role: live.role,
        tenant_id: live.tenant_id,
        method,
        session_hash,
    }
}

/// Whether `role` may call the route `template` with `method`. A route under no area is for
/// `admin` only.
pub(crate) fn permitted(role: Role, method: &Method, template: &str) -> bool {
    match area_of(template) {
        Some(area) => role.allows(area, access_of(method)),
        None => role == Role::Admin,
    }
}

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub(crate) source_ip: Option<String>,
    pub(crate) forwarded_for: Option<String>,
    pub(crate) user_agent: Option<String>,
}

impl Origin {
    pub(crate) fn of(request_headers: &HeaderMap, peer: Option<SocketAddr>) -> Self {
        let header = |name: &str| {
            request_headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(512).collect::<String>())
        };
        Self {
            source_ip: peer.map(|peer| peer.ip().to_string()),
            forwarded_for: header("x-forwarded-for"),
            user_agent: header("user-agent"),
        }
    }
}

/// A fresh admin audit record of `principal` doing `action`.
pub(crate) fn record(
    principal: Option<&Principal>,
    action: String,
    method: &Method,
    path: &str,
    status: StatusCode,
    origin: &Origin,
) -> AdminAuditRecord {
    let ts = flowgate_db::now_millis();
    AdminAuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        ts,
        time: crate::fields::rfc3339(ts),
        actor: principal.map_or_else(|| "anonymous".to_owned(), |p| p.actor.clone()),
        role: principal.map(|p| p.role.as_str().to_owned()),
        tenant_id: principal.and_then(|p| p.tenant_id.clone()),
        auth_method: principal.map_or("none", |p| p.method.as_str()).to_owned(),
        action,
        method: method.to_string(),
        path: path.to_owned(),
        target: None,
        status: i64::from(status.as_u16()),
        before: None,
        after: None,
        source_ip: origin.source_ip.clone(),
        forwarded_for: origin.forwarded_for.clone(),
        user_agent: origin.user_agent.clone(),
    }
}

/// Writes an audit record; a failure is logged (the action already happened and is answered).
pub(crate) async fn write(state: &AppState, record: &AdminAuditRecord) {
    if let Err(error) = crate::admin_audit::store::insert(&state.database, record).await {
        tracing::error!(%error, action = %record.action, actor = %record.actor, "cannot write the admin audit record");
    }
}

/// The middleware. Mount with `from_fn_with_state(gate, gate::run)` as a route layer, so the
/// route's template is known.
pub(crate) async fn run(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let template = request.extensions().get::<MatchedPath>().map_or_else(|| path.clone(), |m| m.as_str().to_owned());
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let changes = access_of(&method) == Access::Write;
    let origin = Origin::of(request.headers(), peer);
    let action = format!("{method} {template}");
    if gate.public.iter().any(|(m, t)| *m == method.as_str() && *t == template) {
        return next.run(request).await;
    }

    let principal = match authenticate(&gate.state, &gate.admin_key, request.headers(), &method).await {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    if !permitted(principal.role, &method, &template) {
        let error = ApiError::Forbidden {
            code: "forbidden",
            message: format!("the {} role may not call {method} {template}", principal.role.as_str()),
        };
        if changes {
            write(&gate.state, &record(Some(&principal), action, &method, &path, StatusCode::FORBIDDEN, &origin)).await;
        }
        return error.into_response();
    }
    request.extensions_mut().insert(principal.clone());
    if !changes {
        return next.run(request).await;
    }

    let resource = resource_path(&gate.readable, &template, &path);
    let before = match &resource {
        Some(resource) => view(&gate.inner, resource).await,
        None => None,
    };
    let response = next.run(request).await;
    let status = response.status();
    let mut entry = record(Some(&principal), action, &method, &path, status, &origin);
    entry.before = before;
    let response = if let Some(resource) = &resource {
        entry.target = resource.rsplit('/').next().map(str::to_owned);
        if status.is_success() {
            entry.after = view(&gate.inner, resource).await;
        }
        response
    } else if status.is_success() && method == Method::POST {
        // A create: find the new resource from the answer's `id` or `name`, then read it back.
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_VIEW_BYTES * 4).await.unwrap_or_default();
        let created: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let name = created.as_ref().and_then(|v| v.get("id").or_else(|| v.get("name"))).and_then(|v| v.as_str());
        if let Some(name) = name {
            let readable = gate.readable.iter().any(|t| {
                t.rsplit_once('/')
                    .is_some_and(|(parent, last)| parent == template && last.starts_with('{') && last.ends_with('}'))
            });
            if readable && !name.is_empty() && !name.contains(['/', '?', '#']) {
                entry.target = Some(name.to_owned());
                entry.after = view(&gate.inner, &format!("{path}/{name}")).await;
            }
        }
        Response::from_parts(parts, Body::from(bytes))
    } else {
        response
    };
    write(&gate.state, &entry).await;
    response
}

/// The path of the resource a change acts on: the request's path, or the nearest parent of it,
/// whose template is a `GET` route ending in a parameter (`…/vkeys/{id}` for
/// `…/vkeys/{id}/revoke`). `None` for a collection (a create) or an action on no resource.
pub(crate) fn resource_path(readable: &[&str], template: &str, path: &str) -> Option<String> {
    let mut template = template;
    let mut path = path;
    loop {
        if template.ends_with('}') && readable.contains(&template) {
            return Some(path.to_owned());
        }
        let (parent_template, _) = template.rsplit_once('/')?;
        let (parent_path, _) = path.rsplit_once('/')?;
        if parent_template.is_empty() {
            return None;
        }
        template = parent_template;
        path = parent_path;
    }
}

/// The resource at `path` as `GET` shows it, read through the routes without the gate.
async fn view(inner: &Router, path: &str) -> Option<serde_json::Value> {
    let mut request = Request::builder().method(Method::GET).uri(path).body(Body::empty()).ok()?;
    request.extensions_mut().insert(Principal::internal());
    let response = inner.clone().oneshot(request).await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let bytes = axum::body::to_bytes(response.into_body(), MAX_VIEW_BYTES).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_acts_on_the_nearest_readable_resource() {
        let readable = ["/api/enterprise/vkeys", "/api/enterprise/vkeys/{id}", "/api/policies/{name}"];
        assert_eq!(
            resource_path(&readable, "/api/enterprise/vkeys/{id}/revoke", "/api/enterprise/vkeys/k1/revoke").as_deref(),
            Some("/api/enterprise/vkeys/k1")
        );
        assert_eq!(
            resource_path(&readable, "/api/policies/{name}", "/api/policies/p").as_deref(),
            Some("/api/policies/p")
        );
        assert_eq!(resource_path(&readable, "/api/enterprise/vkeys", "/api/enterprise/vkeys"), None);
        assert_eq!(resource_path(&readable, "/api/admin/session", "/api/admin/session"), None);
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; flowgate_session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        headers.insert(header::COOKIE, "flowgate_session=".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
    }
}
