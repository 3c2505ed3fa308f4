//! Amazon Bedrock's Converse API (`/model/{id}/converse`, `/converse-stream`), an upstream
//! format: requests are translated from the hub (OpenAI Chat Completions) and answers and streams
//! back to it, at the upstream edge (`upstream/providers.rs`). The stream's binary framing is decoded by
//! `aws::eventstream`; this module reads the decoded events.
//!
//! What maps to what: `system` messages → `system` blocks; `user` / `assistant` → `messages` with
//! `text`, `image` and `toolUse` blocks; `tool` results → `toolResult` blocks in a user message;
//! `tools` → `toolConfig.tools[].toolSpec`, `tool_choice` → `toolConfig.toolChoice`;
//! `max_tokens`, `temperature`, `top_p`, `stop` → `inferenceConfig`; `top_k` and other model
//! fields → `additionalModelRequestFields`. `stopReason` → `finish_reason` (`guardrail_intervened`
//! and `content_filtered` → `content_filter`), `usage` → `usage` (cache reads and writes counted
//! as prompt).

mod embeddings;
mod stream;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

pub(crate) use self::embeddings::{embeddings_request, embeddings_response};
pub(crate) use self::stream::BedrockToHub;
use crate::error::ProxyError;
use crate::wire::{MAX_REPORTED_TOKENS, Usage, unix_now};

fn bad(message: impl Into<String>, param: &str) -> ProxyError {
    ProxyError::BadRequest { message: message.into(), param: Some(param.to_owned()) }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// A data-URL image as a Converse image block (Converse takes bytes, not URLs).
fn image_block(url: &str, index: usize) -> Result<Value, ProxyError> {
    let (media_type, data) =
        url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")).ok_or_else(|| {
            bad("a Bedrock model takes images as data: URLs (base64)", &format!("messages[{index}].content"))
        })?;
    let format = media_type.strip_prefix("image/").unwrap_or(media_type);
    let format = if format == "jpg" { "jpeg" } else { format };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn content_blocks(content: &Value, index: usize) -> Result<Vec<Value>, ProxyError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"text": text})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"text": part.get("text").and_then(Value::as_str).unwrap_or_default()})),
                Some("image_url") => {
                    let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                    image_block(url, index)
                }
                other => Err(bad(
                    format!("content part type {other:?} cannot be sent to a Bedrock model"),
                    &format!("messages[{index}].content"),
                )),
            })
            .collect(),
        _ => Err(bad("content must be a string or an array of parts", &format!("messages[{index}].content"))),
    }
}

/// A hub request as a Converse request (the model id is in the URL).
pub(crate) fn request_from_hub(body: &Value) -> Result<Value, ProxyError> {
    let input = body.as_object().ok_or_else(|| ProxyError::bad_request("request body must be a JSON object"))?;
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (index, message) in input.get("messages").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = text_of(content);
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
            }
            "assistant" => {
                let mut blocks = content_blocks(content, index)?;
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let input = match call.pointer("/function/arguments") {
                        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
                        Some(Value::String(text)) => serde_json::from_str::<Value>(text).map_err(|_| {
                            bad("tool call arguments must be JSON", &format!("messages[{index}].tool_calls"))
                        })?,
                        Some(value @ Value::Object(_)) => value.clone(),
                        _ => json!({}),
                    };
                    blocks.push(json!({"toolUse": {
                        "toolUseId": call.get("id").cloned().unwrap_or_else(|| json!(format!("tooluse_{index}"))),
                        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        "input": input,
                    }}));
                }
                crate::translate::push_turn(&mut messages, "assistant", "content", blocks);
            }
            "tool" | "function" => {
                let text = text_of(content);
                let result = match serde_json::from_str::<Value>(&text) {
                    Ok(value @ Value::Object(_)) => json!({"json": value}),
                    _ => json!({"text": text}),
                };
                let block = json!({"toolResult": {
                    "toolUseId": message.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content": [result],
                }});
                crate::translate::push_turn(&mut messages, "user", "content", vec![block]);
            }
            _ => crate::translate::push_turn(&mut messages, "user", "content", content_blocks(content, index)?),
        }
    }
    if messages.is_empty() {
        return Err(bad("a Bedrock model needs at least one user or assistant message", "messages"));
    }
    let mut out = Map::new();
    out.insert("messages".to_owned(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".to_owned(), Value::Array(system));
    }
    let mut inference = Map::new();
    for (from, to) in [
        ("max_completion_tokens", "maxTokens"),
        ("max_tokens", "maxTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
    ] {
        if let Some(value) = input.get(from).filter(|v| !v.is_null())
            && !inference.contains_key(to)
        {
            inference.insert(to.to_owned(), value.clone());
        }
    }
    match input.get("stop") {
        Some(Value::String(stop)) => {
            inference.insert("stopSequences".to_owned(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            inference.insert("stopSequences".to_owned(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".to_owned(), Value::Object(inference));
    }
    if let Some(top_k) = input.get("top_k") {
        out.insert("additionalModelRequestFields".to_owned(), json!({"top_k": top_k}));
    }
    let tools: Vec<Value> = input
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tool| tool.get("function"))
        .map(|function| {
            let mut spec = Map::new();
            spec.insert("name".to_owned(), function.get("name").cloned().unwrap_or(Value::Null));
            if let Some(description) = function.get("description") {
                spec.insert("description".to_owned(), description.clone());
            }
            let schema =
                function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".to_owned(), json!({"json": schema}));
            json!({"toolSpec": spec})
        })
        .collect();
    let choice = match input.get("tool_choice") {
        Some(Value::String(mode)) if mode == "none" => None,
        Some(Value::String(mode)) if mode == "required" => Some(json!({"any": {}})),
        Some(Value::Object(_)) => input
            .get("tool_choice")
            .and_then(|c| c.pointer("/function/name"))
            .map(|name| json!({"tool": {"name": name}})),
        _ => Some(json!({"auto": {}})),
    };
    // `tool_choice: none` sends no tools: Converse has no way to offer them and forbid their use.
    if !tools.is_empty()
        && let Some(choice) = choice
    {
        out.insert("toolConfig".to_owned(), json!({"tools": tools, "toolChoice": choice}));
    }
    Ok(Value::Object(out))
}

/// Converse's `stopReason` as OpenAI's `finish_reason`.
pub(crate) fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Token counts from a Converse `usage` object.
pub(crate) fn usage(usage: &Value) -> Usage {
    let get = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0).min(MAX_REPORTED_TOKENS);
    Usage {
        prompt_tokens: get("inputTokens") + get("cacheReadInputTokens") + get("cacheWriteInputTokens"),
        completion_tokens: get("outputTokens"),
    }
}

/// A whole Converse answer as a hub answer.
pub(crate) fn response_to_hub(answer: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in answer.pointer("/output/message/content").and_then(Value::as_array).into_iter().flatten() {
        if let Some(fragment) = block.get("text").and_then(Value::as_str) {
            text.push_str(fragment);
        }
        if let Some(tool) = block.get("toolUse") {
            calls.push(json!({
                "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": tool.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": tool.get("input").cloned().unwrap_or_else(|| json!({})).to_string(),
                },
            }));
        }
    }
    let reason = answer.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reason)}],
        "usage": answer.get("usage").map(usage).unwrap_or_default().to_openai(),
    })
}

/// The HTTP status and code for a Bedrock exception name (`ThrottlingException`, or the stream's
/// `throttlingException`).
pub(crate) fn exception_status(name: &str) -> (u16, &'static str) {
    let name = name.split(':').next().unwrap_or(name).trim();
    match name.to_ascii_lowercase().as_str() {
        "throttlingexception" | "modelnotreadyexception" | "servicequotaexceededexception" => {
            (429, "rate_limit_exceeded")
        }
        "validationexception" => (400, "invalid_request"),
        "accessdeniedexception" | "unrecognizedclientexception" | "invalidsignatureexception" => {
            (403, "upstream_auth_failed")
        }
        "resourcenotfoundexception" => (404, "model_not_found"),
        "modeltimeoutexception" => (408, "upstream_timeout"),
        "serviceunavailableexception" => (503, "upstream_unavailable"),
        "modelstreamerrorexception" | "modelerrorexception" => (424, "upstream_error"),
        _ => (500, "upstream_error"),
    }
}
