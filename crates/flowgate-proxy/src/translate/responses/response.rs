//! Whole Responses answers to and from hub (OpenAI chat completion) answers.

use serde_json::{Map, Value, json};

use super::{new_id, usage_from_chat, usage_to_chat};
use crate::wire::unix_now;

/// A Responses `response` object with the fields clients read, the request's echoes at their
/// defaults (the hub answer does not carry them).
pub(crate) fn envelope(id: &str, model: &str, status: &str, output: Vec<Value>, usage: Value) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": unix_now(),
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

/// A message output item with one `output_text` part.
pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

/// A function call output item.
pub(crate) fn function_call_item(id: &str, call_id: &Value, name: &Value, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments, "status": status})
}

/// A reasoning output item carrying reasoning text (from a chat model's `reasoning_content`).
pub(crate) fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [], "content": [{"type": "reasoning_text", "text": text}]})
}

/// The status and `incomplete_details` a chat `finish_reason` comes to.
pub(crate) fn status_of(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// OpenAI chat completion → Responses `response` object (a fresh id: the conversation state
/// keys on it).
pub(crate) fn chat_to_responses(answer: &Value) -> Value {
    let choice = answer.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut output = Vec::new();
    if let Some(reasoning) = message.get("reasoning_content").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        output.push(reasoning_item(&new_id("rs"), reasoning));
    }
    if let Some(text) = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        output.push(message_item(&new_id("msg"), text, "completed"));
    }
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        output.push(json!({
            "type": "message", "id": new_id("msg"), "status": "completed", "role": "assistant",
            "content": [{"type": "refusal", "refusal": refusal}],
        }));
    }
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let call_id = call.get("id").unwrap_or(&Value::Null);
        let name = call.pointer("/function/name").unwrap_or(&Value::Null);
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        output.push(function_call_item(&new_id("fc"), call_id, name, arguments, "completed"));
    }
    let (status, incomplete) = status_of(choice.get("finish_reason").and_then(Value::as_str));
    let model = answer.get("model").and_then(Value::as_str).unwrap_or_default();
    let mut response = envelope(&new_id("resp"), model, status, output, usage_from_chat(answer.get("usage")));
    response["incomplete_details"] = incomplete;
    response
}

/// Responses `response` object → OpenAI chat completion. Items the hub has no place for
/// (hosted tools' calls, which the provider ran itself) are left out; the answer's text and its
/// function calls are kept.
pub(crate) fn responses_to_chat(answer: &Value) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in answer.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(piece) = part.get("text").and_then(Value::as_str) {
                        text.push_str(piece);
                    }
                }
            }
            Some("function_call") => calls.push(json!({
                "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": item.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": item.get("arguments").cloned().unwrap_or_else(|| json!("{}")),
                },
            })),
            Some("reasoning") => {
                let parts = item.get("content").or_else(|| item.get("summary")).and_then(Value::as_array);
                for part in parts.into_iter().flatten() {
                    if let Some(piece) = part.get("text").and_then(Value::as_str) {
                        reasoning.push_str(piece);
                    }
                }
            }
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let empty = text.is_empty() && !calls.is_empty();
    message.insert("content".into(), if empty { Value::Null } else { Value::String(text) });
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let finish = if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
        "tool_calls"
    } else {
        match answer.pointer("/incomplete_details/reason").and_then(Value::as_str) {
            Some("max_output_tokens") => "length",
            Some("content_filter") => "content_filter",
            _ => "stop",
        }
    };
    let id = answer.get("id").and_then(Value::as_str).unwrap_or("resp");
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": answer.get("created_at").cloned().unwrap_or_else(|| json!(unix_now())),
        "model": answer.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": usage_to_chat(answer.get("usage").unwrap_or(&Value::Null)),
    })
}
