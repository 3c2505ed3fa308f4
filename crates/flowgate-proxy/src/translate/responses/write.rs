//! Responses objects written straight into JSON bytes: the `response` object, its output items and
//! the stream events that carry them. One definition of each shape, used by whole answers and by
//! streams alike; nothing here builds a `serde_json::Value` (a `Value` the caller already holds is
//! written as it is).

use serde_json::Value;

/// A JSON value to write: text (escaped as a string), a value as it is, or `null`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Json<'a> {
    Text(&'a str),
    Value(&'a Value),
    Null,
}

impl Json<'_> {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Json::Text(text) => string(out, text),
            // Writing a value into a `Vec` cannot fail.
            Json::Value(value) => {
                if serde_json::to_writer(&mut *out, value).is_err() {
                    out.extend_from_slice(b"null");
                }
            }
            Json::Null => out.extend_from_slice(b"null"),
        }
    }
}

/// A JSON string.
pub(crate) fn string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a `Vec` cannot fail.
    if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// A JSON object being written: members in the order they are added. Keys are the gateway's own
/// names (plain ASCII, never escaped).
pub(crate) struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(crate) fn text(&mut self, key: &str, value: &str) -> &mut Self {
        string(self.key(key), value);
        self
    }

    pub(crate) fn json(&mut self, key: &str, value: Json<'_>) -> &mut Self {
        value.write(self.key(key));
        self
    }

    pub(crate) fn number(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key).extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A member whose value is written as it is (`null`, `[]`, `true`, an object already written).
    pub(crate) fn raw(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.key(key).extend_from_slice(value);
        self
    }

    /// A member whose value `write` writes.
    pub(crate) fn with(&mut self, key: &str, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        write(self.key(key));
        self
    }

    pub(crate) fn end(&mut self) {
        self.out.push(b'}');
    }
}

/// An output item of a response.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OutItem<'a> {
    /// An assistant message with one `output_text` part (`None`: no part yet, as in
    /// `response.output_item.added`).
    Message { id: &'a str, text: Option<&'a str>, status: &'a str },
    /// An assistant message refusing to answer.
    Refusal { id: &'a str, refusal: &'a str },
    /// Reasoning text (`None`: no part yet).
    Reasoning { id: &'a str, text: Option<&'a str> },
    /// A function call.
    Call { id: &'a str, call_id: Json<'a>, name: Json<'a>, arguments: &'a str, status: &'a str },
}

/// An `output_text` content part.
pub(crate) fn text_part(out: &mut Vec<u8>, text: &str) {
    Object::new(out)
        .text("type", "output_text")
        .text("text", text)
        .raw("annotations", b"[]")
        .raw("logprobs", b"[]")
        .end();
}

impl OutItem<'_> {
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let mut item = Object::new(out);
        match *self {
            OutItem::Message { id, text, status } => {
                item.text("type", "message").text("id", id).text("status", status).text("role", "assistant");
                item.with("content", |out| match text {
                    Some(text) => {
                        out.push(b'[');
                        text_part(out, text);
                        out.push(b']');
                    }
                    None => out.extend_from_slice(b"[]"),
                });
            }
            OutItem::Refusal { id, refusal } => {
                item.text("type", "message").text("id", id).text("status", "completed").text("role", "assistant");
                item.with("content", |out| {
                    out.push(b'[');
                    Object::new(out).text("type", "refusal").text("refusal", refusal).end();
                    out.push(b']');
                });
            }
            OutItem::Reasoning { id, text } => {
                item.text("type", "reasoning").text("id", id).raw("summary", b"[]");
                item.with("content", |out| match text {
                    Some(text) => {
                        out.push(b'[');
                        Object::new(out).text("type", "reasoning_text").text("text", text).end();
                        out.push(b']');
                    }
                    None => out.extend_from_slice(b"[]"),
                });
            }
            OutItem::Call { id, call_id, name, arguments, status } => {
                item.text("type", "function_call").text("id", id).json("call_id", call_id).json("name", name);
                item.text("arguments", arguments).text("status", status);
            }
        }
        item.end();
    }
}

/// The token counts of a response's `usage`, from a chat answer's (`prompt_tokens`,
/// `completion_tokens` and their cached and reasoning details).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenCounts {
    pub(crate) input: u64,
    pub(crate) cached: u64,
    pub(crate) output: u64,
    pub(crate) reasoning: u64,
}

impl TokenCounts {
    /// The counts of a chat `usage` object (a member that is not a whole number counts 0).
    pub(crate) fn from_chat(usage: Option<&Value>) -> Self {
        let get = |pointer: &str| usage.and_then(|u| u.pointer(pointer)).and_then(Value::as_u64).unwrap_or(0);
        Self {
            input: get("/prompt_tokens"),
            cached: get("/prompt_tokens_details/cached_tokens"),
            output: get("/completion_tokens"),
            reasoning: get("/completion_tokens_details/reasoning_tokens"),
        }
    }

    /// The counts as the gateway accounts them.
    pub(crate) fn usage(&self) -> crate::wire::Usage {
        let cap = |n: u64| n.min(crate::wire::MAX_REPORTED_TOKENS);
        crate::wire::Usage { prompt_tokens: cap(self.input), completion_tokens: cap(self.output) }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut usage = Object::new(out);
        usage.number("input_tokens", self.input);
        usage.with("input_tokens_details", |out| Object::new(out).number("cached_tokens", self.cached).end());
        usage.number("output_tokens", self.output);
        usage.with("output_tokens_details", |out| Object::new(out).number("reasoning_tokens", self.reasoning).end());
        usage.number("total_tokens", self.input.saturating_add(self.output));
        usage.end();
    }
}

/// A Responses `response` object with the fields clients read; the request's echoes at their
/// defaults (a hub answer does not carry them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseObject<'a> {
    pub(crate) id: &'a str,
    pub(crate) model: &'a str,
    pub(crate) created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub(crate) status: &'a str,
    /// `incomplete_details.reason` of an incomplete response.
    pub(crate) incomplete: Option<&'a str>,
    /// `error` of a failed response: its code and message.
    pub(crate) error: Option<(&'a str, Json<'a>)>,
    pub(crate) output: &'a [OutItem<'a>],
    /// `None` while in progress (`usage: null`).
    pub(crate) usage: Option<TokenCounts>,
}

impl ResponseObject<'_> {
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let mut response = Object::new(out);
        response.text("id", self.id).text("object", "response").number("created_at", self.created_at);
        response.text("status", self.status).raw("background", b"false");
        match self.error {
            Some((code, message)) => {
                response.with("error", |out| Object::new(out).text("code", code).json("message", message).end());
            }
            None => {
                response.raw("error", b"null");
            }
        }
        match self.incomplete {
            Some(reason) => response.with("incomplete_details", |out| Object::new(out).text("reason", reason).end()),
            None => response.raw("incomplete_details", b"null"),
        };
        response.raw("instructions", b"null").raw("max_output_tokens", b"null").text("model", self.model);
        response.with("output", |out| {
            out.push(b'[');
            for (i, item) in self.output.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                item.write(out);
            }
            out.push(b']');
        });
        response.raw("parallel_tool_calls", b"true").raw("previous_response_id", b"null");
        response.raw("reasoning", br#"{"effort":null,"summary":null}"#).raw("store", b"false");
        response.raw("temperature", b"null").raw("text", br#"{"format":{"type":"text"}}"#);
        response.text("tool_choice", "auto").raw("tools", b"[]").raw("top_p", b"null");
        response.text("truncation", "disabled");
        match &self.usage {
            Some(usage) => response.with("usage", |out| usage.write(out)),
            None => response.raw("usage", b"null"),
        };
        response.raw("user", b"null").raw("metadata", b"{}");
        response.end();
    }

    /// The object's bytes.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(768 + self.output.len() * 128);
        self.write(&mut out);
        out
    }
}

/// The status and `incomplete_details.reason` a chat `finish_reason` comes to.
pub(crate) fn status_of(finish_reason: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish_reason {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// One server-sent event `event: NAME\ndata: {"type": NAME, <members>, "sequence_number": N}\n\n`,
/// its members written by `members`.
pub(crate) fn event(name: &str, sequence: u64, members: impl FnOnce(&mut Object<'_>)) -> bytes::Bytes {
    let mut out = Vec::with_capacity(2 * name.len() + 160);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let mut data = Object::new(&mut out);
    data.text("type", name);
    members(&mut data);
    data.number("sequence_number", sequence);
    data.end();
    out.extend_from_slice(b"\n\n");
    bytes::Bytes::from(out)
}
