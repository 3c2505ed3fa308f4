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
        use axum::http::HeaderValue;
        for (figures, [limit, remaining, reset]) in [
            (
                self.requests,
                ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"],
            ),
            (self.tokens, ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]),
        ] {
            let Some(figures) = figures else { continue };
            headers.insert(limit, HeaderValue::from(figures.limit));
            headers.insert(remaining, HeaderValue::from(figures.remaining));
            // OpenAI's format: a duration such as `17s`.
            if let Ok(value) = HeaderValue::try_from(format!("{}s", figures.reset_secs)) {
                headers.insert(reset, value);
            }
        }
    }
}
