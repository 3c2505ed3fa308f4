//! Errors of the data plane, rendered in the caller's format: OpenAI
//! `{"error":{"message","type","param","code"}}` or Anthropic `{"type":"error","error":{"type","message"}}`.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The API format a client speaks, chosen by route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFormat {
    /// `/v1/*`, `/oai/v1/*`, `/cursor/v1/*`.
    OpenAi,
    /// `/anthropic/v1/*`.
    Anthropic,
}

/// Everything that can stop a proxied request. Messages are safe to show to the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// No key, a malformed key, or an unknown / revoked / expired one.
    #[error("{0}")]
    Unauthorized(String),
    /// The key may not use this model, or the client IP is not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A rate limit or budget stopped the request.
    #[error("{message}")]
    RateLimited {
        /// What limit.
        message: String,
        /// `budget_exceeded`, `rate_limit_exceeded`, ...
        code: &'static str,
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
        /// `x-ratelimit-*` headers to attach.
        headers: crate::limits::RateHeaders,
    },
    /// Malformed JSON, a missing field, a wrong type.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The offending parameter, if known.
        param: Option<String>,
    },
    /// The body exceeds the configured limit.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The model name is not configured.
    #[error("model `{0}` does not exist or is not available")]
    ModelNotFound(String),
    /// The upstream answered with an error status; its status and (safe) message are preserved.
    #[error("{message}")]
    Upstream {
        /// Upstream HTTP status.
        status: u16,
        /// Upstream's message (never includes our credentials).
        message: String,
        /// Upstream's error type/code, when given.
        code: Option<String>,
    },
    /// The upstream did not answer in time.
    #[error("{0}")]
    UpstreamTimeout(String),
    /// The upstream could not be reached, or every deployment is cooling down.
    #[error("{message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// Seconds until a deployment is expected back, if known.
        retry_after_secs: Option<u64>,
    },
    /// A guardrail stopped the request.
    #[error("{message}")]
    GuardrailBlocked {
        /// Which guardrail and why (never the sensitive text).
        message: String,
    },
    /// A guardrail that must run could not.
    #[error("{message}")]
    GuardrailUnavailable {
        /// What failed.
        message: String,
    },
    /// A bug or an unexpected failure; details are logged, not returned.
    #[error("internal error")]
    Internal,
}

impl ProxyError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest { message: message.into(), param: None }
    }

    /// The HTTP status. One exhaustive match: a new variant must decide its status here.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadRequest { .. } | Self::GuardrailBlocked { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ModelNotFound(_) => StatusCode::NOT_FOUND,
            Self::Upstream { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable { .. } | Self::GuardrailUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type` and `error.code`.
    fn openai_type_and_code(&self) -> (&'static str, String) {
        match self {
            Self::Unauthorized(_) => ("invalid_request_error", "invalid_api_key".to_owned()),
            Self::Forbidden(_) => ("permission_error", "forbidden".to_owned()),
            Self::RateLimited { code, .. } => ("rate_limit_error", (*code).to_owned()),
            Self::BadRequest { .. } => ("invalid_request_error", "invalid_request".to_owned()),
            Self::PayloadTooLarge { .. } => ("invalid_request_error", "request_too_large".to_owned()),
            Self::ModelNotFound(_) => ("invalid_request_error", "model_not_found".to_owned()),
            Self::Upstream { status, code, .. } => {
                let kind = match status {
                    429 => "rate_limit_error",
                    400..=499 => "invalid_request_error",
                    _ => "api_error",
                };
                (kind, code.clone().unwrap_or_else(|| "upstream_error".to_owned()))
            }
            Self::UpstreamTimeout(_) => ("api_error", "upstream_timeout".to_owned()),
            Self::Unavailable { .. } => ("api_error", "upstream_unavailable".to_owned()),
            Self::GuardrailBlocked { .. } => ("invalid_request_error", "guardrail_blocked".to_owned()),
            Self::GuardrailUnavailable { .. } => ("api_error", "guardrail_unavailable".to_owned()),
            Self::Internal => ("api_error", "internal_error".to_owned()),
        }
    }

    /// Anthropic's `error.type`.
    fn anthropic_type(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "authentication_error",
            Self::Forbidden(_) => "permission_error",
            Self::RateLimited { .. } => "rate_limit_error",
            Self::BadRequest { .. } | Self::PayloadTooLarge { .. } | Self::GuardrailBlocked { .. } => {
                "invalid_request_error"
            }
            Self::ModelNotFound(_) => "not_found_error",
            Self::Upstream { status, .. } => match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                400..=499 => "invalid_request_error",
                _ => "api_error",
            },
            Self::Unavailable { .. } => "overloaded_error",
            Self::UpstreamTimeout(_) | Self::GuardrailUnavailable { .. } | Self::Internal => "api_error",
        }
    }

    /// The JSON body in `format`.
    pub fn body(&self, format: ApiFormat) -> serde_json::Value {
        let message = self.to_string();
        match format {
            ApiFormat::OpenAi => {
                let (kind, code) = self.openai_type_and_code();
                let param = match self {
                    Self::BadRequest { param, .. } => param.clone(),
                    Self::ModelNotFound(_) => Some("model".to_owned()),
                    _ => None,
                };
                serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
            }
            ApiFormat::Anthropic => {
                let mut body =
                    serde_json::json!({"type": "error", "error": {"type": self.anthropic_type(), "message": message}});
                // Anthropic has no `code`; ours (guardrail_blocked, budget_exceeded, ...) rides along.
                let (_, code) = self.openai_type_and_code();
                body["error"]["code"] = serde_json::Value::String(code);
                body
            }
        }
    }

    /// Headers to attach (`Retry-After`, `x-ratelimit-*`).
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let retry_after = match self {
            Self::RateLimited { retry_after_secs, headers: extra, .. } => {
                extra.apply(&mut headers);
                Some(*retry_after_secs)
            }
            Self::Unavailable { retry_after_secs, .. } => *retry_after_secs,
            _ => None,
        };
        if let Some(secs) = retry_after {
            headers.insert("retry-after", HeaderValue::from(secs.max(1)));
        }
        headers
    }

    /// The full response in `format`.
    pub fn into_response_for(self, format: ApiFormat) -> Response {
        let status = self.status();
        let headers = self.headers();
        let mut response = (status, axum::Json(self.body(format))).into_response();
        response.headers_mut().extend(headers);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_each_format() {
        let error = ProxyError::ModelNotFound("gpt-9".into());
        let openai = error.body(ApiFormat::OpenAi);
        assert_eq!(openai["error"]["code"], "model_not_found");
        assert_eq!(openai["error"]["param"], "model");
        assert!(openai["error"]["message"].as_str().unwrap().contains("gpt-9"));
        let anthropic = error.body(ApiFormat::Anthropic);
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "not_found_error");
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn rate_limits_carry_retry_after_and_headers() {
        let error = ProxyError::RateLimited {
            message: "slow down".into(),
            code: "rate_limit_exceeded",
            retry_after_secs: 7,
            headers: crate::limits::RateHeaders {
                requests: Some(crate::limits::WindowFigures { limit: 10, remaining: 0, reset_secs: 7 }),
                tokens: None,
            },
        };
        let response = error.into_response_for(ApiFormat::OpenAi);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "10");
        assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
        assert_eq!(response.headers()["x-ratelimit-reset-requests"], "7s");
        assert!(response.headers().get("x-ratelimit-limit-tokens").is_none());
    }
}
