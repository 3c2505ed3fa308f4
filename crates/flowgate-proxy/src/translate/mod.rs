//! Translation between the OpenAI Chat Completions and Anthropic Messages formats, in both
//! directions, for requests, JSON responses and streams (tool calls included).
//!
//! Requests and JSON responses are translated as `serde_json::Value` so fields this module does not
//! know stay intact where a mapping exists. Streams are translated event by event with only the
//! state a format needs (open content block, tool-call index map, usage), never buffered.

pub mod request;
pub mod response;
pub mod stream;

use serde_json::Value;

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

/// Anthropic `tool_use` content blocks as OpenAI `tool_calls` (arguments as JSON text).
pub fn tool_calls_from_blocks(blocks: &[Value]) -> Vec<Value> {
    blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(|b| {
            serde_json::json!({
                "id": b.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": b.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": b.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })
        })
        .collect()
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason_from_openai(reason: &str) -> &'static str {
    match reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason_from_anthropic(reason: &str) -> &'static str {
    match reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Seconds since the epoch, for OpenAI's `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
