//! The Gemini API's wire format (`generateContent`, `streamGenerateContent?alt=sse`,
//! `batchEmbedContents`), an upstream format: requests are translated from the hub (OpenAI Chat
//! Completions) and answers and streams back to it, at the upstream edge (`upstream/providers.rs`). The
//! same format serves Gemini models on Vertex AI.
//!
//! What maps to what:
//! - `system` / `developer` messages → `systemInstruction`; `user` → `user` contents, `assistant`
//!   → `model` contents; `tool` results → `functionResponse` parts (named after the call they
//!   answer); image parts → `inlineData` (data URLs) or `fileData`;
//! - `tools` → `functionDeclarations`, `tool_choice` → `toolConfig.functionCallingConfig`;
//! - sampling parameters → `generationConfig`, `response_format` → `responseMimeType` /
//!   `responseSchema`;
//! - `functionCall` parts → `tool_calls` (arguments as JSON text), `usageMetadata` → `usage`
//!   (thinking tokens counted as output), `finishReason` → `finish_reason`;
//! - a prompt blocked by Gemini's safety filters (`promptFeedback.blockReason`), or an answer
//!   withheld (`finishReason: SAFETY`, ... with no content), is a [`Blocked`] error: the caller gets
//!   a 400 `content_policy_violation` naming the reason, and `content_policy_fallbacks` apply.

mod embeddings;
mod stream;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

pub(crate) use self::embeddings::{
    embeddings_method, embeddings_request, embeddings_response, vertex_embeddings_request, vertex_embeddings_response,
};
pub(crate) use self::stream::GeminiToHub;
use crate::error::ProxyError;
use crate::wire::{MAX_REPORTED_TOKENS, Usage, unix_now};

/// Gemini refused the prompt or withheld the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Blocked(pub(crate) String);

/// Between a tool call's id and the thought signature Gemini attached to the call. Thinking
/// models (Gemini 2.5 and 3) want the signature back with the call in the next turn; clients only
/// keep the id, so it rides there, in URL-safe base64 (`call_0__thought__CiQB...`), and is taken
/// out again when the call comes back.
const THOUGHT_SEPARATOR: &str = "__thought__";

/// A tool call id carrying `signature` (standard base64, as Gemini sends it).
fn id_with_signature(id: &str, signature: &str) -> String {
    let url_safe: String = signature
        .chars()
        .filter(|c| *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    format!("{id}{THOUGHT_SEPARATOR}{url_safe}")
}

/// The thought signature a tool call id carries, as Gemini wants it back (standard base64).
fn signature_of(id: &str) -> Option<String> {
    let (_, url_safe) = id.split_once(THOUGHT_SEPARATOR)?;
    let mut signature: String = url_safe
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    while !signature.len().is_multiple_of(4) {
        signature.push('=');
    }
    Some(signature)
}

/// Finish reasons that mean a safety or policy filter stopped the answer.
const BLOCKING_FINISH: &[&str] =
    &["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"];

fn bad(message: impl Into<String>, param: &str) -> ProxyError {
    ProxyError::BadRequest { message: message.into(), param: Some(param.to_owned()) }
}

/// Text of an OpenAI `content` (a string, or the text parts joined).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// An image URL as a Gemini part: inline data for a data URL, a file reference otherwise.
fn image_part(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((mime_type, data)) = rest.split_once(";base64,")
    {
        return json!({"inlineData": {"mimeType": mime_type, "data": data}});
    }
    let lower = url.to_ascii_lowercase();
    let mime_type =
        [(".png", "image/png"), (".gif", "image/gif"), (".webp", "image/webp"), (".pdf", "application/pdf")]
            .iter()
            .find(|(ext, _)| lower.ends_with(ext))
            .map_or("image/jpeg", |(_, mime)| mime);
    json!({"fileData": {"mimeType": mime_type, "fileUri": url}})
}

/// OpenAI user / assistant `content` as Gemini parts.
fn content_parts(content: &Value, index: usize) -> Result<Vec<Value>, ProxyError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"text": text})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"text": part.get("text").and_then(Value::as_str).unwrap_or_default()})),
                Some("image_url") => part
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .map(image_part)
                    .ok_or_else(|| bad("image_url part needs image_url.url", &format!("messages[{index}].content"))),
                other => Err(bad(
                    format!("content part type {other:?} cannot be sent to a Gemini model"),
                    &format!("messages[{index}].content"),
                )),
            })
            .collect(),
        _ => Err(bad("content must be a string or an array of parts", &format!("messages[{index}].content"))),
    }
}

/// A JSON schema with the members Gemini's `Schema` refuses removed (`$schema`,
/// `additionalProperties`, `strict`), at every depth.
fn schema(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "$schema" | "additionalProperties" | "strict" | "$id"))
                .map(|(k, v)| (k.clone(), schema(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(schema).collect()),
        other => other.clone(),
    }
}

/// A hub (OpenAI Chat Completions) request as a Gemini `generateContent` request. The model is
/// named in the URL, not the body.
pub(crate) fn request_from_hub(body: &Value) -> Result<Value, ProxyError> {
    let input = body.as_object().ok_or_else(|| ProxyError::bad_request("request body must be a JSON object"))?;
    let messages = input.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Tool-call ids → function names, to name each function response.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
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
                let mut parts = content_parts(content, index)?;
                for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
                    let arguments = call.pointer("/function/arguments");
                    let args = match arguments {
                        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
                        Some(Value::String(text)) => serde_json::from_str::<Value>(text).map_err(|_| {
                            bad("tool call arguments must be JSON", &format!("messages[{index}].tool_calls"))
                        })?,
                        Some(value @ Value::Object(_)) => value.clone(),
                        _ => json!({}),
                    };
                    let mut part = json!({"functionCall": {"name": name, "args": args}});
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        call_names.push((id.to_owned(), name.to_owned()));
                        if let Some(signature) = signature_of(id) {
                            part["thoughtSignature"] = Value::String(signature);
                        }
                    }
                    parts.push(part);
                }
                crate::translate::push_turn(&mut contents, "model", "parts", parts);
            }
            "tool" | "function" => {
                let id = message.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let name = message
                    .get("name")
                    .and_then(Value::as_str)
                    .or_else(|| call_names.iter().find(|(known, _)| known == id).map(|(_, name)| name.as_str()))
                    .unwrap_or_default()
                    .to_owned();
                let text = text_of(content);
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(object)) => Value::Object(object),
                    _ => json!({"content": text}),
                };
                crate::translate::push_turn(
                    &mut contents,
                    "user",
                    "parts",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                );
            }
            _ => crate::translate::push_turn(&mut contents, "user", "parts", content_parts(content, index)?),
        }
    }
    if contents.is_empty() {
        return Err(bad("a Gemini model needs at least one user or assistant message", "messages"));
    }
    let mut out = Map::new();
    out.insert("contents".to_owned(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".to_owned(), json!({"parts": system}));
    }
    if let Some(tools) = input.get("tools").and_then(Value::as_array) {
        let declarations: Vec<Value> = tools
            .iter()
            .filter_map(|tool| tool.get("function"))
            .map(|function| {
                let mut declaration = Map::new();
                for field in ["name", "description"] {
                    if let Some(value) = function.get(field) {
                        declaration.insert(field.to_owned(), value.clone());
                    }
                }
                if let Some(parameters) = function.get("parameters") {
                    declaration.insert("parameters".to_owned(), schema(parameters));
                }
                Value::Object(declaration)
            })
            .collect();
        if !declarations.is_empty() {
            out.insert("tools".to_owned(), json!([{"functionDeclarations": declarations}]));
        }
    }
    if let Some(choice) = input.get("tool_choice") {
        let config = match choice {
            Value::String(mode) if mode == "none" => Some(json!({"mode": "NONE"})),
            Value::String(mode) if mode == "required" => Some(json!({"mode": "ANY"})),
            Value::String(_) => Some(json!({"mode": "AUTO"})),
            Value::Object(_) => {
                choice.pointer("/function/name").map(|name| json!({"mode": "ANY", "allowedFunctionNames": [name]}))
            }
            _ => None,
        };
        if let Some(config) = config {
            out.insert("toolConfig".to_owned(), json!({"functionCallingConfig": config}));
        }
    }
    let mut generation = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
        ("max_completion_tokens", "maxOutputTokens"),
        ("max_tokens", "maxOutputTokens"),
    ] {
        if let Some(value) = input.get(from).filter(|v| !v.is_null())
            && !generation.contains_key(to)
        {
            generation.insert(to.to_owned(), value.clone());
        }
    }
    match input.get("stop") {
        Some(Value::String(stop)) => {
            generation.insert("stopSequences".to_owned(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            generation.insert("stopSequences".to_owned(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    match body.pointer("/response_format/type").and_then(Value::as_str) {
        Some("json_object") => {
            generation.insert("responseMimeType".to_owned(), json!("application/json"));
        }
        Some("json_schema") => {
            generation.insert("responseMimeType".to_owned(), json!("application/json"));
            if let Some(shape) = body.pointer("/response_format/json_schema/schema") {
                generation.insert("responseSchema".to_owned(), schema(shape));
            }
        }
        _ => {}
    }
    if !generation.is_empty() {
        out.insert("generationConfig".to_owned(), Value::Object(generation));
    }
    Ok(Value::Object(out))
}

/// Gemini's `finishReason` as OpenAI's `finish_reason`.
pub(crate) fn finish_reason(reason: &str, called_tools: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        r if BLOCKING_FINISH.contains(&r) => "content_filter",
        _ if called_tools => "tool_calls",
        _ => "stop",
    }
}

/// Token counts from `usageMetadata` (thinking tokens are billed as output).
pub(crate) fn usage(metadata: &Value) -> Usage {
    let get = |name: &str| metadata.get(name).and_then(Value::as_u64).unwrap_or(0).min(MAX_REPORTED_TOKENS);
    Usage {
        prompt_tokens: get("promptTokenCount"),
        completion_tokens: get("candidatesTokenCount") + get("thoughtsTokenCount"),
    }
}

/// Why Gemini refused the prompt, if it did (`promptFeedback.blockReason`, no candidates).
pub(crate) fn prompt_blocked(answer: &Value) -> Option<Blocked> {
    let reason = answer.pointer("/promptFeedback/blockReason").and_then(Value::as_str)?;
    let candidates = answer.get("candidates").and_then(Value::as_array).is_some_and(|c| !c.is_empty());
    (!candidates).then(|| {
        let detail = answer
            .pointer("/promptFeedback/blockReasonMessage")
            .and_then(Value::as_str)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        Blocked(format!("Gemini blocked the prompt (blockReason {reason}){detail}"))
    })
}

/// A candidate's parts: its text (thoughts left out) and its function calls as OpenAI tool calls
/// (numbered from `first_call`).
fn candidate_parts(candidate: &Value, first_call: usize) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in candidate.pointer("/content/parts").and_then(Value::as_array).into_iter().flatten() {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(fragment) = part.get("text").and_then(Value::as_str) {
            text.push_str(fragment);
        }
        if let Some(call) = part.get("functionCall") {
            let index = first_call + calls.len();
            let id = call.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{index}"), str::to_owned);
            let id = match part.get("thoughtSignature").and_then(Value::as_str) {
                Some(signature) => id_with_signature(&id, signature),
                None => id,
            };
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": call.get("name").cloned().unwrap_or(Value::Null), "arguments": args.to_string()},
            }));
        }
    }
    (text, calls)
}

/// A whole `generateContent` answer as a hub answer, or why Gemini refused it.
pub(crate) fn response_to_hub(answer: &Value, model: &str) -> Result<Value, Blocked> {
    if let Some(blocked) = prompt_blocked(answer) {
        return Err(blocked);
    }
    let mut choices = Vec::new();
    for (position, candidate) in answer.get("candidates").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let index = candidate.get("index").and_then(Value::as_u64).unwrap_or(position as u64);
        let (text, calls) = candidate_parts(candidate, 0);
        let reason = candidate.get("finishReason").and_then(Value::as_str).unwrap_or("STOP");
        if text.is_empty() && calls.is_empty() && BLOCKING_FINISH.contains(&reason) {
            return Err(Blocked(format!("Gemini withheld the answer (finishReason {reason})")));
        }
        let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls.clone());
        }
        choices.push(json!({
            "index": index,
            "message": message,
            "finish_reason": finish_reason(reason, !calls.is_empty()),
        }));
    }
    let usage = answer.get("usageMetadata").map(usage).unwrap_or_default();
    Ok(json!({
        "id": answer.get("responseId").and_then(Value::as_str).map_or_else(|| format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), |id| format!("chatcmpl-{id}")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": answer.get("modelVersion").and_then(Value::as_str).unwrap_or(model),
        "choices": choices,
        "usage": usage.to_openai(),
    }))
}
