//! Whole Anthropic answers to and from hub (OpenAI chat completion) answers.

use serde_json::{Value, json};

use super::{finish_reason_from_anthropic, stop_reason_from_openai, tool_calls_from_blocks};
use crate::wire::{Usage, unix_now};

/// Anthropic Messages response → OpenAI chat completion.
pub(crate) fn anthropic_to_openai(response: &Value) -> Value {
    let blocks = response.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let thinking: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("thinking"))
        .filter_map(|b| b.get("thinking").and_then(Value::as_str))
        .collect();
    let calls = tool_calls_from_blocks(&blocks);
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    // Extended thinking as OpenAI-compatible servers give reasoning (without the signature).
    if !thinking.is_empty() {
        message["reasoning_content"] = Value::String(thinking);
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish =
        finish_reason_from_anthropic(response.get("stop_reason").and_then(Value::as_str).unwrap_or("end_turn"));
    let usage = Usage::from_anthropic(response.get("usage").unwrap_or(&Value::Null));
    let id = response.get("id").and_then(Value::as_str).unwrap_or("msg");
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": response.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": usage.to_openai(),
    })
}

/// OpenAI chat completion → Anthropic Messages response.
pub(crate) fn openai_to_anthropic(response: &Value) -> Value {
    let choice = response.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str)
        && !text.is_empty()
    {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
            let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
            content.push(json!({
                "type": "tool_use",
                "id": call.get("id").cloned().unwrap_or(Value::Null),
                "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                "input": input,
            }));
        }
    }
    if content.is_empty() {
        content.push(json!({"type": "text", "text": ""}));
    }
    let stop = stop_reason_from_openai(choice.get("finish_reason").and_then(Value::as_str).unwrap_or("stop"));
    let usage = response.get("usage").and_then(Usage::from_openai).unwrap_or_default();
    let id = response.get("id").and_then(Value::as_str).unwrap_or("chatcmpl");
    json!({
        "id": format!("msg_{}", id.trim_start_matches("chatcmpl-")),
        "type": "message",
        "role": "assistant",
        "model": response.get("model").cloned().unwrap_or(Value::Null),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage.to_anthropic(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn anthropic_tool_use_becomes_openai_tool_calls() {
        let out = anthropic_to_openai(&json!({
            "id": "msg_1", "model": "claude", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
            "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 5}
        }));
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(out["usage"], json!({"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18}));
    }

    #[test]
    fn thinking_becomes_reasoning_content() {
        let answer = json!({"id": "m", "model": "c", "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2},
            "content": [{"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "x"}, {"type": "text", "text": "Done."}]});
        let chat = anthropic_to_openai(&answer);
        assert_eq!(chat["choices"][0]["message"]["reasoning_content"], "Let me think.");
        assert_eq!(chat["choices"][0]["message"]["content"], "Done.");
        let plain = json!({"id": "m", "content": [{"type": "text", "text": "Done."}]});
        assert!(anthropic_to_openai(&plain)["choices"][0]["message"].get("reasoning_content").is_none());
    }

    #[test]
    fn openai_text_becomes_anthropic_text() {
        let out = openai_to_anthropic(&json!({
            "id": "chatcmpl-9", "model": "gpt",
            "choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2}
        }));
        assert_eq!(out["id"], "msg_9");
        assert_eq!(out["content"], json!([{"type": "text", "text": "hello"}]));
        assert_eq!(out["stop_reason"], "max_tokens");
        assert_eq!(out["usage"], json!({"input_tokens": 4, "output_tokens": 2}));
    }
}
