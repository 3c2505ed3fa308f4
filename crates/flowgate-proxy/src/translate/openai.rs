//! The OpenAI Chat Completions codec (with the legacy completions and embeddings endpoints): the
//! hub format, so its translations to and from the hub are copies.

use bytes::Bytes;
use serde_json::{Value, json};

use super::checks::{Rules, check};
use super::{ApiFormat, Codec, EventRole, RequestFields, StreamTransform, TextEvents, TextPointer, Usage, unix_now};
use crate::error::ProxyError;
use crate::mock::{self, MockAnswer, MockParams};
use crate::sse::{SseEvent, encode};
use crate::wire::Endpoint;

/// The OpenAI codec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenAi;

/// The `[DONE]` sentinel that ends an OpenAI stream.
pub(crate) const DONE: &str = "[DONE]";

/// OpenAI's `error.type` for an error.
fn error_type(error: &ProxyError) -> &'static str {
    match error {
        ProxyError::Unauthorized(_)
        | ProxyError::BadRequest { .. }
        | ProxyError::PayloadTooLarge { .. }
        | ProxyError::ModelNotFound(_)
        | ProxyError::RouteNotFound(_)
        | ProxyError::ResponseNotFound(_)
        | ProxyError::MethodNotAllowed { .. }
        | ProxyError::GuardrailBlocked { .. } => "invalid_request_error",
        ProxyError::Forbidden(_) | ProxyError::ModelUnpriced(_) => "permission_error",
        ProxyError::RateLimited { .. } => "rate_limit_error",
        ProxyError::Upstream { status, .. } => match status {
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        },
        ProxyError::UpstreamTimeout(_)
        | ProxyError::UpstreamAuthFailed { .. }
        | ProxyError::Unavailable { .. }
        | ProxyError::GuardrailUnavailable { .. }
        | ProxyError::StreamFailed { .. } => "api_error",
    }
}

/// The fields an OpenAI request is checked for before it is forwarded.
const RULES: Rules = Rules {
    output_limits: &["max_tokens", "max_completion_tokens"],
    output_required: false,
    counts: &["n", "best_of"],
    temperature_max: 2.0,
    roles: &["system", "developer", "user", "assistant", "tool", "function"],
    content_optional: &["assistant"],
    content_fields: &[],
};

impl Codec for OpenAi {
    fn request_fields(&self, endpoint: Endpoint, body: &Value) -> Result<RequestFields, ProxyError> {
        let include_usage = body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
        let fields = super::chat_fields(endpoint, body, include_usage, RULES.output_limits)?;
        check(endpoint, body, &RULES)?;
        Ok(fields)
    }

    fn prompt_pointers(&self, body: &Value) -> Vec<TextPointer> {
        super::chat_prompt_pointers(body)
    }

    fn prompt_document(&self, body: &Value) -> Value {
        super::chat_prompt_document(body)
    }

    fn request_to_hub(&self, body: &Value, model: &str) -> Result<Value, ProxyError> {
        super::request(ApiFormat::OpenAi, ApiFormat::OpenAi, body, model)
    }

    fn request_from_hub(&self, body: &Value, model: &str) -> Result<Value, ProxyError> {
        super::request(ApiFormat::OpenAi, ApiFormat::OpenAi, body, model)
    }

    fn usage(&self, usage: &Value) -> Usage {
        Usage::from_openai(usage).unwrap_or_default()
    }

    fn response_to_hub(&self, answer: &Value) -> Value {
        answer.clone()
    }

    fn response_from_hub(&self, answer: &Value) -> Value {
        answer.clone()
    }

    fn answer_pointers(&self, answer: &Value) -> Vec<String> {
        answer
            .get("choices")
            .and_then(Value::as_array)
            .map(|choices| {
                (0..choices.len())
                    .flat_map(|i| [format!("/choices/{i}/message/content"), format!("/choices/{i}/text")])
                    .collect()
            })
            .unwrap_or_default()
    }

    fn tool_argument_pointers(&self, answer: &Value) -> Vec<String> {
        let mut pointers = Vec::new();
        for (i, choice) in answer.get("choices").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let calls = choice.pointer("/message/tool_calls").and_then(Value::as_array);
            for (j, call) in calls.into_iter().flatten().enumerate() {
                if call.pointer("/function/arguments").is_some_and(Value::is_string) {
                    pointers.push(format!("/choices/{i}/message/tool_calls/{j}/function/arguments"));
                }
            }
            if choice.pointer("/message/function_call/arguments").is_some_and(Value::is_string) {
                pointers.push(format!("/choices/{i}/message/function_call/arguments"));
            }
        }
        pointers
    }

    fn delta_pointer(&self, event: &Value) -> Option<&'static str> {
        // A chat chunk's text, or a legacy completion chunk's.
        ["/choices/0/delta/content", "/choices/0/text"]
            .into_iter()
            .find(|pointer| event.pointer(pointer).is_some_and(Value::is_string))
    }

    fn generated_text_members(&self) -> &'static [&'static str] {
        &["\"content\":", "\"arguments\":", "\"reasoning_content\":", "\"refusal\":", "\"text\":"]
    }

    fn passthrough(&self, include_usage: bool) -> Box<dyn StreamTransform> {
        Box::new(Passthrough::new(include_usage))
    }

    fn stream_to_hub(&self, _model: &str, include_usage: bool) -> Box<dyn StreamTransform> {
        Box::new(Passthrough::new(include_usage))
    }

    fn stream_from_hub(&self, _model: &str) -> Box<dyn StreamTransform> {
        Box::new(Passthrough::new(true))
    }

    fn text_events(&self) -> Box<dyn TextEvents> {
        Box::new(ChunkReader::default())
    }

    fn ends_stream(&self, event: &[u8]) -> bool {
        event == b"data: [DONE]\n\n"
    }

    fn error_body(&self, error: &ProxyError) -> Value {
        json!({"error": {
            "message": error.to_string(), "type": error_type(error), "param": error.param(), "code": error.code(),
        }})
    }

    fn error_events(&self, error: &ProxyError) -> Vec<Bytes> {
        vec![crate::sse::encode_json(None, &self.error_body(error)), encode(None, DONE)]
    }

    fn model_list(&self, names: &[String]) -> Value {
        let data: Vec<Value> =
            names.iter().map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "flowgate"})).collect();
        json!({"object": "list", "data": data})
    }

    fn mock_answer(&self, body: &Value, params: &MockParams) -> MockAnswer {
        let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let tools: Vec<_> = body
            .get("tools")
            .and_then(Value::as_array)
            .filter(|_| body.get("tool_choice").and_then(Value::as_str) != Some("none"))
            .into_iter()
            .flatten()
            .filter_map(|tool| tool.get("function"))
            .map(|f| (f.get("name"), f.get("parameters")))
            .collect();
        mock::answer(body, messages, &tools, params)
    }

    fn mock_body(&self, answer: &MockAnswer, model: &str) -> Value {
        let mut message = json!({
            "role": "assistant",
            "content": if answer.text.is_empty() { Value::Null } else { json!(answer.text) },
        });
        let finish = if let Some((id, name, arguments)) = &answer.tool_call {
            message["tool_calls"] =
                json!([{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]);
            "tool_calls"
        } else {
            "stop"
        };
        json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": unix_now(),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
            "usage": answer.usage.to_openai(),
        })
    }

    fn mock_events(&self, answer: &MockAnswer, model: &str, params: &MockParams, include_usage: bool) -> Vec<Bytes> {
        let created = unix_now();
        let chunk = |delta: Value, finish: Option<&str>| {
            let chunk = json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
            });
            crate::sse::encode_json(None, &chunk)
        };
        let mut out = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        let finish = if let Some((id, name, arguments)) = &answer.tool_call {
            out.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            for piece in mock::pieces(arguments, params.chunks.or(Some(3))) {
                out.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), None));
            }
            "tool_calls"
        } else {
            for piece in mock::pieces(&answer.text, params.chunks) {
                out.push(chunk(json!({"content": piece}), None));
            }
            "stop"
        };
        out.push(chunk(json!({}), Some(finish)));
        if include_usage {
            let usage = json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": answer.usage.to_openai(),
            });
            out.push(crate::sse::encode_json(None, &usage));
        }
        out.push(encode(None, DONE));
        out
    }
}

/// An OpenAI stream passed to an OpenAI client: events unchanged, except that a usage-only chunk
/// the client did not ask for (`stream_options.include_usage`) is dropped.
#[derive(Debug)]
pub(crate) struct Passthrough {
    forward_usage_chunk: bool,
    usage: Usage,
    completed: bool,
}

impl Passthrough {
    /// `client_wants_usage` is the client's `include_usage`.
    pub(crate) fn new(client_wants_usage: bool) -> Self {
        Self { forward_usage_chunk: client_wants_usage, usage: Usage::default(), completed: false }
    }
}

/// `"usage"`, searched for in every streamed event (built once: a searcher's set-up costs more
/// than the search itself on an event this size).
static USAGE_MEMBER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));

impl StreamTransform for Passthrough {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        let raw = encode(event.event.as_deref(), &event.data);
        if event.data == DONE {
            self.completed = true;
            return vec![raw];
        }
        // Cheap check before parsing: only chunks that mention usage need a look.
        if USAGE_MEMBER.find(event.data.as_bytes()).is_some()
            && let Ok(value) = serde_json::from_str::<Value>(&event.data)
            && let Some(usage) = value.get("usage").and_then(Usage::from_openai)
        {
            self.usage = usage;
            let usage_only = value.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
            if usage_only && !self.forward_usage_chunk {
                return Vec::new();
            }
        }
        vec![raw]
    }

    fn finish(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn completed(&self) -> bool {
        self.completed
    }
}

/// Reads OpenAI chunks for the stream guard. Remembers the last chunk with choices (id, model,
/// created) as the template of a synthetic text chunk.
#[derive(Debug, Default)]
struct ChunkReader {
    template: Option<Value>,
}

impl TextEvents for ChunkReader {
    fn classify(&mut self, event: &SseEvent, value: Option<&Value>) -> EventRole {
        let Some(value) = value else {
            return EventRole { boundary: event.data == DONE, ..EventRole::default() };
        };
        let choices = value.get("choices").and_then(Value::as_array);
        if choices.is_some_and(|c| !c.is_empty()) {
            self.template = Some(value.clone());
        }
        let finishing = value.pointer("/choices/0/finish_reason").is_some_and(|f| !f.is_null())
            || choices.is_some_and(Vec::is_empty);
        let calls = value.pointer("/choices/0/delta/tool_calls").and_then(Value::as_array);
        let tool_arguments = calls
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, call)| call.pointer("/function/arguments").is_some_and(Value::is_string))
            .map(|(j, call)| {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(j as u64);
                (index, format!("/choices/0/delta/tool_calls/{j}/function/arguments"))
            })
            .collect();
        EventRole { text: OpenAi.delta_pointer(value), tool_arguments, boundary: finishing }
    }

    fn text_event(&mut self, text: &str) -> Bytes {
        let mut chunk = self.template.clone().unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
        chunk["choices"] = if chunk.get("object").and_then(Value::as_str) == Some("text_completion") {
            json!([{"index": 0, "text": text, "finish_reason": null, "logprobs": null}])
        } else {
            json!([{"index": 0, "delta": {"content": text}, "finish_reason": null}])
        };
        if let Some(object) = chunk.as_object_mut() {
            object.remove("usage");
        }
        crate::sse::encode_json(None, &chunk)
    }

    fn tool_arguments_event(&mut self, call: u64, json: &str) -> Bytes {
        let mut chunk = self.template.clone().unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
        chunk["choices"] = json!([{"index": 0, "delta": {"tool_calls": [{"index": call, "function": {"arguments": json}}]}, "finish_reason": null}]);
        if let Some(object) = chunk.as_object_mut() {
            object.remove("usage");
        }
        crate::sse::encode_json(None, &chunk)
    }
}

/// One Chat Completions stream chunk with a single choice, as an SSE event: what every stream
/// translated into the hub format writes.
pub(crate) fn chat_chunk(id: &str, created: u64, model: &str, delta: Value, finish_reason: Option<&str>) -> Bytes {
    let chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null}],
    });
    crate::sse::encode_json(None, &chunk)
}
