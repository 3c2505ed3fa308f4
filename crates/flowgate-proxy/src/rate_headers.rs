//! The `x-ratelimit-*` headers of an answer or a 429. A leaf: it depends on no other module of the
//! crate.

/// One window's figures for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowFigures {
    /// The limit.
    pub limit: i64,
    /// What is left of it.
    pub remaining: i64,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

/// The `x-ratelimit-*` headers of an answer: request and token windows, when the key has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    /// `x-ratelimit-{limit,remaining,reset}-requests`.
    pub requests: Option<WindowFigures>,
    /// `x-ratelimit-{limit,remaining,reset}-tokens`.
    pub tokens: Option<WindowFigures>,
}

impl RateHeaders {
    pub(crate) fn window(limit: i64, used: i64, reset_secs: u64) -> Option<WindowFigures> {
        Some(WindowFigures { limit, remaining: (limit - used).max(0), reset_secs })
    }

    /// Writes the headers into `headers`.
    pub(crate) fn apply(&self, headers: &mut axum::http::HeaderMap) {
        use axum::http::HeaderName;
        const REQUESTS: [HeaderName; 3] = [
            HeaderName::from_static("x-ratelimit-limit-requests"),
            HeaderName::from_static("x-ratelimit-remaining-requests"),
            HeaderName::from_static("x-ratelimit-reset-requests"),
        ];
        const TOKENS: [HeaderName; 3] = [
            HeaderName::from_static("x-ratelimit-limit-tokens"),
            HeaderName::from_static("x-ratelimit-remaining-tokens"),
            HeaderName::from_static("x-ratelimit-reset-tokens"),
        ];
        for (figures, [limit, remaining, reset]) in [(self.requests, REQUESTS), (self.tokens, TOKENS)] {
            let Some(figures) = figures else { continue };
            headers.insert(limit, figures.limit.into());
            headers.insert(remaining, figures.remaining.into());
            // OpenAI's format: a duration such as `17s`.
            let mut digits = itoa::Buffer::new();
            let mut text = bytes::BytesMut::with_capacity(21);
            text.extend_from_slice(digits.format(figures.reset_secs).as_bytes());
            text.extend_from_slice(b"s");
            if let Ok(value) = axum::http::HeaderValue::from_maybe_shared(text.freeze()) {
                headers.insert(reset, value);
            }
        }
    }
}

/// A provider's `retry-after` and rate-limit headers on a 429, 503 or 529, passed on to the
/// client as the provider sent them: `retry-after`, `retry-after-ms`, `x-ratelimit-*` (OpenAI)
/// and `anthropic-ratelimit-*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProviderHeaders(Vec<(axum::http::HeaderName, axum::http::HeaderValue)>);

/// Most provider headers kept (a provider sends about a dozen).
const MAX_PROVIDER_HEADERS: usize = 32;

impl ProviderHeaders {
    /// Whether a provider header is one that reaches the client.
    fn passes(name: &str) -> bool {
        name == "retry-after"
            || name == "retry-after-ms"
            || name.starts_with("x-ratelimit-")
            || name.starts_with("anthropic-ratelimit-")
    }

    /// The headers that reach the client, from an upstream answer with `status`; none unless the
    /// status says "come back later" (429, 503, 529).
    pub(crate) fn from_response(status: u16, headers: &axum::http::HeaderMap) -> Self {
        if !matches!(status, 429 | 503 | 529) {
            return Self::default();
        }
        Self(
            headers
                .iter()
                .filter(|(name, _)| Self::passes(name.as_str()))
                .take(MAX_PROVIDER_HEADERS)
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
        )
    }

    /// Writes the headers into `headers` (replacing ones of the same name).
    pub(crate) fn apply(&self, headers: &mut axum::http::HeaderMap) {
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn provider_headers_pass_only_on_come_back_later_statuses() {
        let mut upstream = HeaderMap::new();
        upstream.insert("retry-after", HeaderValue::from_static("12"));
        upstream.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
        upstream.insert("anthropic-ratelimit-tokens-reset", HeaderValue::from_static("2026-01-01T00:00:00Z"));
        upstream.insert("set-cookie", HeaderValue::from_static("provider=1"));
        for status in [429, 503, 529] {
            let mut out = HeaderMap::new();
            ProviderHeaders::from_response(status, &upstream).apply(&mut out);
            assert_eq!(out["retry-after"], "12", "{status}");
            assert_eq!(out["x-ratelimit-remaining-requests"], "0");
            assert_eq!(out["anthropic-ratelimit-tokens-reset"], "2026-01-01T00:00:00Z");
            assert!(out.get("set-cookie").is_none(), "only rate-limit headers pass");
        }
        assert_eq!(ProviderHeaders::from_response(500, &upstream), ProviderHeaders::default());
    }
}
