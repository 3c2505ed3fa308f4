//! Errors of the data plane: one exhaustive match decides each error's status and code; the
//! caller's codec renders the body (OpenAI `{"error":{"message","type","param","code"}}`,
//! Anthropic `{"type":"error","error":{"type","message"}}`, ...).

use axum::http::{HeaderMap, HeaderValue, StatusCode};

use crate::rate_headers::ProviderHeaders;

/// Why a virtual key was refused. Each codec words it for its clients (an Anthropic client is
/// told about `x-api-key`); the `Display` form is OpenAI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyProblem {
    /// No key in `Authorization: Bearer` or `x-api-key`.
    #[error("missing API key: send `Authorization: Bearer <key>` (or `x-api-key: <key>`)")]
    Missing,
    /// Malformed (format or checksum) or unknown.
    #[error("invalid API key")]
    Invalid,
    /// Revoked.
    #[error("API key has been revoked")]
    Revoked,
    /// Past its expiry.
    #[error("API key has expired")]
    Expired,
}

/// Everything that can stop a proxied request. Messages are safe to show to the caller.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No key, a malformed key, or an unknown / revoked / expired one.
    #[error("{0}")]
    Unauthorized(KeyProblem),
    /// The key may not use this model, or the client IP is not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The model has no price, and the key (or its tenant) has a budget that would not see its
    /// cost (`budgets.unpriced: deny`).
    #[error(
        "model `{0}` has no price, so its cost cannot be counted against this key's budget; the operator can set \
         its price (input_cost_per_token / output_cost_per_token) or budgets.unpriced: allow"
    )]
    ModelUnpriced(String),
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
        headers: crate::rate_headers::RateHeaders,
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
        /// The provider's `retry-after` and rate-limit headers (on 429, 503, 529), passed on.
        headers: ProviderHeaders,
    },
    /// The provider refused the deployment's own credentials (its 401 or 403): the operator's
    /// problem, not the caller's. The provider's message is not shown (it may quote the key).
    #[error(
        "the provider rejected the gateway's credentials for model `{model}`; the gateway operator must fix the deployment's API key"
    )]
    UpstreamAuthFailed {
        /// The model name the client asked for.
        model: String,
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
    /// No such route (a path the gateway does not serve).
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// No stored response with this id for the key's tenant (`GET /v1/responses/{id}`).
    #[error("no stored response with id `{0}` (never stored, deleted, expired, or another tenant's)")]
    ResponseNotFound(String),
    /// A known route asked with the wrong method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method asked.
        method: String,
        /// The path asked.
        path: String,
    },
    /// A stream broke after it had started (timeout, bad event, upstream gone): reported in the
    /// stream, never as a status.
    #[error("{message}")]
    StreamFailed {
        /// `stream_timeout`, `bad_upstream_stream`, `upstream_disconnected`.
        code: &'static str,
        /// What happened.
        message: String,
    },
}

impl ProxyError {
    /// A 400 with a message.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest { message: message.into(), param: None }
    }

    /// The HTTP status. One exhaustive match: a new variant must decide its status here.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::ModelUnpriced(_) => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadRequest { .. } | Self::GuardrailBlocked { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ModelNotFound(_) | Self::RouteNotFound(_) | Self::ResponseNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Upstream { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            Self::StreamFailed { .. } | Self::UpstreamAuthFailed { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable { .. } | Self::GuardrailUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The error's code, the same in every format (`error.code` in OpenAI's shape, carried along
    /// in the others), in metrics and in the audit trail.
    pub(crate) fn code(&self) -> &str {
        match self {
            Self::Unauthorized(_) => "invalid_api_key",
            Self::Forbidden(_) => "forbidden",
            Self::ModelUnpriced(_) => "model_unpriced",
            Self::RateLimited { code, .. } | Self::StreamFailed { code, .. } => code,
            Self::BadRequest { .. } => "invalid_request",
            Self::PayloadTooLarge { .. } => "request_too_large",
            Self::ModelNotFound(_) => "model_not_found",
            Self::RouteNotFound(_) => "not_found",
            Self::ResponseNotFound(_) => "response_not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Upstream { code, .. } => code.as_deref().unwrap_or("upstream_error"),
            Self::UpstreamAuthFailed { .. } => "upstream_auth_failed",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::Unavailable { .. } => "upstream_unavailable",
            Self::GuardrailBlocked { .. } => "guardrail_blocked",
            Self::GuardrailUnavailable { .. } => "guardrail_unavailable",
        }
    }

    /// The offending request parameter, when known.
    pub(crate) fn param(&self) -> Option<&str> {
        match self {
            Self::BadRequest { param, .. } => param.as_deref(),
            Self::ModelNotFound(_) | Self::ModelUnpriced(_) => Some("model"),
            _ => None,
        }
    }

    /// Headers to attach (`Retry-After`, `x-ratelimit-*`).
    pub(crate) fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let retry_after = match self {
            Self::RateLimited { retry_after_secs, headers: extra, .. } => {
                extra.apply(&mut headers);
                Some(*retry_after_secs)
            }
            Self::Unavailable { retry_after_secs, .. } => *retry_after_secs,
            Self::Upstream { headers: provider, .. } => {
                // The provider's own `retry-after` and rate-limit figures, as it sent them.
                provider.apply(&mut headers);
                None
            }
            _ => None,
        };
        if let Some(secs) = retry_after {
            headers.insert("retry-after", HeaderValue::from(secs.max(1)));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::ApiFormat;

    #[test]
    fn shapes_match_each_format() {
        let error = ProxyError::ModelNotFound("gpt-9".into());
        let openai = ApiFormat::OpenAi.codec().error_body(&error);
        assert_eq!(openai["error"]["code"], "model_not_found");
        assert_eq!(openai["error"]["param"], "model");
        assert!(openai["error"]["message"].as_str().unwrap().contains("gpt-9"));
        let anthropic = ApiFormat::Anthropic.codec().error_body(&error);
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "not_found_error");
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_provider_refusing_our_key_is_a_502_in_both_formats() {
        let error = ProxyError::UpstreamAuthFailed { model: "gpt".into() };
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
        let openai = ApiFormat::OpenAi.codec().error_body(&error);
        assert_eq!(openai["error"]["code"], "upstream_auth_failed");
        assert_eq!(openai["error"]["type"], "api_error");
        let anthropic = ApiFormat::Anthropic.codec().error_body(&error);
        assert_eq!(anthropic["error"]["type"], "api_error");
        assert_eq!(anthropic["error"]["code"], "upstream_auth_failed");
    }

    #[test]
    fn a_providers_retry_after_reaches_the_client() {
        let mut upstream = HeaderMap::new();
        upstream.insert("retry-after", HeaderValue::from_static("30"));
        upstream.insert("x-ratelimit-reset-tokens", HeaderValue::from_static("6m0s"));
        let error = ProxyError::Upstream {
            status: 529,
            message: "overloaded".into(),
            code: Some("overloaded_error".into()),
            headers: ProviderHeaders::from_response(529, &upstream),
        };
        for format in [ApiFormat::OpenAi, ApiFormat::Anthropic] {
            let response = format.error_response(error.clone());
            assert_eq!(response.status(), 529);
            assert_eq!(response.headers()["retry-after"], "30");
            assert_eq!(response.headers()["x-ratelimit-reset-tokens"], "6m0s");
        }
    }

    #[test]
    fn rate_limits_carry_retry_after_and_headers() {
        let error = ProxyError::RateLimited {
            message: "slow down".into(),
            code: "rate_limit_exceeded",
            retry_after_secs: 7,
            headers: crate::rate_headers::RateHeaders {
                requests: Some(crate::rate_headers::WindowFigures { limit: 10, remaining: 0, reset_secs: 7 }),
                tokens: None,
            },
        };
        let response = ApiFormat::OpenAi.error_response(error);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "10");
        assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
        assert_eq!(response.headers()["x-ratelimit-reset-requests"], "7s");
        assert!(response.headers().get("x-ratelimit-limit-tokens").is_none());
    }
}
