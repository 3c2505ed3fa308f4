//! Wire formats. Each format the gateway speaks has one codec ([`Codec`]) that owns everything
//! specific to it: the request fields the pipeline reads, error bodies (JSON and in a stream),
//! stream framing, where the answer's text sits (for guardrails, the cache and stored answers),
//! translation to and from the hub format, and the mock provider's answers. The rest of the proxy
//! asks the codec instead of matching on the format.
//!
//! Translation goes through a hub: OpenAI Chat Completions. A format other than the hub converts
//! its requests, answers and streams to and from the hub; two non-hub formats meet through it.
//! Requests and JSON answers are translated as `serde_json::Value`, so fields a mapping does not
//! know stay intact where one exists; streams are translated event by event with only the state a
//! format needs, never buffered.
//!
//! Adding a format: a new codec module implementing [`Codec`], a variant of [`ApiFormat`] mapped
//! to it in [`ApiFormat::codec`], a route, and its contract tests (see `tests.rs`).

pub(crate) mod anthropic;
pub(crate) mod bedrock;
mod checks;
pub(crate) mod defaults;
pub(crate) mod embeddings;
pub(crate) mod gemini;
pub(crate) mod openai;
pub(crate) mod responses;
mod stream;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde_json::Value;

pub(crate) use self::stream::{Chain, StreamTransform};
use crate::error::ProxyError;
use crate::mock::{MockAnswer, MockParams};
use crate::sse::SseEvent;
pub(crate) use crate::wire::{Endpoint, Usage, unix_now};

/// The API format a client or an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ApiFormat {
    /// OpenAI Chat Completions (and the legacy completions and embeddings endpoints): `/v1/*`,
    /// `/oai/v1/*`, `/cursor/v1/*`. The hub of translation.
    OpenAi,
    /// Anthropic Messages: `/anthropic/v1/*`.
    Anthropic,
    /// OpenAI Responses: `/v1/responses` (and the `/oai/v1`, `/cursor/v1` aliases).
    Responses,
}

impl ApiFormat {
    /// This format's codec.
    pub(crate) fn codec(self) -> &'static dyn Codec {
        match self {
            Self::OpenAi => &openai::OpenAi,
            Self::Anthropic => &anthropic::Anthropic,
            Self::Responses => &responses::Responses,
        }
    }

    /// `error` as a response in this format: its status and headers, and this codec's body.
    pub(crate) fn error_response(self, error: ProxyError) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut response = (error.status(), axum::Json(self.codec().error_body(&error))).into_response();
        response.headers_mut().extend(error.headers());
        response
    }

    /// Whether this is the hub format every other one translates to and from.
    pub(crate) fn is_hub(self) -> bool {
        self == Self::OpenAi
    }
}

/// What the pipeline reads from a client request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestFields {
    /// The requested model (non-empty).
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The client asked for a final usage event in its stream.
    pub include_usage: bool,
    /// The most output tokens the client allows, if it said.
    pub max_output_tokens: Option<u64>,
}

/// What one stream event is to a reader of the answer's text (the stream guard).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct EventRole {
    /// The JSON pointer to the event's text delta, when it carries one.
    pub text: Option<&'static str>,
    /// The fragments of tool-call arguments (JSON text) the event carries: the call each belongs
    /// to (its index in the answer) and the JSON pointer to the fragment.
    pub tool_arguments: Vec<(u64, String)>,
    /// Text held back so far must be released before this event (a text block, a tool call or
    /// the answer ends here).
    pub boundary: bool,
}

/// Follows a stream in one format for the stream guard: says what each event is, and writes
/// synthetic events that carry released text.
pub(crate) trait TextEvents: Send {
    /// The role of one event; `value` is its data parsed as JSON, when it is JSON.
    fn classify(&mut self, event: &SseEvent, value: Option<&Value>) -> EventRole;
    /// An event that carries `text` as a text delta at the current position of the stream.
    fn text_event(&mut self, text: &str) -> Bytes;
    /// An event that carries `json` as a fragment of the arguments of tool call `call`.
    fn tool_arguments_event(&mut self, call: u64, json: &str) -> Bytes;
    /// One event as the guard is about to write it (its deltas already released): a format whose
    /// events repeat a whole text (Responses' `.done` events and final response) puts the
    /// released text there, so that nothing the guardrails rewrote reaches the client unchanged.
    fn rewrite(&mut self, _event: &mut Value) {}
}

/// One text of a request that guardrails check: where it is, who wrote it, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextPointer {
    /// JSON pointer into the request.
    pub pointer: String,
    /// Who wrote it: the message's role (`system`, `user`, `assistant`), or `tool` for a tool
    /// result.
    pub role: String,
    /// Plain text, or tool-call arguments.
    pub kind: TextKind,
}

/// What a checked text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextKind {
    /// A string of text.
    Text,
    /// Tool-call arguments: JSON, as text (a string holding JSON) or as a JSON value.
    ToolArguments,
}

impl TextKind {
    /// The name HTTP guardrails see (`text`, `tool_arguments`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::ToolArguments => "tool_arguments",
        }
    }
}

/// Everything format-specific, for one wire format. See the module documentation.
pub(crate) trait Codec: Send + Sync + std::fmt::Debug {
    // ---- requests

    /// Reads and checks the fields the pipeline needs (model, stream, the conversation).
    fn request_fields(&self, endpoint: Endpoint, body: &Value) -> Result<RequestFields, ProxyError>;

    /// Client headers passed on to an upstream that speaks this format too.
    fn passthrough_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Where the texts of a request are (what guardrails scan and may rewrite), with their roles:
    /// every message's text, tool results, and the arguments of tool calls in earlier turns.
    fn prompt_pointers(&self, body: &Value) -> Vec<TextPointer>;

    /// The prompt part of a request, as the audit trail stores it for tenants that keep prompts.
    fn prompt_document(&self, body: &Value) -> Value;

    /// A request in this format as a hub request for `model`.
    fn request_to_hub(&self, body: &Value, model: &str) -> Result<Value, ProxyError>;

    /// A hub request as a request in this format for `model`.
    fn request_from_hub(&self, body: &Value, model: &str) -> Result<Value, ProxyError>;

    // ---- answers

    /// Token counts from a `usage` object of this format.
    fn usage(&self, usage: &Value) -> Usage;

    /// A whole answer in this format as a hub answer.
    fn response_to_hub(&self, answer: &Value) -> Value;

    /// A whole hub answer in this format.
    fn response_from_hub(&self, answer: &Value) -> Value;

    /// A whole hub answer's bytes in this format, with its usage, for a codec that reads them
    /// through a typed view instead of a `Value`; `None` (the default, or an answer the view
    /// cannot read) leaves it to [`Codec::response_from_hub`].
    fn response_from_hub_bytes(&self, _answer: &[u8]) -> Option<(Bytes, Usage)> {
        None
    }

    /// JSON pointers to the texts of a whole answer (pointers to absent fields resolve to nothing).
    fn answer_pointers(&self, answer: &Value) -> Vec<String>;

    /// JSON pointers to the arguments of the tool calls of a whole answer (a string holding JSON,
    /// or a JSON value).
    fn tool_argument_pointers(&self, answer: &Value) -> Vec<String>;

    /// The pointer to the text delta of one stream event, when it carries one.
    fn delta_pointer(&self, event: &Value) -> Option<&'static str>;

    // ---- streams

    /// A stream of this format passed to a client of this format (usage read on the way).
    fn passthrough(&self, include_usage: bool) -> Box<dyn StreamTransform>;

    /// A stream of this format turned into a hub stream.
    fn stream_to_hub(&self, model: &str, include_usage: bool) -> Box<dyn StreamTransform>;

    /// A hub stream turned into a stream of this format.
    fn stream_from_hub(&self, model: &str) -> Box<dyn StreamTransform>;

    /// A reader of this format's streams for the stream guard.
    fn text_events(&self) -> Box<dyn TextEvents>;

    /// Whether `event`, one event of a stream of this format as the gateway writes it
    /// ([`crate::sse::encode`]), is the one its clients read as the end of the answer (OpenAI
    /// `[DONE]`, Anthropic `message_stop`). Once it has been sent, the stream is complete, even if
    /// the client closes the connection before the upstream's body has ended.
    fn ends_stream(&self, event: &[u8]) -> bool;

    /// The JSON members (as `"name":`) whose string values in this format's stream events are
    /// generated text (text, tool-call arguments, reasoning): what a stream that reports no usage
    /// is charged for (see `pipeline::answer`).
    fn generated_text_members(&self) -> &'static [&'static str];

    // ---- errors and listings

    /// The JSON error body for `error`.
    fn error_body(&self, error: &ProxyError) -> Value;

    /// The events that end a stream with `error`.
    fn error_events(&self, error: &ProxyError) -> Vec<Bytes>;

    /// The `/models` listing of `names`.
    fn model_list(&self, names: &[String]) -> Value;

    // ---- the mock provider

    /// The mock provider's answer to a chat request in this format.
    fn mock_answer(&self, body: &Value, params: &MockParams) -> MockAnswer;

    /// `answer` as a whole answer of this format.
    fn mock_body(&self, answer: &MockAnswer, model: &str) -> Value;

    /// `answer` as the events of a stream of this format (without timing).
    fn mock_events(&self, answer: &MockAnswer, model: &str, params: &MockParams, include_usage: bool) -> Vec<Bytes>;
}

/// A client request in `from` turned into a request in `to` for `upstream_model`. Within one
/// format the body is copied with the model replaced and Flowgate's own fields removed.
pub(crate) fn request(from: ApiFormat, to: ApiFormat, body: &Value, upstream_model: &str) -> Result<Value, ProxyError> {
    if from == to {
        let mut body = body.clone();
        if let Some(object) = body.as_object_mut() {
            object.insert("model".to_owned(), Value::String(upstream_model.to_owned()));
            // Flowgate's own request fields never reach the provider.
            object.remove("guardrails");
        }
        return Ok(body);
    }
    match (from.is_hub(), to.is_hub()) {
        (true, _) => to.codec().request_from_hub(body, upstream_model),
        (_, true) => from.codec().request_to_hub(body, upstream_model),
        _ => to.codec().request_from_hub(&from.codec().request_to_hub(body, upstream_model)?, upstream_model),
    }
}

/// A whole answer in `from` turned into `to`.
pub(crate) fn response(from: ApiFormat, to: ApiFormat, answer: &Value) -> Value {
    match (from == to, from.is_hub(), to.is_hub()) {
        (true, ..) => answer.clone(),
        (_, true, _) => to.codec().response_from_hub(answer),
        (_, _, true) => from.codec().response_to_hub(answer),
        _ => to.codec().response_from_hub(&from.codec().response_to_hub(answer)),
    }
}

/// The transform from an upstream stream in `from` to a client stream in `to`. `model` names the
/// answering model in translated events.
pub(crate) fn stream(from: ApiFormat, to: ApiFormat, model: &str, include_usage: bool) -> Box<dyn StreamTransform> {
    match (from == to, from.is_hub(), to.is_hub()) {
        (true, ..) => to.codec().passthrough(include_usage),
        (_, true, _) => to.codec().stream_from_hub(model),
        (_, _, true) => from.codec().stream_to_hub(model, include_usage),
        _ => Box::new(Chain::new(from.codec().stream_to_hub(model, true), to.codec().stream_from_hub(model))),
    }
}

/// The fields of a chat-shaped request (`model`, `messages`, `stream`), checked; the output limit
/// is the first of `output_fields` that holds a whole number.
pub(crate) fn chat_fields(
    endpoint: Endpoint,
    body: &Value,
    include_usage: bool,
    output_fields: &[&str],
) -> Result<RequestFields, ProxyError> {
    let model = model_field(body)?;
    require_messages(endpoint, body)?;
    let stream = stream_field(endpoint, body)?;
    Ok(RequestFields { model, stream, include_usage, max_output_tokens: first_u64(body, output_fields) })
}

/// The requested model: a non-empty string.
fn model_field(body: &Value) -> Result<String, ProxyError> {
    match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => Ok(model.clone()),
        Some(_) => Err(ProxyError::BadRequest {
            message: "`model` must be a non-empty string".into(),
            param: Some("model".into()),
        }),
        None => Err(ProxyError::BadRequest { message: "`model` is required".into(), param: Some("model".into()) }),
    }
}

/// The `stream` flag: a boolean (absent or null is false); only chat streams.
fn stream_field(endpoint: Endpoint, body: &Value) -> Result<bool, ProxyError> {
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => {
            return Err(ProxyError::BadRequest {
                message: "`stream` must be a boolean".into(),
                param: Some("stream".into()),
            });
        }
    };
    if stream && endpoint == Endpoint::Embeddings {
        return Err(ProxyError::BadRequest {
            message: "embeddings are not streamed".into(),
            param: Some("stream".into()),
        });
    }
    Ok(stream)
}

/// A chat request's `messages`: a non-empty array.
fn require_messages(endpoint: Endpoint, body: &Value) -> Result<(), ProxyError> {
    if endpoint == Endpoint::Chat && body.get("messages").is_none_or(|m| m.as_array().is_none_or(Vec::is_empty)) {
        return Err(ProxyError::BadRequest {
            message: "`messages` must be a non-empty array".into(),
            param: Some("messages".into()),
        });
    }
    Ok(())
}

/// The first of `fields` that holds a whole number.
fn first_u64(body: &Value, fields: &[&str]) -> Option<u64> {
    fields.iter().find_map(|field| body.get(*field).and_then(Value::as_u64))
}

/// The texts of a chat-shaped request body, as JSON pointers with roles: each string content (or
/// text part) of each message; tool results (OpenAI `role: tool` messages, Anthropic
/// `tool_result` blocks, string or text blocks); the arguments of tool calls in earlier assistant
/// turns (OpenAI `tool_calls[].function.arguments` and `function_call.arguments`, Anthropic
/// `tool_use` `input`); `system` first, and `prompt` and `input`. In conversation order.
pub(crate) fn chat_prompt_pointers(body: &Value) -> Vec<TextPointer> {
    let mut pointers = Vec::new();
    let mut push = |pointer: String, role: &str, kind: TextKind| {
        pointers.push(TextPointer { pointer, role: role.to_owned(), kind });
    };
    top_level(body, "system", "system", &mut push);
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for (i, message) in messages.iter().enumerate() {
            let role = match message.get("role").and_then(Value::as_str) {
                Some("function") => "tool",
                Some(role) => role,
                None => "user",
            };
            match message.get("content") {
                Some(Value::String(_)) => push(format!("/messages/{i}/content"), role, TextKind::Text),
                Some(Value::Array(parts)) => {
                    for (j, part) in parts.iter().enumerate() {
                        let part_type = part.get("type").and_then(Value::as_str);
                        let part_role = if part_type == Some("tool_result") { "tool" } else { role };
                        if part.get("text").is_some_and(Value::is_string) {
                            push(format!("/messages/{i}/content/{j}/text"), part_role, TextKind::Text);
                        }
                        if part_type == Some("tool_use") && part.get("input").is_some() {
                            push(format!("/messages/{i}/content/{j}/input"), role, TextKind::ToolArguments);
                        }
                        match part.get("content") {
                            Some(Value::String(_)) => {
                                push(format!("/messages/{i}/content/{j}/content"), "tool", TextKind::Text);
                            }
                            Some(Value::Array(inner)) => {
                                for (k, block) in inner.iter().enumerate() {
                                    if block.get("text").is_some_and(Value::is_string) {
                                        push(
                                            format!("/messages/{i}/content/{j}/content/{k}/text"),
                                            "tool",
                                            TextKind::Text,
                                        );
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
                for (j, call) in calls.iter().enumerate() {
                    if call.pointer("/function/arguments").is_some_and(|a| !a.is_null()) {
                        push(format!("/messages/{i}/tool_calls/{j}/function/arguments"), role, TextKind::ToolArguments);
                    }
                }
            }
            if message.pointer("/function_call/arguments").is_some_and(|a| !a.is_null()) {
                push(format!("/messages/{i}/function_call/arguments"), role, TextKind::ToolArguments);
            }
        }
    }
    for (field, role) in [("prompt", "user"), ("input", "user")] {
        top_level(body, field, role, &mut push);
    }
    pointers
}

/// The texts of a top-level field (`system`, `prompt`, `input`): a string, or an array of strings
/// or of blocks with `text`.
fn top_level(body: &Value, field: &str, role: &str, push: &mut impl FnMut(String, &str, TextKind)) {
    match body.get(field) {
        Some(Value::String(_)) => push(format!("/{field}"), role, TextKind::Text),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if item.is_string() {
                    push(format!("/{field}/{i}"), role, TextKind::Text);
                } else if item.get("text").is_some_and(Value::is_string) {
                    push(format!("/{field}/{i}/text"), role, TextKind::Text);
                }
            }
        }
        _ => {}
    }
}

/// The prompt fields of a chat-shaped request (`system`, `messages`, `prompt`, `input`).
pub(crate) fn chat_prompt_document(body: &Value) -> Value {
    let mut document = serde_json::Map::new();
    for field in ["system", "messages", "prompt", "input"] {
        if let Some(value) = body.get(field) {
            document.insert(field.to_owned(), value.clone());
        }
    }
    Value::Object(document)
}

/// Appends `items` under `key` as a turn of `role` (`{"role": role, key: items}`), merged into the
/// previous turn when the role repeats: the providers that require alternating roles (Anthropic,
/// Bedrock, Gemini) get consecutive turns of one role as one.
pub(crate) fn push_turn(turns: &mut Vec<Value>, role: &str, key: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(existing) = last.get_mut(key).and_then(Value::as_array_mut)
    {
        existing.extend(items);
        return;
    }
    let mut turn = serde_json::Map::new();
    turn.insert("role".to_owned(), Value::String(role.to_owned()));
    turn.insert(key.to_owned(), Value::Array(items));
    turns.push(Value::Object(turn));
}
