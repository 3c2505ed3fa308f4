//! Request translation: Responses ↔ Chat Completions.
//!
//! Responses → chat: `instructions` becomes the first system message; `input` (a string or a list
//! of items) becomes messages: message items by role (`developer` as `system`, which every
//! OpenAI-compatible server knows), `input_text`/`output_text` parts as text, `input_image` as an
//! `image_url` part, `input_file` as a `file` part; consecutive `function_call` items join one
//! assistant turn's `tool_calls`; `function_call_output` becomes a `tool` message. Function tools
//! are unwrapped into chat's nested shape; `tool_choice`, `parallel_tool_calls`, `temperature`,
//! `top_p`, `user`, `service_tier` carry over; `max_output_tokens` becomes `max_tokens`;
//! `text.format` becomes `response_format`; `reasoning.effort` becomes `reasoning_effort`.
//! `metadata`, `store` and `previous_response_id` are the gateway's (see the conversation state),
//! never the chat upstream's.

use serde_json::{Map, Value, json};

use super::{bad, content_text};
use crate::error::ProxyError;

/// How strict a translation is about what chat cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A 400 naming the item or tool type.
    Strict,
    /// Left out (the mock provider's reading of a request).
    Lenient,
}

/// A chat content part for one Responses content part of message `i`.
fn part(part: &Value, i: usize, j: usize, mode: Mode) -> Result<Option<Value>, ProxyError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    Ok(Some(match kind {
        "input_text" | "output_text" | "text" => {
            json!({"type": "text", "text": part.get("text").unwrap_or(&Value::Null)})
        }
        "refusal" => json!({"type": "text", "text": part.get("refusal").unwrap_or(&Value::Null)}),
        "input_image" => {
            let Some(url) = part.get("image_url").filter(|u| u.is_string()) else {
                if mode == Mode::Lenient {
                    return Ok(None);
                }
                return Err(bad(
                    "an `input_image` given by `file_id` cannot be sent to a chat-completions model: give `image_url`",
                    format!("input[{i}].content[{j}]"),
                ));
            };
            let mut image = Map::new();
            image.insert("url".into(), url.clone());
            if let Some(detail) = part.get("detail").filter(|d| d.is_string()) {
                image.insert("detail".into(), detail.clone());
            }
            json!({"type": "image_url", "image_url": image})
        }
        "input_file" => {
            let mut file = Map::new();
            for field in ["file_data", "file_id", "filename"] {
                if let Some(value) = part.get(field).filter(|v| v.is_string()) {
                    file.insert(field.into(), value.clone());
                }
            }
            json!({"type": "file", "file": file})
        }
        other => {
            if mode == Mode::Lenient {
                return Ok(None);
            }
            return Err(bad(
                format!("content part type `{other}` cannot be sent to a chat-completions model"),
                format!("input[{i}].content[{j}]"),
            ));
        }
    }))
}

/// A message item's content as chat content: a string stays one; parts that are all text become
/// one string (what every OpenAI-compatible server takes), others a list of parts.
fn content(content: &Value, i: usize, mode: Mode) -> Result<Value, ProxyError> {
    let Value::Array(parts) = content else { return Ok(content.clone()) };
    if parts.iter().all(|p| {
        matches!(p.get("type").and_then(Value::as_str), Some("input_text" | "output_text" | "text" | "refusal"))
    }) {
        let text: Vec<&str> =
            parts.iter().filter_map(|p| p.get("text").or_else(|| p.get("refusal")).and_then(Value::as_str)).collect();
        return Ok(Value::String(text.concat()));
    }
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        out.extend(part(p, i, j, mode)?);
    }
    Ok(Value::Array(out))
}

/// A function call output's `output` (a string, or content parts) as a tool message's content.
fn tool_output(output: Option<&Value>) -> Value {
    match output {
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(other @ Value::Array(_)) => Value::String(content_text(other)),
        Some(Value::Null) | None => Value::String(String::new()),
        Some(other) => Value::String(other.to_string()),
    }
}

/// Appends a tool call to the assistant turn at the end of `messages`, or starts one.
fn push_call(messages: &mut Vec<Value>, call: Value) {
    if let Some(last) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some("assistant")
        && let Some(object) = last.as_object_mut()
    {
        let calls = object.entry("tool_calls").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(calls) = calls.as_array_mut() {
            calls.push(call);
            return;
        }
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
}

/// The conversation of a Responses request as chat messages.
fn messages(body: &Value, mode: Mode) -> Result<Vec<Value>, ProxyError> {
    let mut messages = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    let items = match body.get("input") {
        Some(Value::String(text)) => {
            messages.push(json!({"role": "user", "content": text}));
            return Ok(messages);
        }
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    for (i, item) in items.iter().enumerate() {
        match item.get("type").and_then(Value::as_str) {
            None | Some("message") => {
                let role = match item.get("role").and_then(Value::as_str) {
                    Some("developer") => "system",
                    Some(role) => role,
                    None => "user",
                };
                let content = content(item.get("content").unwrap_or(&Value::Null), i, mode)?;
                messages.push(json!({"role": role, "content": content}));
            }
            Some("function_call") => {
                let arguments = item.get("arguments").and_then(Value::as_str).unwrap_or("{}");
                push_call(
                    &mut messages,
                    json!({
                        "id": item.get("call_id").unwrap_or(&Value::Null),
                        "type": "function",
                        "function": {"name": item.get("name").unwrap_or(&Value::Null), "arguments": arguments},
                    }),
                );
            }
            Some("function_call_output") => messages.push(json!({
                "role": "tool",
                "tool_call_id": item.get("call_id").unwrap_or(&Value::Null),
                "content": tool_output(item.get("output")),
            })),
            // The model's hidden state, which a chat model has no field for.
            Some("reasoning") => {}
            Some(other) => {
                if mode == Mode::Strict {
                    return Err(bad(
                        format!("input item type `{other}` cannot be sent to a chat-completions model"),
                        format!("input[{i}]"),
                    ));
                }
            }
        }
    }
    Ok(messages)
}

/// Tool types the provider runs itself (web search, file search, code interpreter, ...): a chat
/// model cannot run them, so when a Responses request goes to one they are left out of the offer
/// (the model answers without them) and the answer says so in [`DROPPED_TOOLS_HEADER`].
const HOSTED_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "file_search",
    "code_interpreter",
    "computer_use_preview",
    "image_generation",
    "mcp",
    "local_shell",
];

/// The response header that names the hosted tools left out of a request to a chat model.
pub(crate) const DROPPED_TOOLS_HEADER: &str = "x-flowgate-dropped-tools";

/// The hosted tool types a Responses request offers (comma-separated, in order, once each), which
/// a chat-completions upstream cannot run.
pub(crate) fn hosted_tool_types(body: &Value) -> Option<String> {
    let tools = body.get("tools")?.as_array()?;
    let mut kinds: Vec<&str> = Vec::new();
    for kind in tools.iter().filter_map(|t| t.get("type").and_then(Value::as_str)) {
        if HOSTED_TOOLS.contains(&kind) && !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    (!kinds.is_empty()).then(|| kinds.join(","))
}

/// One function tool in chat's shape.
fn function_tool(tool: &Value) -> Value {
    let mut function = Map::new();
    for field in ["name", "description", "parameters", "strict"] {
        if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
            function.insert(field.into(), value.clone());
        }
    }
    json!({"type": "function", "function": function})
}

/// Function tools in chat's shape. A `namespace` group is flattened into its function tools (chat
/// has no groups; calls come back by the function's own name). Hosted tools are left out (see
/// [`HOSTED_TOOLS`]); any other type is refused (strict) or left out.
fn tools(body: &Value, mode: Mode) -> Result<Option<Vec<Value>>, ProxyError> {
    let Some(tools) = body.get("tools").and_then(Value::as_array) else { return Ok(None) };
    let mut out = Vec::with_capacity(tools.len());
    let refuse = |kind: Option<&str>, param: String| {
        bad(
            format!(
                "tool type `{}` cannot be served by a chat-completions model (only `function` tools can)",
                kind.unwrap_or("(none)")
            ),
            param,
        )
    };
    for (i, tool) in tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => out.push(function_tool(tool)),
            Some("namespace") => {
                let inner = tool.get("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                for (j, member) in inner.iter().enumerate() {
                    match member.get("type").and_then(Value::as_str) {
                        Some("function") => out.push(function_tool(member)),
                        other if mode == Mode::Strict => return Err(refuse(other, format!("tools[{i}].tools[{j}]"))),
                        _ => {}
                    }
                }
            }
            Some(kind) if HOSTED_TOOLS.contains(&kind) => {}
            other => {
                if mode == Mode::Strict {
                    return Err(refuse(other, format!("tools[{i}]")));
                }
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `tool_choice` in chat's shape.
fn tool_choice(choice: &Value) -> Result<Value, ProxyError> {
    match choice {
        Value::String(_) => Ok(choice.clone()),
        Value::Object(object) => match object.get("type").and_then(Value::as_str) {
            Some("function") => {
                Ok(json!({"type": "function", "function": {"name": object.get("name").unwrap_or(&Value::Null)}}))
            }
            Some("allowed_tools") => Ok(object.get("mode").cloned().unwrap_or_else(|| json!("auto"))),
            other => Err(bad(
                format!(
                    "tool_choice type `{}` cannot be served by a chat-completions model",
                    other.unwrap_or("(none)")
                ),
                "tool_choice",
            )),
        },
        _ => Err(bad("`tool_choice` must be a string or an object", "tool_choice")),
    }
}

/// `text.format` as chat's `response_format`.
fn response_format(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str)? {
        "json_schema" => {
            let mut schema = Map::new();
            for field in ["name", "schema", "strict", "description"] {
                if let Some(value) = format.get(field).filter(|v| !v.is_null()) {
                    schema.insert(field.into(), value.clone());
                }
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        "json_object" => Some(json!({"type": "json_object"})),
        _ => None,
    }
}

fn translate(body: &Value, upstream_model: &str, mode: Mode) -> Result<Value, ProxyError> {
    let mut out = Map::new();
    out.insert("model".into(), Value::String(upstream_model.to_owned()));
    out.insert("messages".into(), Value::Array(messages(body, mode)?));
    if let Some(tools) = tools(body, mode)? {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
            match tool_choice(choice) {
                Ok(choice) => {
                    out.insert("tool_choice".into(), choice);
                }
                Err(error) if mode == Mode::Strict => return Err(error),
                Err(_) => {}
            }
        }
        if let Some(parallel) = body.get("parallel_tool_calls").filter(|p| p.is_boolean()) {
            out.insert("parallel_tool_calls".into(), parallel.clone());
        }
    }
    if let Some(limit) = body.get("max_output_tokens").or_else(|| body.get("max_tokens")).filter(|v| !v.is_null()) {
        out.insert("max_tokens".into(), limit.clone());
    }
    for field in ["temperature", "top_p", "user", "service_tier", "stream"] {
        if let Some(value) = body.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    if let Some(top) = body.get("top_logprobs").filter(|v| v.is_u64()) {
        out.insert("logprobs".into(), Value::Bool(true));
        out.insert("top_logprobs".into(), top.clone());
    }
    if let Some(format) = body.pointer("/text/format").and_then(response_format) {
        out.insert("response_format".into(), format);
    }
    if let Some(verbosity) = body.pointer("/text/verbosity").filter(|v| v.is_string()) {
        out.insert("verbosity".into(), verbosity.clone());
    }
    if let Some(effort) = body.pointer("/reasoning/effort").filter(|v| v.is_string()) {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    Ok(Value::Object(out))
}

/// Responses request → chat request for `upstream_model`; a 400 names what chat cannot express.
pub(crate) fn responses_to_chat(body: &Value, upstream_model: &str) -> Result<Value, ProxyError> {
    if !body.is_object() {
        return Err(ProxyError::bad_request("request body must be a JSON object"));
    }
    translate(body, upstream_model, Mode::Strict)
}

/// Responses request → chat request, leaving out what chat cannot express (the mock provider's
/// reading of a request).
pub(crate) fn responses_to_chat_lenient(body: &Value) -> Value {
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
    translate(body, model, Mode::Lenient).unwrap_or_else(|_| json!({"messages": []}))
}

/// A chat message's content as Responses content parts for `role`.
fn parts_of(content: &Value, role: &str, index: usize) -> Result<Value, ProxyError> {
    let text_type = if role == "assistant" { "output_text" } else { "input_text" };
    match content {
        Value::String(text) => Ok(json!([{"type": text_type, "text": text}])),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": text_type, "text": p.get("text").unwrap_or(&Value::Null)})),
                Some("image_url") => {
                    let mut image = json!({"type": "input_image", "image_url": p.pointer("/image_url/url").unwrap_or(&Value::Null)});
                    if let Some(detail) = p.pointer("/image_url/detail") {
                        image["detail"] = detail.clone();
                    }
                    Ok(image)
                }
                Some("file") => {
                    let mut file = json!({"type": "input_file"});
                    if let Some(fields) = p.get("file").and_then(Value::as_object) {
                        for (name, value) in fields {
                            file[name] = value.clone();
                        }
                    }
                    Ok(file)
                }
                other => Err(bad(
                    format!("content part type {other:?} cannot be sent to a Responses model"),
                    format!("messages[{index}].content"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Ok(Value::Array(Vec::new())),
    }
}

/// Chat request → Responses request for `upstream_model`.
pub(crate) fn chat_to_responses(body: &Value, upstream_model: &str) -> Result<Value, ProxyError> {
    let input = body.as_object().ok_or_else(|| ProxyError::bad_request("request body must be a JSON object"))?;
    let messages = input
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` must be an array", "messages"))?;
    let mut items = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            "tool" | "function" => items.push(json!({
                "type": "function_call_output",
                "call_id": message.get("tool_call_id").unwrap_or(&Value::Null),
                "output": content_text(content),
            })),
            _ => {
                if !content.is_null() && content.as_str() != Some("") {
                    items.push(json!({"type": "message", "role": role, "content": parts_of(content, role, index)?}));
                }
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    items.push(json!({
                        "type": "function_call",
                        "call_id": call.get("id").unwrap_or(&Value::Null),
                        "name": call.pointer("/function/name").unwrap_or(&Value::Null),
                        "arguments": call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}"),
                    }));
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), Value::String(upstream_model.to_owned()));
    out.insert("input".into(), Value::Array(items));
    if let Some(limit) = input.get("max_completion_tokens").or_else(|| input.get("max_tokens")).filter(|v| !v.is_null())
    {
        out.insert("max_output_tokens".into(), limit.clone());
    }
    for field in ["temperature", "top_p", "user", "service_tier", "stream", "parallel_tool_calls", "metadata"] {
        if let Some(value) = input.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), value.clone());
        }
    }
    // The gateway keeps no state for a chat client: the upstream need not either.
    out.insert("store".into(), Value::Bool(false));
    if let Some(tools) = input.get("tools").and_then(Value::as_array) {
        let converted: Vec<Value> = tools
            .iter()
            .filter_map(|tool| tool.get("function"))
            .map(|function| {
                let mut tool = Map::new();
                tool.insert("type".into(), json!("function"));
                if let Some(fields) = function.as_object() {
                    for (name, value) in fields {
                        tool.insert(name.clone(), value.clone());
                    }
                }
                Value::Object(tool)
            })
            .collect();
        if !converted.is_empty() {
            out.insert("tools".into(), Value::Array(converted));
        }
    }
    match input.get("tool_choice") {
        Some(choice @ Value::String(_)) => {
            out.insert("tool_choice".into(), choice.clone());
        }
        Some(Value::Object(choice)) => {
            if let Some(name) = choice.get("function").and_then(|f| f.get("name")) {
                out.insert("tool_choice".into(), json!({"type": "function", "name": name}));
            }
        }
        _ => {}
    }
    match input.get("response_format").and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_schema") => {
            let mut format = json!({"type": "json_schema"});
            if let Some(fields) = body.pointer("/response_format/json_schema").and_then(Value::as_object) {
                for (name, value) in fields {
                    format[name] = value.clone();
                }
            }
            out.insert("text".into(), json!({"format": format}));
        }
        Some("json_object") => {
            out.insert("text".into(), json!({"format": {"type": "json_object"}}));
        }
        _ => {}
    }
    if let Some(effort) = input.get("reasoning_effort").filter(|e| e.is_string()) {
        out.insert("reasoning".into(), json!({"effort": effort}));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn items_become_messages_with_tool_calls_joined() {
        let body = json!({
            "model": "m", "instructions": "be brief",
            "input": [
                {"role": "developer", "content": "rules"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather "}, {"type": "input_text", "text": "twice?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"a\"}"},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"city\":\"b\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
            ],
            "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "w"},
            "parallel_tool_calls": false, "max_output_tokens": 99, "metadata": {"a": "b"}, "store": true,
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low", "summary": "auto"},
        });
        let chat = responses_to_chat(&body, "up").unwrap();
        assert_eq!(chat["model"], "up");
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(messages[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(messages[1], json!({"role": "system", "content": "rules"}));
        assert_eq!(messages[2], json!({"role": "user", "content": "weather twice?"}));
        assert_eq!(messages[3]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(messages[3]["tool_calls"][1]["function"]["arguments"], "{\"city\":\"b\"}");
        assert_eq!(messages[4], json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}));
        assert_eq!(messages[5]["content"], "rain");
        assert_eq!(messages.len(), 6);
        assert_eq!(
            chat["tools"][0],
            json!({"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "strict": true}})
        );
        assert_eq!(chat["tool_choice"], json!({"type": "function", "function": {"name": "w"}}));
        assert_eq!(chat["parallel_tool_calls"], false);
        assert_eq!(chat["max_tokens"], 99);
        assert_eq!(chat["response_format"]["json_schema"]["name"], "s");
        assert_eq!(chat["reasoning_effort"], "low");
        assert!(chat.get("metadata").is_none() && chat.get("store").is_none());
    }

    #[test]
    fn what_chat_cannot_express_is_refused_by_name() {
        let body = json!({"model": "m", "input": "x", "tools": [{"type": "custom", "name": "apply_patch"}]});
        let error = responses_to_chat(&body, "m").unwrap_err();
        assert_eq!(error.param(), Some("tools[0]"));
        assert!(error.to_string().contains("custom"), "{error}");
        let body = json!({"model": "m", "input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "custom", "name": "c"}]}]});
        assert_eq!(responses_to_chat(&body, "m").unwrap_err().param(), Some("tools[0].tools[0]"));
        let body =
            json!({"model": "m", "input": [{"type": "custom_tool_call", "call_id": "c", "name": "p", "input": "x"}]});
        let error = responses_to_chat(&body, "m").unwrap_err();
        assert!(error.to_string().contains("custom_tool_call"), "{error}");
        assert_eq!(error.param(), Some("input[0]"));
        let body = json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "file_search"}});
        assert!(responses_to_chat(&body, "m").unwrap_err().to_string().contains("file_search"));
        // The mock reads past them.
        assert_eq!(
            responses_to_chat_lenient(&json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}))["messages"]
                [0]["content"],
            "x"
        );
    }

    #[test]
    fn namespaces_are_flattened_and_hosted_tools_left_out_and_named() {
        let body = json!({"model": "m", "input": "x", "tools": [
            {"type": "web_search", "external_web_access": false},
            {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
            {"type": "namespace", "name": "agents", "description": "sub-agents", "tools": [
                {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}},
                {"type": "function", "name": "close_agent"}
            ]},
            {"type": "file_search"},
            {"type": "web_search"}
        ]});
        let chat = responses_to_chat(&body, "m").unwrap();
        let names: Vec<&str> =
            chat["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["exec_command", "spawn_agent", "close_agent"]);
        assert_eq!(hosted_tool_types(&body).as_deref(), Some("web_search,file_search"));
        assert_eq!(hosted_tool_types(&json!({"tools": [{"type": "function", "name": "f"}]})), None);
        // Only hosted tools: none is offered at all.
        let only = json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": "auto"});
        let chat = responses_to_chat(&only, "m").unwrap();
        assert!(chat.get("tools").is_none() && chat.get("tool_choice").is_none(), "{chat}");
    }

    #[test]
    fn images_and_files_become_parts() {
        let body = json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "what is it?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "low"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,BBB", "filename": "a.pdf"},
        ]}]});
        let chat = responses_to_chat(&body, "m").unwrap();
        let parts = chat["messages"][0]["content"].as_array().unwrap();
        assert_eq!(
            parts[1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"}})
        );
        assert_eq!(parts[2]["file"]["filename"], "a.pdf");
        let by_id = json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]});
        assert_eq!(responses_to_chat(&by_id, "m").unwrap_err().param(), Some("input[0].content[0]"));
    }

    #[test]
    fn chat_requests_become_responses_requests() {
        let chat = json!({"model": "m", "max_completion_tokens": 5, "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "done"},
        ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "required",
           "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}}});
        let out = chat_to_responses(&chat, "up").unwrap();
        assert_eq!(
            out["input"][0],
            json!({"type": "message", "role": "system", "content": [{"type": "input_text", "text": "sys"}]})
        );
        assert_eq!(out["input"][2]["type"], "function_call");
        assert_eq!(out["input"][3], json!({"type": "function_call_output", "call_id": "c", "output": "done"}));
        assert_eq!(out["tools"][0], json!({"type": "function", "name": "f", "parameters": {}}));
        assert_eq!(out["max_output_tokens"], 5);
        assert_eq!(out["text"]["format"]["name"], "s");
        assert_eq!(out["store"], false);
    }
}
