//! Facts about a request that hold in every format: which endpoint was asked, token usage, and
//! the clock used for `created` timestamps. A leaf: it depends on no other module of the crate.

use serde_json::Value;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/v1/chat/completions` or `/anthropic/v1/messages` (chat in either format).
    Chat,
    /// `/v1/completions`.
    Completions,
    /// `/v1/embeddings`.
    Embeddings,
}

/// Token counts, in whichever format they arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt / input tokens (cache reads and writes included).
    pub prompt_tokens: u64,
    /// Completion / output tokens.
    pub completion_tokens: u64,
}

/// The most tokens one figure of an upstream's usage is taken to be. The figures come from the
/// upstream, which may send any number; capped, every sum the gateway makes of them (totals,
/// spend, windows) stays far from overflowing.
pub(crate) const MAX_REPORTED_TOKENS: u64 = u32::MAX as u64;

impl Usage {
    /// From an OpenAI `usage` object.
    pub fn from_openai(usage: &Value) -> Option<Self> {
        let prompt = usage.get("prompt_tokens")?.as_u64()?.min(MAX_REPORTED_TOKENS);
        let completion = usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0).min(MAX_REPORTED_TOKENS);
        Some(Self { prompt_tokens: prompt, completion_tokens: completion })
    }

    /// From an Anthropic `usage` object (missing fields count as zero).
    pub fn from_anthropic(usage: &Value) -> Self {
        let get = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0).min(MAX_REPORTED_TOKENS);
        Self {
            prompt_tokens: get("input_tokens") + get("cache_creation_input_tokens") + get("cache_read_input_tokens"),
            completion_tokens: get("output_tokens"),
        }
    }

    /// As an OpenAI `usage` object.
    pub fn to_openai(self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens.saturating_add(self.completion_tokens),
        })
    }

    /// As an Anthropic `usage` object.
    pub fn to_anthropic(self) -> Value {
        serde_json::json!({"input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens})
    }
}

/// Seconds since the epoch, for OpenAI's `created`.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_upstreams_huge_usage_figures_are_capped() {
        let huge = json!({"input_tokens": u64::MAX, "cache_read_input_tokens": u64::MAX, "output_tokens": u64::MAX});
        let usage = Usage::from_anthropic(&huge);
        assert_eq!(usage.prompt_tokens, 2 * MAX_REPORTED_TOKENS);
        assert_eq!(usage.completion_tokens, MAX_REPORTED_TOKENS);
        let usage = Usage::from_openai(&json!({"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX})).unwrap();
        assert_eq!(usage.prompt_tokens + usage.completion_tokens, 2 * MAX_REPORTED_TOKENS);
        assert_eq!(usage.to_openai()["total_tokens"], 2 * MAX_REPORTED_TOKENS);
    }
}
