//! Responses streams: to and from hub (OpenAI chunk) streams, passed through, and read for the
//! stream guard.
//!
//! A Responses stream is a sequence of typed events, each with a `sequence_number`, and no
//! `[DONE]`: `response.created`, `response.in_progress`, then for each output item
//! `response.output_item.added`, its deltas (`response.output_text.delta` after
//! `response.content_part.added`, or `response.function_call_arguments.delta`), its `.done`
//! events (which repeat the whole text or arguments) and `response.output_item.done`; last
//! `response.completed` (or `response.incomplete`, `response.failed`) with the whole response.
//! Writing the `.done` events and the final response needs the item's text so far: the translator
//! keeps the answer it has written (as the provider itself sends it again), never the upstream's
//! events.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::{Value, json};

use super::chunk::ChunkParts;
use super::write::{self, Json, OutItem, ResponseObject, TokenCounts, status_of};
use super::{TERMINAL_EVENTS, new_id, usage_of, usage_to_chat};
use crate::sse::{SseEvent, encode};
use crate::translate::{EventRole, StreamTransform, TextEvents};
use crate::wire::{Usage, unix_now};

/// The type of a Responses event: its data's `type`, else its SSE event name.
fn kind<'a>(event: &'a SseEvent, value: &'a Value) -> &'a str {
    value.get("type").and_then(Value::as_str).or(event.event.as_deref()).unwrap_or_default()
}

/// A Responses stream passed to a Responses client unchanged; usage and the end are read on the
/// way (only the terminal events are parsed).
#[derive(Debug, Default)]
pub(crate) struct Passthrough {
    usage: Usage,
    completed: bool,
}

impl StreamTransform for Passthrough {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        let terminal = event.event.as_deref().is_some_and(|name| TERMINAL_EVENTS.contains(&name))
            || (event.event.is_none() && TERMINAL_EVENTS.iter().any(|name| event.data.contains(name)));
        if terminal && let Ok(value) = serde_json::from_str::<Value>(&event.data) {
            if let Some(usage) = value.pointer("/response/usage").and_then(usage_of) {
                self.usage = usage;
            }
            self.completed = TERMINAL_EVENTS.contains(&kind(event, &value));
        }
        vec![encode(event.event.as_deref(), &event.data)]
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

/// One output item being written.
#[derive(Debug)]
enum Item {
    Message { id: String, text: String },
    Reasoning { id: String, text: String },
    Call { id: String, call_id: Value, name: Value, arguments: String },
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Message { id, .. } | Item::Reasoning { id, .. } | Item::Call { id, .. } => id,
        }
    }

    /// The item as an output item with `status`.
    fn out(&self, status: &'static str) -> OutItem<'_> {
        match self {
            Item::Message { id, text } => OutItem::Message { id, text: Some(text), status },
            Item::Reasoning { id, text } => OutItem::Reasoning { id, text: Some(text) },
            Item::Call { id, call_id, name, arguments } => {
                OutItem::Call { id, call_id: Json::Value(call_id), name: Json::Value(name), arguments, status }
            }
        }
    }
}

/// Hub (OpenAI chunk) stream → Responses events.
#[derive(Debug)]
pub(crate) struct ChatToResponses {
    id: String,
    model: String,
    created_at: u64,
    sequence: u64,
    started: bool,
    /// Every output item, in output order; `open` says which are still being written.
    items: Vec<Item>,
    open: Vec<usize>,
    /// The open message and reasoning items, and each chat tool-call index's item.
    message: Option<usize>,
    reasoning: Option<usize>,
    calls: HashMap<u64, usize>,
    finish_reason: Option<String>,
    chat_usage: Option<Value>,
    usage: Usage,
    completed: bool,
    ended: bool,
}

impl ChatToResponses {
    /// A translator reporting `model` until the upstream names its own.
    pub(crate) fn new(model: &str) -> Self {
        Self {
            id: new_id("resp"),
            model: model.to_owned(),
            created_at: unix_now(),
            sequence: 0,
            started: false,
            items: Vec::new(),
            open: Vec::new(),
            message: None,
            reasoning: None,
            calls: HashMap::new(),
            finish_reason: None,
            chat_usage: None,
            usage: Usage::default(),
            completed: false,
            ended: false,
        }
    }

    /// The next event's sequence number.
    fn next(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence - 1
    }

    /// A `*.delta` event (the many events of a stream): `{"type", "item_id", "output_index"[,
    /// "content_index": 0], "delta"[, "logprobs": []], "sequence_number"}`.
    fn delta_event(&mut self, name: &str, item: usize, delta: &str, text_part: bool) -> Bytes {
        let sequence = self.next();
        let id = self.items.get(item).map(Item::id).unwrap_or_default();
        write::event(name, sequence, |data| {
            data.text("item_id", id).number("output_index", item as u64);
            if text_part {
                data.number("content_index", 0);
            }
            data.text("delta", delta);
            if name == "response.output_text.delta" {
                data.raw("logprobs", b"[]");
            }
        })
    }

    /// The response as it stands, written: in progress (no usage), or finished with its items.
    fn response(&self, status: &str, items: &[OutItem<'_>], error: Option<(&str, Json<'_>)>) -> Vec<u8> {
        let (_, incomplete) = status_of(self.finish_reason.as_deref());
        ResponseObject {
            id: &self.id,
            model: &self.model,
            created_at: self.created_at,
            status,
            incomplete: if status == "incomplete" { incomplete } else { None },
            error,
            output: items,
            usage: (status != "in_progress").then(|| TokenCounts::from_chat(self.chat_usage.as_ref())),
        }
        .bytes()
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        // The same response in both events: written once.
        let response = self.response("in_progress", &[], None);
        for name in ["response.created", "response.in_progress"] {
            out.push(self.response_event(name, &response));
        }
    }

    /// `{"type": name, "response": <response>, "sequence_number": n}` as an event, around a
    /// response already written.
    fn response_event(&mut self, name: &str, response: &[u8]) -> Bytes {
        write::event(name, self.next(), |data| {
            data.raw("response", response);
        })
    }

    /// Every item as it stands (`status` completed or incomplete).
    fn out_items(&self, status: &'static str) -> Vec<OutItem<'_>> {
        self.items.iter().map(|item| item.out(status)).collect()
    }

    fn add(&mut self, item: Item, out: &mut Vec<Bytes>) -> usize {
        let index = self.items.len();
        self.items.push(item);
        self.open.push(index);
        let sequence = self.next();
        let Some(item) = self.items.get(index) else { return index };
        // An item is announced without content.
        let added = match item.out("in_progress") {
            OutItem::Message { id, status, .. } => OutItem::Message { id, text: None, status },
            OutItem::Reasoning { id, .. } => OutItem::Reasoning { id, text: None },
            other => other,
        };
        out.push(write::event("response.output_item.added", sequence, |data| {
            data.number("output_index", index as u64).with("item", |out| added.write(out));
        }));
        if let Item::Message { id, .. } = item {
            let id = id.clone();
            out.push(write::event("response.content_part.added", self.next(), |data| {
                data.text("item_id", &id).number("output_index", index as u64).number("content_index", 0);
                data.with("part", |out| write::text_part(out, ""));
            }));
        }
        index
    }

    fn close(&mut self, index: usize, out: &mut Vec<Bytes>) {
        let Some(position) = self.open.iter().position(|open| *open == index) else { return };
        self.open.remove(position);
        if self.message == Some(index) {
            self.message = None;
        }
        if self.reasoning == Some(index) {
            self.reasoning = None;
        }
        let first = self.sequence;
        let Some(item) = self.items.get(index) else { return };
        let at = index as u64;
        let mut sequence = first;
        let mut next = || {
            sequence += 1;
            sequence - 1
        };
        match item {
            Item::Message { id, text } => {
                out.push(write::event("response.output_text.done", next(), |data| {
                    data.text("item_id", id).number("output_index", at).number("content_index", 0);
                    data.text("text", text).raw("logprobs", b"[]");
                }));
                out.push(write::event("response.content_part.done", next(), |data| {
                    data.text("item_id", id).number("output_index", at).number("content_index", 0);
                    data.with("part", |out| write::text_part(out, text));
                }));
            }
            Item::Reasoning { id, text } => {
                out.push(write::event("response.reasoning_text.done", next(), |data| {
                    data.text("item_id", id).number("output_index", at).number("content_index", 0);
                    data.text("text", text);
                }));
            }
            Item::Call { id, name, arguments, .. } => {
                out.push(write::event("response.function_call_arguments.done", next(), |data| {
                    data.text("item_id", id).number("output_index", at).json("name", Json::Value(name));
                    data.text("arguments", arguments);
                }));
            }
        }
        let done = item.out("completed");
        out.push(write::event("response.output_item.done", next(), |data| {
            data.number("output_index", at).with("item", |out| done.write(out));
        }));
        self.sequence = sequence;
    }

    fn close_all(&mut self, out: &mut Vec<Bytes>) {
        while let Some(&index) = self.open.first() {
            self.close(index, out);
        }
    }

    /// The final event: `response.completed`, or `response.incomplete` after a length or
    /// content-filter stop.
    fn end(&mut self, out: &mut Vec<Bytes>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.start(out);
        self.close_all(out);
        let (status, _) = status_of(self.finish_reason.as_deref());
        let response = self.response(status, &self.out_items("completed"), None);
        let name = if status == "completed" { "response.completed" } else { "response.incomplete" };
        out.push(self.response_event(name, &response));
    }

    /// The upstream failed: an `error` event and `response.failed`.
    fn fail(&mut self, code: &str, message: &Value, out: &mut Vec<Bytes>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        self.start(out);
        out.push(write::event("error", self.next(), |data| {
            data.text("code", code).json("message", Json::Value(message)).raw("param", b"null");
        }));
        let response = self.response("failed", &self.out_items("incomplete"), Some((code, Json::Value(message))));
        out.push(self.response_event("response.failed", &response));
    }
}

impl StreamTransform for ChatToResponses {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        let mut out = Vec::new();
        if event.data == "[DONE]" {
            self.completed = true;
            self.end(&mut out);
            return out;
        }
        let Some(chunk) = ChunkParts::read(&event.data) else { return out };
        if self.ended {
            return out;
        }
        if let Some(error) = &chunk.error {
            self.completed = true;
            let code = error.get("code").and_then(Value::as_str).unwrap_or("upstream_error").to_owned();
            self.fail(&code, error.get("message").unwrap_or(&Value::Null), &mut out);
            return out;
        }
        if !self.started
            && let Some(model) = &chunk.model
        {
            model.as_ref().clone_into(&mut self.model);
        }
        self.start(&mut out);
        if let Some(usage) = chunk.usage.filter(Value::is_object) {
            if let Some(seen) = Usage::from_openai(&usage) {
                self.usage = seen;
            }
            self.chat_usage = Some(usage);
        }
        if !chunk.has_choice {
            return out;
        }
        if let Some(text) = chunk.reasoning.as_deref().filter(|t| !t.is_empty()) {
            let index = match self.reasoning {
                Some(index) => index,
                None => {
                    let index = self.add(Item::Reasoning { id: new_id("rs"), text: String::new() }, &mut out);
                    self.reasoning = Some(index);
                    index
                }
            };
            let Some(Item::Reasoning { text: so_far, .. }) = self.items.get_mut(index) else { return out };
            so_far.push_str(text);
            out.push(self.delta_event("response.reasoning_text.delta", index, text, true));
        }
        if let Some(text) = chunk.content.as_deref().filter(|t| !t.is_empty()) {
            if let Some(reasoning) = self.reasoning {
                self.close(reasoning, &mut out);
            }
            let index = match self.message {
                Some(index) => index,
                None => {
                    let index = self.add(Item::Message { id: new_id("msg"), text: String::new() }, &mut out);
                    self.message = Some(index);
                    index
                }
            };
            let Some(Item::Message { text: so_far, .. }) = self.items.get_mut(index) else { return out };
            so_far.push_str(text);
            out.push(self.delta_event("response.output_text.delta", index, text, true));
        }
        for call in chunk.tool_calls.as_ref().and_then(Value::as_array).into_iter().flatten() {
            let chat_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let index = match self.calls.get(&chat_index) {
                Some(index) => *index,
                None => {
                    // Text and reasoning come before the calls in the output.
                    for open in [self.reasoning, self.message].into_iter().flatten() {
                        self.close(open, &mut out);
                    }
                    let call_id = call.get("id").cloned().unwrap_or_else(|| json!(new_id("call")));
                    let name = call.pointer("/function/name").cloned().unwrap_or(Value::Null);
                    let item = Item::Call { id: new_id("fc"), call_id, name, arguments: String::new() };
                    let index = self.add(item, &mut out);
                    self.calls.insert(chat_index, index);
                    index
                }
            };
            if let Some(fragment) =
                call.pointer("/function/arguments").and_then(Value::as_str).filter(|f| !f.is_empty())
            {
                let Some(Item::Call { arguments, .. }) = self.items.get_mut(index) else { continue };
                arguments.push_str(fragment);
                out.push(self.delta_event("response.function_call_arguments.delta", index, fragment, false));
            }
        }
        if let Some(reason) = chunk.finish_reason {
            self.finish_reason = Some(reason.into_owned());
            self.close_all(&mut out);
        }
        out
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.started && !self.ended {
            if self.finish_reason.is_some() {
                // The answer was whole; only the upstream's `[DONE]` is missing.
                self.completed = true;
                self.end(&mut out);
            } else {
                self.fail(
                    "upstream_disconnected",
                    &json!("the upstream's stream ended before the answer did"),
                    &mut out,
                );
            }
        }
        out
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn completed(&self) -> bool {
        self.completed
    }
}

/// Responses events → hub (OpenAI chunk) stream.
#[derive(Debug)]
pub(crate) struct ResponsesToChat {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// Output index → chat tool-call index.
    calls: HashMap<u64, usize>,
    usage: Usage,
    completed: bool,
}

impl ResponsesToChat {
    /// `include_usage`: the client's `stream_options.include_usage`.
    pub(crate) fn new(model: &str, include_usage: bool) -> Self {
        Self {
            id: "chatcmpl-flowgate".to_owned(),
            model: model.to_owned(),
            created: unix_now(),
            include_usage,
            calls: HashMap::new(),
            usage: Usage::default(),
            completed: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        crate::translate::openai::chat_chunk(&self.id, self.created, &self.model, delta, finish_reason)
    }

    fn error(&mut self, error: Value) -> Vec<Bytes> {
        self.completed = true;
        vec![encode(None, &json!({"error": error}).to_string()), encode(None, "[DONE]")]
    }
}

impl StreamTransform for ResponsesToChat {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        let Ok(value) = serde_json::from_str::<Value>(&event.data) else { return Vec::new() };
        if self.completed {
            return Vec::new();
        }
        match kind(event, &value) {
            "response.created" => {
                if let Some(id) = value.pointer("/response/id").and_then(Value::as_str) {
                    self.id = format!("chatcmpl-{id}");
                }
                if let Some(model) = value.pointer("/response/model").and_then(Value::as_str).filter(|m| !m.is_empty())
                {
                    model.clone_into(&mut self.model);
                }
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "response.output_item.added"
                if value.pointer("/item/type").and_then(Value::as_str) == Some("function_call") =>
            {
                let output_index = value.get("output_index").and_then(Value::as_u64).unwrap_or(0);
                let index = self.calls.len();
                self.calls.insert(output_index, index);
                let item = value.get("item").unwrap_or(&Value::Null);
                vec![self.chunk(
                    json!({"tool_calls": [{
                        "index": index, "id": item.get("call_id").unwrap_or(&Value::Null), "type": "function",
                        "function": {"name": item.get("name").unwrap_or(&Value::Null), "arguments": ""},
                    }]}),
                    None,
                )]
            }
            "response.output_text.delta" => {
                vec![self.chunk(json!({"content": value.get("delta").unwrap_or(&json!(""))}), None)]
            }
            "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
                vec![self.chunk(json!({"reasoning_content": value.get("delta").unwrap_or(&json!(""))}), None)]
            }
            "response.function_call_arguments.delta" => {
                let output_index = value.get("output_index").and_then(Value::as_u64).unwrap_or(0);
                let Some(&index) = self.calls.get(&output_index) else { return Vec::new() };
                vec![self.chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": value.get("delta").unwrap_or(&json!(""))}}]}),
                    None,
                )]
            }
            "response.completed" | "response.incomplete" => {
                let response = value.get("response").unwrap_or(&Value::Null);
                let usage = response.get("usage").unwrap_or(&Value::Null);
                if let Some(seen) = usage_of(usage) {
                    self.usage = seen;
                }
                self.completed = true;
                let finish = if !self.calls.is_empty() {
                    "tool_calls"
                } else {
                    match response.pointer("/incomplete_details/reason").and_then(Value::as_str) {
                        Some("max_output_tokens") => "length",
                        Some("content_filter") => "content_filter",
                        _ => "stop",
                    }
                };
                let mut out = vec![self.chunk(json!({}), Some(finish))];
                if self.include_usage {
                    let chunk = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage_to_chat(usage),
                    });
                    out.push(encode(None, &chunk.to_string()));
                }
                out.push(encode(None, "[DONE]"));
                out
            }
            "response.failed" => {
                let error = value.pointer("/response/error").cloned().unwrap_or(Value::Null);
                self.error(json!({
                    "message": error.get("message").cloned().unwrap_or_else(|| json!("the upstream response failed")),
                    "type": "api_error",
                    "code": error.get("code").cloned().unwrap_or_else(|| json!("upstream_error")),
                }))
            }
            "error" => self.error(json!({
                "message": value.get("message").cloned().unwrap_or(Value::Null),
                "type": "api_error",
                "code": value.get("code").cloned().unwrap_or_else(|| json!("upstream_error")),
            })),
            _ => Vec::new(),
        }
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

/// Reads Responses events for the stream guard, and keeps what it released so that the events
/// that repeat a whole text (`response.output_text.done`, `response.content_part.done`,
/// `response.function_call_arguments.done`, `response.output_item.done` and the final response)
/// carry the guarded text, not the upstream's.
#[derive(Debug, Default)]
pub(crate) struct EventReader {
    /// The message item text is written to: (item id, output index).
    text_item: Option<(String, u64)>,
    /// Function call items: output index → item id.
    call_items: HashMap<u64, String>,
    /// What was released, per output index.
    texts: BTreeMap<u64, String>,
    arguments: BTreeMap<u64, String>,
    sequence: u64,
}

impl EventReader {
    fn replace(slot: Option<&mut Value>, with: Option<&String>) {
        if let (Some(slot), Some(with)) = (slot, with)
            && slot.is_string()
        {
            *slot = Value::String(with.clone());
        }
    }

    /// `item` (an output item at `index`) with the released text or arguments.
    fn rewrite_item(&self, index: u64, item: &mut Value) {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                if let Some(parts) = item.get_mut("content").and_then(Value::as_array_mut) {
                    for part in
                        parts.iter_mut().filter(|p| p.get("type").and_then(Value::as_str) == Some("output_text"))
                    {
                        Self::replace(part.get_mut("text"), self.texts.get(&index));
                    }
                }
            }
            Some("function_call") => Self::replace(item.get_mut("arguments"), self.arguments.get(&index)),
            _ => {}
        }
    }
}

impl TextEvents for EventReader {
    fn classify(&mut self, event: &SseEvent, value: Option<&Value>) -> EventRole {
        let Some(value) = value else { return EventRole::default() };
        if let Some(sequence) = value.get("sequence_number").and_then(Value::as_u64) {
            self.sequence = sequence;
        }
        let index = value.get("output_index").and_then(Value::as_u64);
        let kind = kind(event, value);
        match kind {
            "response.output_item.added" => {
                let id = value.pointer("/item/id").and_then(Value::as_str).unwrap_or_default().to_owned();
                match (value.pointer("/item/type").and_then(Value::as_str), index) {
                    (Some("message"), Some(index)) => self.text_item = Some((id, index)),
                    (Some("function_call"), Some(index)) => {
                        self.call_items.insert(index, id);
                    }
                    _ => {}
                }
                EventRole::default()
            }
            "response.output_text.delta" if value.get("delta").is_some_and(Value::is_string) => {
                EventRole { text: Some("/delta"), ..EventRole::default() }
            }
            "response.function_call_arguments.delta" if value.get("delta").is_some_and(Value::is_string) => EventRole {
                tool_arguments: index.map(|call| vec![(call, "/delta".to_owned())]).unwrap_or_default(),
                ..EventRole::default()
            },
            "response.output_text.done"
            | "response.function_call_arguments.done"
            | "response.content_part.done"
            | "response.output_item.done"
            | "error" => EventRole { boundary: true, ..EventRole::default() },
            other => EventRole { boundary: TERMINAL_EVENTS.contains(&other), ..EventRole::default() },
        }
    }

    fn text_event(&mut self, text: &str) -> Bytes {
        let (id, index) = self.text_item.clone().unwrap_or_else(|| (String::new(), 0));
        self.texts.entry(index).or_default().push_str(text);
        let data = json!({
            "type": "response.output_text.delta", "sequence_number": self.sequence, "item_id": id,
            "output_index": index, "content_index": 0, "delta": text, "logprobs": [],
        });
        encode(Some("response.output_text.delta"), &data.to_string())
    }

    fn tool_arguments_event(&mut self, call: u64, json: &str) -> Bytes {
        self.arguments.entry(call).or_default().push_str(json);
        let data = json!({
            "type": "response.function_call_arguments.delta", "sequence_number": self.sequence,
            "item_id": self.call_items.get(&call).cloned().unwrap_or_default(), "output_index": call, "delta": json,
        });
        encode(Some("response.function_call_arguments.delta"), &data.to_string())
    }

    fn rewrite(&mut self, value: &mut Value) {
        let index = value.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let kind = value.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        let delta = || value.get("delta").and_then(Value::as_str).unwrap_or_default().to_owned();
        match kind.as_str() {
            "response.output_text.delta" => {
                let delta = delta();
                self.texts.entry(index).or_default().push_str(&delta);
            }
            "response.function_call_arguments.delta" => {
                let delta = delta();
                self.arguments.entry(index).or_default().push_str(&delta);
            }
            "response.output_text.done" => Self::replace(value.get_mut("text"), self.texts.get(&index)),
            "response.content_part.done" => Self::replace(value.pointer_mut("/part/text"), self.texts.get(&index)),
            "response.function_call_arguments.done" => {
                Self::replace(value.get_mut("arguments"), self.arguments.get(&index));
            }
            "response.output_item.done" => {
                if let Some(item) = value.get_mut("item") {
                    self.rewrite_item(index, item);
                }
            }
            terminal if TERMINAL_EVENTS.contains(&terminal) => {
                if let Some(items) = value.pointer_mut("/response/output").and_then(Value::as_array_mut) {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.rewrite_item(i as u64, item);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
