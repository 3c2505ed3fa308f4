//! The OpenAI Responses codec (`/v1/responses`): requests, answers and streams to and from the hub
//! (function tools included), the Responses event stream with its sequence numbers, and the
//! request checks. Error bodies and `/models` are OpenAI's.
//!
//! What the hub (Chat Completions) cannot express is refused with a 400 that names it when a
//! Responses request is translated: built-in tools (`web_search`, `file_search`,
//! `code_interpreter`, `custom`, ...) and input items other than messages, function calls and
//! their outputs (`web_search_call`, `custom_tool_call`, `item_reference`, ...). Reasoning items a
//! client sends back (they carry the model's hidden state, which a chat model has no field for) are
//! left out of a chat request: they are the upstream's business, not the conversation's. A
//! deployment that speaks Responses (`api: responses`) gets every item as it was sent.

mod chunk;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;
pub(crate) mod write;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Codec, RequestFields, StreamTransform, TextEvents, TextKind, TextPointer, Usage};
use crate::error::ProxyError;
use crate::mock::{MockAnswer, MockParams};
use crate::wire::Endpoint;

/// The Responses codec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Responses;

/// The events its clients read as the end of a stream (there is no `[DONE]`).
pub(crate) const TERMINAL_EVENTS: [&str; 3] = ["response.completed", "response.incomplete", "response.failed"];

fn bad(message: impl Into<String>, param: impl Into<String>) -> ProxyError {
    ProxyError::BadRequest { message: message.into(), param: Some(param.into()) }
}

/// A fresh id with `prefix` (`resp`, `msg`, `fc`): unique, as the conversation state needs.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Token counts from a Responses `usage` object (`input_tokens` includes cached ones; reasoning
/// tokens are part of `output_tokens`).
pub(crate) fn usage_of(usage: &Value) -> Option<Usage> {
    let cap = |n: u64| n.min(crate::wire::MAX_REPORTED_TOKENS);
    let input = usage.get("input_tokens")?.as_u64()?;
    let output = usage.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
    Some(Usage { prompt_tokens: cap(input), completion_tokens: cap(output) })
}

/// A Responses `usage` object as an OpenAI chat one, with the cached and reasoning details.
pub(crate) fn usage_to_chat(usage: &Value) -> Value {
    let get = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (get("/input_tokens"), get("/output_tokens"));
    json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": input.saturating_add(output),
        "prompt_tokens_details": {"cached_tokens": get("/input_tokens_details/cached_tokens")},
        "completion_tokens_details": {"reasoning_tokens": get("/output_tokens_details/reasoning_tokens")},
    })
}

/// A positive whole number, when present and not null.
fn positive(body: &Value, field: &str) -> Result<Option<u64>, ProxyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64().filter(|n| *n >= 1) {
            Some(n) => Ok(Some(n)),
            None => Err(bad(format!("`{field}` must be a positive integer"), field)),
        },
    }
}

/// A number from 0 to `max`, when present and not null.
fn between(body: &Value, field: &str, max: f64) -> Result<(), ProxyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(value) if value.as_f64().is_some_and(|x| (0.0..=max).contains(&x)) => Ok(()),
        Some(_) => Err(bad(format!("`{field}` must be a number from 0 to {max}"), field)),
    }
}

/// The shape of `input`: a string, or an array of objects each with a string `type` or `role`
/// (a message may leave out `type`); message content a string or typed parts.
fn check_input(body: &Value) -> Result<(), ProxyError> {
    let items = match body.get("input") {
        Some(Value::String(_)) => return Ok(()),
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) if body.get("previous_response_id").is_some_and(Value::is_string) => return Ok(()),
        None | Some(Value::Null) => return Err(bad("`input` is required: a string or an array of items", "input")),
        Some(_) => return Err(bad("`input` must be a string or an array of items", "input")),
    };
    for (i, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            return Err(bad(format!("`input[{i}]` must be an object"), format!("input[{i}]")));
        };
        let kind = object.get("type").and_then(Value::as_str);
        let role = object.get("role");
        if kind.is_none() && role.is_none() {
            return Err(bad(
                format!("`input[{i}].role` is required: an item without a `type` is a message"),
                format!("input[{i}].role"),
            ));
        }
        if kind.is_none_or(|k| k == "message") {
            match role.and_then(Value::as_str) {
                Some("user" | "assistant" | "system" | "developer") => {}
                _ => {
                    return Err(bad(
                        format!("`input[{i}].role` must be one of: user, assistant, system, developer"),
                        format!("input[{i}].role"),
                    ));
                }
            }
            match object.get("content") {
                Some(Value::String(_)) => {}
                Some(Value::Array(parts)) => {
                    if let Some(j) = parts.iter().position(|p| !p.get("type").is_some_and(Value::is_string)) {
                        return Err(bad(
                            format!(
                                "`input[{i}].content[{j}].type` is required: a content part is an object with a string `type`"
                            ),
                            format!("input[{i}].content[{j}].type"),
                        ));
                    }
                }
                _ => {
                    return Err(bad(
                        format!("`input[{i}].content` must be a string or an array of content parts"),
                        format!("input[{i}].content"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Reads and checks the fields of a Responses request the gateway knows.
fn fields(body: &Value) -> Result<RequestFields, ProxyError> {
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        Some(_) => return Err(bad("`model` must be a non-empty string", "model")),
        None => return Err(bad("`model` is required", "model")),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(bad("`stream` must be a boolean", "stream")),
    };
    let max_output_tokens = positive(body, "max_output_tokens")?;
    // `max_tokens` is no Responses field, but a client that sends it means a limit: checked alike.
    let max_tokens = positive(body, "max_tokens")?;
    between(body, "temperature", 2.0)?;
    between(body, "top_p", 1.0)?;
    check_input(body)?;
    for field in ["instructions", "previous_response_id"] {
        if body.get(field).is_some_and(|v| !v.is_null() && !v.is_string()) {
            return Err(bad(format!("`{field}` must be a string"), field));
        }
    }
    if body.get("tools").is_some_and(|v| !v.is_null() && !v.is_array()) {
        return Err(bad("`tools` must be an array", "tools"));
    }
    if body.get("store").is_some_and(|v| !v.is_null() && !v.is_boolean()) {
        return Err(bad("`store` must be a boolean", "store"));
    }
    Ok(RequestFields { model, stream, include_usage: true, max_output_tokens: max_output_tokens.or(max_tokens) })
}

/// Text of a Responses content value (a string, or the text of its parts, joined).
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

impl Codec for Responses {
    fn request_fields(&self, _endpoint: Endpoint, body: &Value) -> Result<RequestFields, ProxyError> {
        // One endpoint: `/v1/responses`.
        fields(body)
    }

    fn prompt_pointers(&self, body: &Value) -> Vec<TextPointer> {
        let mut pointers = Vec::new();
        let mut push = |pointer: String, role: &str, kind: TextKind| {
            pointers.push(TextPointer { pointer, role: role.to_owned(), kind });
        };
        if body.get("instructions").is_some_and(Value::is_string) {
            push("/instructions".to_owned(), "system", TextKind::Text);
        }
        match body.get("input") {
            Some(Value::String(_)) => push("/input".to_owned(), "user", TextKind::Text),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.get("type").and_then(Value::as_str) {
                        None | Some("message") => {
                            let role = match item.get("role").and_then(Value::as_str) {
                                Some("developer") => "system",
                                Some(role) => role,
                                None => "user",
                            };
                            match item.get("content") {
                                Some(Value::String(_)) => push(format!("/input/{i}/content"), role, TextKind::Text),
                                Some(Value::Array(parts)) => {
                                    for (j, part) in parts.iter().enumerate() {
                                        if part.get("text").is_some_and(Value::is_string) {
                                            push(format!("/input/{i}/content/{j}/text"), role, TextKind::Text);
                                        } else if part.get("refusal").is_some_and(Value::is_string) {
                                            push(format!("/input/{i}/content/{j}/refusal"), role, TextKind::Text);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        Some("function_call" | "custom_tool_call") => {
                            let field = if item.get("arguments").is_some() { "arguments" } else { "input" };
                            if item.get(field).is_some_and(Value::is_string) {
                                let kind = if field == "arguments" { TextKind::ToolArguments } else { TextKind::Text };
                                push(format!("/input/{i}/{field}"), "assistant", kind);
                            }
                        }
                        Some("function_call_output" | "custom_tool_call_output") => match item.get("output") {
                            Some(Value::String(_)) => push(format!("/input/{i}/output"), "tool", TextKind::Text),
                            Some(Value::Array(parts)) => {
                                for (j, part) in parts.iter().enumerate() {
                                    if part.get("text").is_some_and(Value::is_string) {
                                        push(format!("/input/{i}/output/{j}/text"), "tool", TextKind::Text);
                                    }
                                }
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        pointers
    }

    fn prompt_document(&self, body: &Value) -> Value {
        let mut document = serde_json::Map::new();
        for field in ["instructions", "input"] {
            if let Some(value) = body.get(field) {
                document.insert(field.to_owned(), value.clone());
            }
        }
        Value::Object(document)
    }

    fn request_to_hub(&self, body: &Value, model: &str) -> Result<Value, ProxyError> {
        request::responses_to_chat(body, model)
    }

    fn request_from_hub(&self, body: &Value, model: &str) -> Result<Value, ProxyError> {
        request::chat_to_responses(body, model)
    }

    fn usage(&self, usage: &Value) -> Usage {
        usage_of(usage).unwrap_or_default()
    }

    fn response_to_hub(&self, answer: &Value) -> Value {
        response::responses_to_chat(answer)
    }

    fn response_from_hub(&self, answer: &Value) -> Value {
        response::chat_to_responses(answer)
    }

    fn response_from_hub_bytes(&self, answer: &[u8]) -> Option<(Bytes, Usage)> {
        response::chat_bytes_to_responses(answer).map(|(bytes, usage)| (Bytes::from(bytes), usage))
    }

    fn answer_pointers(&self, answer: &Value) -> Vec<String> {
        let mut pointers = Vec::new();
        for (i, item) in answer.get("output").and_then(Value::as_array).into_iter().flatten().enumerate() {
            if item.get("type").and_then(Value::as_str) != Some("message") {
                continue;
            }
            for (j, part) in item.get("content").and_then(Value::as_array).into_iter().flatten().enumerate() {
                if part.get("type").and_then(Value::as_str) == Some("output_text") {
                    pointers.push(format!("/output/{i}/content/{j}/text"));
                }
            }
        }
        pointers
    }

    fn tool_argument_pointers(&self, answer: &Value) -> Vec<String> {
        let items = answer.get("output").and_then(Value::as_array);
        items
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, item)| {
                item.get("type").and_then(Value::as_str) == Some("function_call")
                    && item.get("arguments").is_some_and(Value::is_string)
            })
            .map(|(i, _)| format!("/output/{i}/arguments"))
            .collect()
    }

    fn delta_pointer(&self, event: &Value) -> Option<&'static str> {
        (event.get("type").and_then(Value::as_str) == Some("response.output_text.delta")
            && event.get("delta").is_some_and(Value::is_string))
        .then_some("/delta")
    }

    fn generated_text_members(&self) -> &'static [&'static str] {
        // Deltas only: the `.done` events and `response.completed` repeat the text.
        &["\"delta\":"]
    }

    fn passthrough(&self, _include_usage: bool) -> Box<dyn StreamTransform> {
        Box::new(stream::Passthrough::default())
    }

    fn stream_to_hub(&self, model: &str, include_usage: bool) -> Box<dyn StreamTransform> {
        Box::new(stream::ResponsesToChat::new(model, include_usage))
    }

    fn stream_from_hub(&self, model: &str) -> Box<dyn StreamTransform> {
        Box::new(stream::ChatToResponses::new(model))
    }

    fn text_events(&self) -> Box<dyn TextEvents> {
        Box::new(stream::EventReader::default())
    }

    fn ends_stream(&self, event: &[u8]) -> bool {
        TERMINAL_EVENTS.iter().any(|name| {
            event
                .strip_prefix(b"event: ")
                .and_then(|rest| rest.strip_prefix(name.as_bytes()))
                .is_some_and(|rest| rest.starts_with(b"\n"))
        })
    }

    fn error_body(&self, error: &ProxyError) -> Value {
        super::openai::OpenAi.error_body(error)
    }

    fn error_events(&self, error: &ProxyError) -> Vec<Bytes> {
        let message = error.to_string();
        let code = error.code();
        let id = new_id("resp");
        let failed = write::ResponseObject {
            id: &id,
            model: "",
            created_at: crate::wire::unix_now(),
            status: "failed",
            incomplete: None,
            error: Some((code, write::Json::Text(&message))),
            output: &[],
            usage: None,
        };
        let param = error.param();
        vec![
            write::event("error", 0, |data| {
                data.text("code", code).text("message", &message);
                match param {
                    Some(param) => data.text("param", param),
                    None => data.raw("param", b"null"),
                };
            }),
            write::event("response.failed", 1, |data| {
                data.with("response", |out| failed.write(out));
            }),
        ]
    }

    fn model_list(&self, names: &[String]) -> Value {
        super::openai::OpenAi.model_list(names)
    }

    fn mock_answer(&self, body: &Value, params: &MockParams) -> MockAnswer {
        // The hub's mock, over the conversation as the hub sees it (hosted tools left out).
        let hub = request::responses_to_chat_lenient(body);
        super::openai::OpenAi.mock_answer(&hub, params)
    }

    fn mock_body(&self, answer: &MockAnswer, model: &str) -> Value {
        let hub = super::openai::OpenAi.mock_body(answer, model);
        response::chat_to_responses(&hub)
    }

    fn mock_events(&self, answer: &MockAnswer, model: &str, params: &MockParams, _include_usage: bool) -> Vec<Bytes> {
        let hub = super::openai::OpenAi.mock_events(answer, model, params, true);
        let mut parser = crate::sse::SseParser::default();
        let mut transform = stream::ChatToResponses::new(model);
        let mut out = Vec::new();
        for chunk in &hub {
            for event in parser.push(chunk).unwrap_or_default() {
                out.extend(transform.on_event(&event));
            }
        }
        out.extend(transform.finish());
        out
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
