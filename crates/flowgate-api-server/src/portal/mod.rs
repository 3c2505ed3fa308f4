//! The portal at `/ui`: server-rendered HTML (maud: compile-time templates, escaping by default)
//! over the management API. Every page is a client of the API: it calls the gated router with the
//! browser's session cookie (and, for a change, the CSRF token from the form), so roles, tenant
//! scope and the admin audit log apply to the portal exactly as to any other caller, and the
//! portal holds no data access of its own.
//!
//! Every answer carries a strict Content-Security-Policy (no inline script or style, nothing from
//! another origin, `frame-ancestors 'none'`), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`.

mod pages;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

/// The Content-Security-Policy of every portal answer.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                              connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The `/ui` routes, calling `api` (the management router, gate included) for everything.
pub(crate) fn router(api: Router) -> Router {
    Router::new()
        .route("/ui", get(pages::home))
        .route("/ui/", get(pages::home))
        .route("/ui/assets/portal.css", get(pages::stylesheet))
        .route("/ui/sign-in", get(pages::sign_in_page).post(pages::sign_in))
        .route("/ui/sign-out", post(pages::sign_out))
        .route("/ui/keys", get(pages::keys).post(pages::create_key))
        .route("/ui/keys/{id}", get(pages::key_detail).post(pages::edit_key))
        .route("/ui/keys/{id}/revoke", post(pages::revoke_key))
        .route("/ui/keys/{id}/rotate", post(pages::rotate_key))
        .route("/ui/tenants", get(pages::tenants))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/users", get(pages::users).post(pages::create_user))
        .route("/ui/users/{id}/tokens", post(pages::create_token))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(api)
}
