//! Request extractors whose every rejection is an [`ApiError`]: a 400 that names the field and
//! the problem (or a 413), never axum's plain-text rejections and never a 500.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body, parsed strictly (unknown fields are errors where the type says so).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

/// A JSON body that may be absent: an empty body is `T::default()`.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub(crate) T);

/// Query parameters, parsed strictly.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::InvalidRequest(format!("cannot read the request body: {}", rejection.body_text()))
        }
    })
}

/// Parses `bytes` as one JSON document of type `T`, naming the path of a field at fault.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson("the request body is empty; send a JSON object".to_owned()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::MalformedJson(inner.to_string())
            }
            serde_json::error::Category::Data | serde_json::error::Category::Io => {
                if path == "." || path.is_empty() {
                    ApiError::InvalidRequest(inner.to_string())
                } else {
                    ApiError::InvalidRequest(format!("{path}: {inner}"))
                }
            }
        }
    })?;
    deserializer.end().map_err(|error| ApiError::MalformedJson(error.to_string()))?;
    Ok(value)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes).map(Self)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(Self)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::InvalidRequest(format!("invalid query string: {}", rejection.body_text()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[expect(dead_code, reason = "only parsed")]
        name: String,
        #[expect(dead_code, reason = "only parsed")]
        rpm: Option<u32>,
    }

    fn message(result: Result<Body, ApiError>) -> (String, String) {
        let error = result.unwrap_err();
        let kind = match &error {
            ApiError::MalformedJson(_) => "json",
            ApiError::InvalidRequest(_) => "request",
            _ => "other",
        };
        (kind.to_owned(), error.to_string())
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert_eq!(message(parse_json(b"{\"name\": ")).0, "json");
        assert_eq!(message(parse_json(b"")).0, "json");
        assert_eq!(message(parse_json(b"{\"name\": \"a\"} trailing")).0, "json");
    }

    #[test]
    fn shape_errors_name_the_field() {
        let (kind, text) = message(parse_json(br#"{"name": "a", "rpm": "fast"}"#));
        assert_eq!(kind, "request");
        assert!(text.starts_with("rpm: invalid type: string"), "{text}");
        let (_, text) = message(parse_json(br#"{"name": "a", "colour": 1}"#));
        assert!(text.contains("unknown field `colour`"), "{text}");
        let (_, text) = message(parse_json(br#"{"rpm": 1}"#));
        assert!(text.contains("missing field `name`"), "{text}");
        let (_, text) = message(parse_json(b"[1, 2]"));
        assert!(text.contains("invalid type"), "{text}");
    }
}
