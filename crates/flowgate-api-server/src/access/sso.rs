//! The browser's single sign-on: `GET /api/admin/oidc/login` sends the browser to the identity
//! provider (authorization code flow with PKCE, a fresh `state` and `nonce`), and
//! `GET /api/admin/oidc/callback` takes it back: the code is exchanged, the ID token verified,
//! the user created or updated with the role its claims map to, and a portal session opened.
//!
//! Between the two, `state`, `nonce` and the PKCE verifier travel in a short-lived cookie signed
//! with the server's secret (`flowgate_oidc`, HttpOnly, SameSite=Lax so the provider's redirect
//! brings it back), so any replica can finish a sign-in another one started.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flowgate_common::auth::constant_time_eq;
use flowgate_common::keys::random_secret;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::gate::{self, Origin, cookie};
use super::handlers::open_session;
use super::oidc::into_api_error;
use super::principal::{AuthMethod, Principal};
use super::store::{self, NewUser};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

const FLOW_COOKIE: &str = "flowgate_oidc";
const FLOW_TTL_SECS: i64 = 600;
/// Where the browser goes after signing in when the sign-in did not say.
const DEFAULT_RETURN: &str = "/ui";

#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    expires_at: i64,
}

fn seal(state: &AppState, flow: &Flow) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(flow).ok()?);
    let mac = URL_SAFE_NO_PAD.encode(state.hasher.hash(&format!("oidc-flow:{payload}")));
    Some(format!("{payload}.{mac}"))
}

fn open(state: &AppState, sealed: &str) -> Option<Flow> {
    let (payload, mac) = sealed.split_once('.')?;
    let expected = URL_SAFE_NO_PAD.encode(state.hasher.hash(&format!("oidc-flow:{payload}")));
    if !constant_time_eq(mac.as_bytes(), expected.as_bytes()) {
        return None;
    }
    let flow: Flow = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (flow.expires_at > flowgate_db::now_millis()).then_some(flow)
}

fn not_configured() -> ApiError {
    ApiError::NotFound { kind: "single sign-on", id: "oidc".to_owned() }
}

/// A same-site path to return to: `/…` but not `//…` (another host), else the portal.
fn safe_return(asked: Option<&str>) -> String {
    match asked {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') && path.len() < 512 => {
            path.to_owned()
        }
        _ => DEFAULT_RETURN.to_owned(),
    }
}

/// The query of `GET /api/admin/oidc/login`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /api/admin/oidc/login?return_to=/ui`: 302 to the identity provider.
#[tracing::instrument(name = "oidc.login", skip_all)]
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    let oidc = state.oidc.as_ref().ok_or_else(not_configured)?;
    let redirect = oidc.settings.redirect_url.clone().ok_or_else(not_configured)?;
    let flow = Flow {
        state: random_secret("")?.expose_secret().to_owned(),
        nonce: random_secret("")?.expose_secret().to_owned(),
        verifier: random_secret("")?.expose_secret().to_owned(),
        return_to: safe_return(query.return_to.as_deref()),
        expires_at: flowgate_db::now_millis() + FLOW_TTL_SECS * 1000,
    };
    let url =
        oidc.authorization_url(&redirect, &flow.state, &flow.nonce, &flow.verifier).await.map_err(into_api_error)?;
    let secure = if state.secure_cookies || redirect.starts_with("https://") || forwarded_https(&headers) {
        "; Secure"
    } else {
        ""
    };
    let sealed = seal(&state, &flow).ok_or_else(|| ApiError::InvalidRequest("cannot start the sign-in".to_owned()))?;
    let set = format!(
        "{FLOW_COOKIE}={sealed}; Path=/api/admin/oidc; HttpOnly; SameSite=Lax; Max-Age={FLOW_TTL_SECS}{secure}"
    );
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_str(&url).map_err(|_| not_configured())?);
    headers.insert(header::SET_COOKIE, HeaderValue::from_str(&set).map_err(|_| not_configured())?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn forwarded_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The query the identity provider sends the browser back with.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    #[serde(flatten)]
    _other: std::collections::BTreeMap<String, String>,
}

/// `GET /api/admin/oidc/callback?code=&state=`: finishes the sign-in, sets the session cookie,
/// 303 to where the sign-in started.
#[tracing::instrument(name = "oidc.callback", skip_all)]
pub(crate) async fn callback(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    let oidc = state.oidc.as_ref().ok_or_else(not_configured)?;
    let redirect = oidc.settings.redirect_url.clone().ok_or_else(not_configured)?;
    let origin = Origin::of(&headers, peer.map(|c| c.0.0));
    let path = "/api/admin/oidc/callback";
    let refuse = |message: String| async {
        let entry = gate::record(
            None,
            "session.create_failed".to_owned(),
            &Method::GET,
            path,
            StatusCode::UNAUTHORIZED,
            &origin,
        );
        gate::write(&state, &entry).await;
        ApiError::Unauthorized { code: "sso_failed", message }
    };
    if let Some(error) = &query.error {
        let detail = query.error_description.as_deref().unwrap_or_default();
        return Err(refuse(format!("the identity provider refused the sign-in: {error} {detail}")).await);
    }
    let flow = cookie(&headers, FLOW_COOKIE).and_then(|sealed| open(&state, sealed));
    let Some(flow) = flow else {
        return Err(refuse("the sign-in expired or was not started here; start again".to_owned()).await);
    };
    let state_ok = query.state.as_deref().is_some_and(|s| constant_time_eq(s.as_bytes(), flow.state.as_bytes()));
    let (true, Some(code)) = (state_ok, query.code.as_deref()) else {
        return Err(refuse("the sign-in's state does not match; start again".to_owned()).await);
    };
    let id_token = oidc.exchange(code, &redirect, &flow.verifier).await.map_err(into_api_error)?;
    let identity = match oidc.verify(&id_token, Some(&flow.nonce)).await.and_then(|claims| oidc.identity(&claims)) {
        Ok(identity) => identity,
        Err(error) => {
            let error = into_api_error(error);
            let entry = gate::record(
                None,
                "session.create_failed".to_owned(),
                &Method::GET,
                path,
                StatusCode::UNAUTHORIZED,
                &origin,
            );
            gate::write(&state, &entry).await;
            return Err(error);
        }
    };
    let mut identity = identity;
    if let Some(tenant) = identity.tenant_id.clone() {
        match store::resolve_tenant(&state.database, &tenant).await? {
            Some(id) => identity.tenant_id = Some(id),
            None => {
                return Err(refuse(format!("your role's tenant `{tenant}` does not exist; ask an administrator")).await);
            }
        }
    }
    let user = store::upsert_sso_user(
        &state.database,
        &NewUser {
            issuer: oidc.issuer(),
            subject: &identity.subject,
            email: identity.email.as_deref(),
            name: identity.name.as_deref(),
            role: identity.role,
            tenant_id: identity.tenant_id.as_deref(),
        },
    )
    .await?;
    let principal = Principal {
        actor: format!("user:{}", user.id),
        user_id: Some(user.id.clone()),
        role: identity.role,
        tenant_id: identity.tenant_id.clone(),
        method: AuthMethod::Session,
        session_hash: None,
    };
    let (_, session_cookie) = open_session(&state, &headers, &origin, &principal).await?;
    let mut entry =
        gate::record(Some(&principal), "session.create".to_owned(), &Method::GET, path, StatusCode::SEE_OTHER, &origin);
    entry.auth_method = "oidc".to_owned();
    entry.target = Some(user.id.clone());
    gate::write(&state, &entry).await;
    tracing::info!(user_id = %user.id, role = identity.role.as_str(), "signed in by single sign-on");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let out = response.headers_mut();
    out.insert(header::LOCATION, HeaderValue::from_str(&flow.return_to).map_err(|_| not_configured())?);
    out.append(header::SET_COOKIE, session_cookie);
    out.append(
        header::SET_COOKIE,
        HeaderValue::from_static("flowgate_oidc=; Path=/api/admin/oidc; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_site_paths_are_returned_to() {
        assert_eq!(safe_return(Some("/ui/keys")), "/ui/keys");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "ui"] {
            assert_eq!(safe_return(Some(bad)), DEFAULT_RETURN, "{bad}");
        }
        assert_eq!(safe_return(None), DEFAULT_RETURN);
    }
}
