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

impl Usage {
    /// From an OpenAI `usage` object.
    pub fn from_openai(usage: &Value) -> Option<Self> {
        let prompt = usage.get("prompt_tokens")?.as_u64()?;
        let completion = usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
        Some(Self { prompt_tokens: prompt, completion_tokens: completion })
    }

    /// From an Anthropic `usage` object (missing fields count as zero).
    pub fn from_anthropic(usage: &Value) -> Self {
        let get = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
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
            "total_tokens": self.prompt_tokens + self.completion_tokens,
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
