//! Request translation.

use serde_json::{Map, Value, json};

use crate::error::ProxyError;

/// Default `max_tokens` for Anthropic upstreams when an OpenAI client sets none (Anthropic requires
/// one).
pub(crate) const DEFAULT_MAX_TOKENS: u64 = 4096;

fn bad(message: impl Into<String>, param: &str) -> ProxyError {
    ProxyError::BadRequest { message: message.into(), param: Some(param.to_owned()) }
}

/// Text of an OpenAI `content` (string, or parts of which the text ones are joined).
fn openai_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// An OpenAI image part's URL as an Anthropic image source.
fn image_source(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((media_type, data)) = rest.split_once(";base64,")
    {
        return json!({"type": "base64", "media_type": media_type, "data": data});
    }
    json!({"type": "url", "url": url})
}

/// OpenAI user/assistant `content` as Anthropic content blocks.
fn openai_content_to_blocks(content: &Value, index: usize) -> Result<Vec<Value>, ProxyError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or(Value::Null)})),
                Some("image_url") => {
                    let url = part.pointer("/image_url/url").and_then(Value::as_str).ok_or_else(|| {
                        bad("image_url part needs image_url.url", &format!("messages[{index}].content"))
                    })?;
                    Ok(json!({"type": "image", "source": image_source(url)}))
                }
                other => Err(bad(
                    format!("content part type {other:?} cannot be sent to an Anthropic model"),
                    &format!("messages[{index}].content"),
                )),
            })
            .collect(),
        _ => Err(bad("content must be a string or an array of parts", &format!("messages[{index}].content"))),
    }
}

/// OpenAI Chat Completions request → Anthropic Messages request for `upstream_model`.
pub(crate) fn openai_to_anthropic(body: &Value, upstream_model: &str) -> Result<Value, ProxyError> {
    let input = body.as_object().ok_or_else(|| ProxyError::bad_request("request body must be a JSON object"))?;
    let messages_in = input
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` must be an array", "messages"))?;
    if input.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(bad("n > 1 is not supported for Anthropic models", "n"));
    }
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (index, message) in messages_in.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(openai_text(content)),
            "user" => {
                crate::translate::push_turn(&mut messages, "user", "content", openai_content_to_blocks(content, index)?)
            }
            "assistant" => {
                let mut blocks = openai_content_to_blocks(content, index)?;
                if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
                    for call in calls {
                        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                        let input: Value = if arguments.trim().is_empty() {
                            json!({})
                        } else {
                            serde_json::from_str(arguments).map_err(|_| {
                                bad(
                                    "tool call arguments must be a JSON object",
                                    &format!("messages[{index}].tool_calls"),
                                )
                            })?
                        };
                        blocks.push(json!({
                            "type": "tool_use",
                            "id": call.get("id").cloned().unwrap_or(Value::Null),
                            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                            "input": input,
                        }));
                    }
                }
                crate::translate::push_turn(&mut messages, "assistant", "content", blocks);
            }
            "tool" => {
                let id = message.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    bad("tool messages need tool_call_id", &format!("messages[{index}].tool_call_id"))
                })?;
                let block = json!({"type": "tool_result", "tool_use_id": id, "content": openai_text(content)});
                crate::translate::push_turn(&mut messages, "user", "content", vec![block]);
            }
            other => {
                return Err(bad(format!("unsupported message role `{other}`"), &format!("messages[{index}].role")));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(upstream_model.to_owned()));
    out.insert("messages".into(), Value::Array(messages));
    let max_tokens = input
        .get("max_tokens")
        .or_else(|| input.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    if !system.is_empty() {
        out.insert("system".into(), Value::String(system.join("\n\n")));
    }
    for field in ["temperature", "top_p", "top_k", "stream"] {
        if let Some(value) = input.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    match input.get("stop") {
        Some(Value::String(stop)) => {
            out.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) => {
            out.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if let Some(tools) = input.get("tools").and_then(Value::as_array) {
        let converted: Vec<Value> = tools
            .iter()
            .filter_map(|tool| tool.get("function"))
            .map(|function| {
                let mut tool = json!({
                    "name": function.get("name").cloned().unwrap_or(Value::Null),
                    "input_schema": function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                });
                if let Some(description) = function.get("description") {
                    tool["description"] = description.clone();
                }
                tool
            })
            .collect();
        if !converted.is_empty() {
            out.insert("tools".into(), Value::Array(converted));
        }
    }
    let mut tool_choice = match input.get("tool_choice") {
        Some(Value::String(choice)) => match choice.as_str() {
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            _ => Some(json!({"type": "auto"})),
        },
        Some(Value::Object(choice)) => {
            choice.get("function").and_then(|f| f.get("name")).map(|name| json!({"type": "tool", "name": name}))
        }
        _ => None,
    };
    if input.get("parallel_tool_calls") == Some(&Value::Bool(false)) && out.contains_key("tools") {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        choice["disable_parallel_tool_use"] = Value::Bool(true);
    }
    if let Some(choice) = tool_choice
        && out.contains_key("tools")
    {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(user) = input.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(Value::Object(out))
}

/// Text of an Anthropic `content` (string, or text blocks joined).
fn anthropic_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Anthropic Messages request → OpenAI Chat Completions request for `upstream_model`.
pub(crate) fn anthropic_to_openai(body: &Value, upstream_model: &str) -> Result<Value, ProxyError> {
    let input = body.as_object().ok_or_else(|| ProxyError::bad_request("request body must be a JSON object"))?;
    let messages_in = input
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` must be an array", "messages"))?;
    let mut messages = Vec::new();
    if let Some(system) = input.get("system") {
        let text = anthropic_text(system);
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (index, message) in messages_in.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = message.get("content").unwrap_or(&Value::Null);
        match (role, content) {
            // Not in Anthropic's API, but sent by clients such as Claude Code: an OpenAI-format
            // model takes it as the system message it is, where it stands in the conversation.
            ("system", _) => {
                let text = anthropic_text(content);
                if !text.is_empty() {
                    messages.push(json!({"role": "system", "content": text}));
                }
            }
            ("user" | "assistant", Value::String(text)) => messages.push(json!({"role": role, "content": text})),
            ("user", Value::Array(blocks)) => {
                let mut parts = Vec::new();
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("tool_result") => messages.push(json!({
                            "role": "tool",
                            "tool_call_id": block.get("tool_use_id").cloned().unwrap_or(Value::Null),
                            "content": anthropic_text(block.get("content").unwrap_or(&Value::Null)),
                        })),
                        Some("text") => parts
                            .push(json!({"type": "text", "text": block.get("text").cloned().unwrap_or(Value::Null)})),
                        Some("image") => {
                            let source = block.get("source").unwrap_or(&Value::Null);
                            let url = match source.get("type").and_then(Value::as_str) {
                                Some("base64") => format!(
                                    "data:{};base64,{}",
                                    source.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
                                    source.get("data").and_then(Value::as_str).unwrap_or_default()
                                ),
                                _ => source.get("url").and_then(Value::as_str).unwrap_or_default().to_owned(),
                            };
                            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                        }
                        other => {
                            return Err(bad(
                                format!("content block type {other:?} cannot be sent to an OpenAI-format model"),
                                &format!("messages[{index}].content"),
                            ));
                        }
                    }
                }
                if !parts.is_empty() {
                    let all_text = parts.iter().all(|p| p["type"] == "text");
                    let content = if all_text {
                        Value::String(parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"))
                    } else {
                        Value::Array(parts)
                    };
                    messages.push(json!({"role": "user", "content": content}));
                }
            }
            ("assistant", Value::Array(blocks)) => {
                let text = anthropic_text(content);
                let calls = super::tool_calls_from_blocks(blocks);
                let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
                if !calls.is_empty() {
                    message["tool_calls"] = Value::Array(calls);
                }
                messages.push(message);
            }
            _ => return Err(bad(format!("unsupported message role `{role}`"), &format!("messages[{index}].role"))),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(upstream_model.to_owned()));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max_tokens) = input.get("max_tokens") {
        out.insert("max_tokens".into(), max_tokens.clone());
    }
    for field in ["temperature", "top_p"] {
        if let Some(value) = input.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    if let Some(stops) = input.get("stop_sequences") {
        out.insert("stop".into(), stops.clone());
    }
    if input.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = input.get("tools").and_then(Value::as_array) {
        let converted: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| {
                let mut function = json!({
                    "name": t.get("name").cloned().unwrap_or(Value::Null),
                    "parameters": t.get("input_schema").cloned().unwrap_or(Value::Null),
                });
                if let Some(description) = t.get("description") {
                    function["description"] = description.clone();
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        if !converted.is_empty() {
            out.insert("tools".into(), Value::Array(converted));
        }
    }
    if let Some(choice) = input.get("tool_choice") {
        let converted = match choice.get("type").and_then(Value::as_str) {
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => {
                json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
            }
            _ => json!("auto"),
        };
        if out.contains_key("tools") {
            out.insert("tool_choice".into(), converted);
            if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                out.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
    }
    if let Some(user) = body.pointer("/metadata/user_id") {
        out.insert("user".into(), user.clone());
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests;
