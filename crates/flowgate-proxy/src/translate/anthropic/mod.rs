//! The Anthropic Messages codec: requests, answers and streams to and from the hub (tool calls
//! included), Anthropic error bodies and stream framing.

pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

use bytes::Bytes;
use serde_json::{Value, json};

use super::checks::{Rules, check};
use super::{Codec, EventRole, RequestFields, StreamTransform, TextEvents, TextPointer, Usage};
use crate::error::{KeyProblem, ProxyError};
use crate::mock::{self, MockAnswer, MockParams};
use crate::sse::SseEvent;
use crate::wire::Endpoint;

/// The Anthropic codec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anthropic;

/// Anthropic's `error.type` for an error.
fn error_type(error: &ProxyError) -> &'static str {
    match error {
        ProxyError::Unauthorized(_) => "authentication_error",
        ProxyError::Forbidden(_) | ProxyError::ModelUnpriced(_) => "permission_error",
        ProxyError::RateLimited { .. } => "rate_limit_error",
        ProxyError::BadRequest { .. } | ProxyError::PayloadTooLarge { .. } | ProxyError::GuardrailBlocked { .. } => {
            "invalid_request_error"
        }
        ProxyError::ModelNotFound(_) | ProxyError::RouteNotFound(_) | ProxyError::ResponseNotFound(_) => {
            "not_found_error"
        }
        ProxyError::MethodNotAllowed { .. } => "invalid_request_error",
        ProxyError::Upstream { status, .. } => match status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        },
        ProxyError::Unavailable { .. } => "overloaded_error",
        ProxyError::UpstreamTimeout(_)
        | ProxyError::UpstreamAuthFailed { .. }
        | ProxyError::GuardrailUnavailable { .. }
        | ProxyError::StreamFailed { .. } => "api_error",
    }
}

/// The message an Anthropic client reads: its SDKs send the key in `x-api-key`, so a refused key
/// is named that way.
fn message(error: &ProxyError) -> String {
    match error {
        ProxyError::Unauthorized(problem) => match problem {
            KeyProblem::Missing => "x-api-key header is required (or `Authorization: Bearer <key>`)",
            KeyProblem::Invalid => "invalid x-api-key",
            KeyProblem::Revoked => "x-api-key: API key has been revoked",
            KeyProblem::Expired => "x-api-key: API key has expired",
        }
        .to_owned(),
        other => other.to_string(),
    }
}

/// Anthropic `tool_use` content blocks as OpenAI `tool_calls` (arguments as JSON text).
pub(crate) fn tool_calls_from_blocks(blocks: &[Value]) -> Vec<Value> {
    blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(|b| {
            json!({
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
pub(crate) fn stop_reason_from_openai(reason: &str) -> &'static str {
    match reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub(crate) fn finish_reason_from_anthropic(reason: &str) -> &'static str {
    match reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn event(name: &str, data: &Value) -> Bytes {
    crate::sse::encode_json(Some(name), data)
}

/// The fields an Anthropic request is checked for before it is forwarded. `system` turns inside
/// `messages` are accepted (Claude Code sends them); see `request::anthropic_to_openai`.
const RULES: Rules = Rules {
    output_limits: &["max_tokens"],
    output_required: true,
    counts: &[],
    temperature_max: 1.0,
    roles: &["user", "assistant", "system"],
    content_optional: &[],
    content_fields: &["system"],
};

impl Codec for Anthropic {
    fn request_fields(&self, endpoint: Endpoint, body: &Value) -> Result<RequestFields, ProxyError> {
        let fields = super::chat_fields(endpoint, body, false, RULES.output_limits)?;
        check(endpoint, body, &RULES)?;
        Ok(fields)
    }

    fn passthrough_headers(&self) -> &'static [&'static str] {
        &["anthropic-version", "anthropic-beta"]
    }

    fn prompt_pointers(&self, body: &Value) -> Vec<TextPointer> {
        super::chat_prompt_pointers(body)
    }

    fn prompt_document(&self, body: &Value) -> Value {
        super::chat_prompt_document(body)
    }

    fn request_to_hub(&self, body: &Value, model: &str) -> Result<Value, ProxyError> {
        request::anthropic_to_openai(body, model)
    }

    fn request_from_hub(&self, body: &Value, model: &str) -> Result<Value, ProxyError> {
        request::openai_to_anthropic(body, model)
    }

    fn usage(&self, usage: &Value) -> Usage {
        Usage::from_anthropic(usage)
    }

    fn response_to_hub(&self, answer: &Value) -> Value {
        response::anthropic_to_openai(answer)
    }

    fn response_from_hub(&self, answer: &Value) -> Value {
        response::openai_to_anthropic(answer)
    }

    fn answer_pointers(&self, answer: &Value) -> Vec<String> {
        answer
            .get("content")
            .and_then(Value::as_array)
            .map(|blocks| (0..blocks.len()).map(|i| format!("/content/{i}/text")).collect())
            .unwrap_or_default()
    }

    fn tool_argument_pointers(&self, answer: &Value) -> Vec<String> {
        let blocks = answer.get("content").and_then(Value::as_array);
        blocks
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, b)| b.get("type").and_then(Value::as_str) == Some("tool_use") && b.get("input").is_some())
            .map(|(i, _)| format!("/content/{i}/input"))
            .collect()
    }

    fn delta_pointer(&self, event: &Value) -> Option<&'static str> {
        let pointer = "/delta/text";
        (event.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta")
            && event.pointer(pointer).is_some_and(Value::is_string))
        .then_some(pointer)
    }

    fn generated_text_members(&self) -> &'static [&'static str] {
        &["\"text\":", "\"partial_json\":", "\"thinking\":"]
    }

    fn passthrough(&self, _include_usage: bool) -> Box<dyn StreamTransform> {
        Box::new(stream::Passthrough::default())
    }

    fn stream_to_hub(&self, model: &str, include_usage: bool) -> Box<dyn StreamTransform> {
        Box::new(stream::AnthropicToOpenAi::new(model, include_usage))
    }

    fn stream_from_hub(&self, model: &str) -> Box<dyn StreamTransform> {
        Box::new(stream::OpenAiToAnthropic::new(model))
    }

    fn text_events(&self) -> Box<dyn TextEvents> {
        Box::new(BlockReader::default())
    }

    fn ends_stream(&self, event: &[u8]) -> bool {
        event.starts_with(b"event: message_stop\n")
    }

    fn error_body(&self, error: &ProxyError) -> Value {
        // Anthropic has no `code`; ours (guardrail_blocked, budget_exceeded, ...) rides along.
        json!({"type": "error", "error": {"type": error_type(error), "message": message(error), "code": error.code()}})
    }

    fn error_events(&self, error: &ProxyError) -> Vec<Bytes> {
        vec![event("error", &self.error_body(error))]
    }

    fn model_list(&self, names: &[String]) -> Value {
        let data: Vec<Value> = names
            .iter()
            .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"}))
            .collect();
        json!({"data": data, "has_more": false, "first_id": names.first(), "last_id": names.last()})
    }

    fn mock_answer(&self, body: &Value, params: &MockParams) -> MockAnswer {
        let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let tools: Vec<_> = body
            .get("tools")
            .and_then(Value::as_array)
            .filter(|_| body.pointer("/tool_choice/type").and_then(Value::as_str) != Some("none"))
            .into_iter()
            .flatten()
            .map(|t| (t.get("name"), t.get("input_schema")))
            .collect();
        mock::answer(body, messages, &tools, params)
    }

    fn mock_body(&self, answer: &MockAnswer, model: &str) -> Value {
        let (content, stop) = match &answer.tool_call {
            Some((id, name, arguments)) => {
                let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
                (
                    json!([{"type": "tool_use", "id": id.replace("call_", "toolu_"), "name": name, "input": input}]),
                    "tool_use",
                )
            }
            None => (json!([{"type": "text", "text": answer.text}]), "end_turn"),
        };
        json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": answer.usage.to_anthropic(),
        })
    }

    fn mock_events(&self, answer: &MockAnswer, model: &str, params: &MockParams, _include_usage: bool) -> Vec<Bytes> {
        let mut out = vec![event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": answer.usage.prompt_tokens, "output_tokens": 1},
            }}),
        )];
        let stop = if let Some((id, name, arguments)) = &answer.tool_call {
            out.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": id.replace("call_", "toolu_"), "name": name, "input": {}}}),
            ));
            for piece in mock::pieces(arguments, params.chunks.or(Some(3))) {
                out.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
            "tool_use"
        } else {
            out.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for piece in mock::pieces(&answer.text, params.chunks) {
                out.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
            "end_turn"
        };
        out.push(event("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
        out.push(event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": answer.usage.completion_tokens}}),
        ));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        out
    }
}

/// Reads Anthropic events for the stream guard; remembers the open text block, where a synthetic
/// text delta goes, and the open tool-use blocks, whose `input_json_delta`s carry arguments.
#[derive(Debug, Default)]
struct BlockReader {
    text_block: Option<u64>,
    tool_blocks: Vec<u64>,
}

impl TextEvents for BlockReader {
    fn classify(&mut self, event: &SseEvent, value: Option<&Value>) -> EventRole {
        let Some(value) = value else { return EventRole::default() };
        let kind = event.event.as_deref().unwrap_or_default();
        let index = value.get("index").and_then(Value::as_u64);
        if kind == "content_block_start" {
            match value.pointer("/content_block/type").and_then(Value::as_str) {
                Some("text") => self.text_block = index,
                Some("tool_use") => self.tool_blocks.extend(index),
                _ => {}
            }
        }
        let text = if kind == "content_block_delta" { Anthropic.delta_pointer(value) } else { None };
        let mut tool_arguments = Vec::new();
        if kind == "content_block_delta"
            && value.pointer("/delta/type").and_then(Value::as_str) == Some("input_json_delta")
            && value.pointer("/delta/partial_json").is_some_and(Value::is_string)
            && let Some(index) = index
        {
            tool_arguments.push((index, "/delta/partial_json".to_owned()));
        }
        let closes = kind == "content_block_stop"
            && index.is_some_and(|i| Some(i) == self.text_block || self.tool_blocks.contains(&i));
        EventRole { text, tool_arguments, boundary: closes || kind == "message_delta" || kind == "message_stop" }
    }

    fn text_event(&mut self, text: &str) -> Bytes {
        let index = self.text_block.unwrap_or(0);
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        )
    }

    fn tool_arguments_event(&mut self, call: u64, json: &str) -> Bytes {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": call, "delta": {"type": "input_json_delta", "partial_json": json}}),
        )
    }
}
