//! Admin-key authentication for the management, compliance and policy HTTP APIs.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request, from `Authorization: Bearer ...` (the scheme in any case) or
/// `x-api-key`. Header values that are not visible ASCII are ignored. Never panics, whatever the
/// bytes (`tests/input_properties.rs`).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some((scheme, token)) = value.trim().split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some(token.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// JSON error body used by the management-side APIs: `{"error": {"code", "message"}}`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Middleware that admits only requests carrying the admin key. Mount it with
/// `axum::middleware::from_fn(move |req, next| require_admin(key.clone(), req, next))`.
pub async fn require_admin(admin_key: Arc<SecretString>, request: Request, next: Next) -> Response {
    let presented = bearer_token(request.headers()).unwrap_or_default();
    if presented.is_empty() {
        return json_error(StatusCode::UNAUTHORIZED, "missing_admin_key", "send Authorization: Bearer <ADMIN_API_KEY>");
    }
    if !constant_time_eq(presented.as_bytes(), admin_key.expose_secret().as_bytes()) {
        return json_error(StatusCode::UNAUTHORIZED, "invalid_admin_key", "the admin key is not valid");
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn bearer_token_reads_both_headers() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("k1"));
        headers.insert(header::AUTHORIZATION, "Bearer k2".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("k2"));
        headers.insert(header::AUTHORIZATION, "BEARER  k3 ".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("k3"), "the scheme is case-insensitive (RFC 9110)");
        headers.insert(header::AUTHORIZATION, "Basic k4".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some("k1"), "another scheme: x-api-key");
    }
}
