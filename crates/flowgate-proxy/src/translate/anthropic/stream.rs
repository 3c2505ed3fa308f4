//! Anthropic streams: to and from hub (OpenAI chunk) streams, and passed through.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::{finish_reason_from_anthropic, stop_reason_from_openai};
use crate::sse::{SseEvent, encode};
use crate::translate::StreamTransform;
use crate::wire::{Usage, unix_now};

/// An Anthropic stream passed to an Anthropic client unchanged; usage and the end are read on the
/// way.
#[derive(Debug, Default)]
pub(crate) struct Passthrough {
    usage: Usage,
    completed: bool,
}

impl StreamTransform for Passthrough {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        match event.event.as_deref() {
            Some("message_start" | "message_delta") => {
                if let Ok(value) = serde_json::from_str::<Value>(&event.data) {
                    let usage = value.pointer("/message/usage").or_else(|| value.get("usage"));
                    if let Some(usage) = usage {
                        let seen = Usage::from_anthropic(usage);
                        if seen.prompt_tokens > 0 {
                            self.usage.prompt_tokens = seen.prompt_tokens;
                        }
                        if seen.completion_tokens > 0 {
                            self.usage.completion_tokens = seen.completion_tokens;
                        }
                    }
                }
            }
            Some("message_stop") => self.completed = true,
            _ => {}
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

/// Anthropic upstream events → OpenAI `chat.completion.chunk`s.
#[derive(Debug)]
pub(crate) struct AnthropicToOpenAi {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// Anthropic content-block index → OpenAI tool-call index.
    tool_index: HashMap<u64, usize>,
    usage: Usage,
    finish_reason: Option<&'static str>,
    completed: bool,
}

impl AnthropicToOpenAi {
    /// `include_usage`: the client's `stream_options.include_usage`.
    pub(crate) fn new(model: &str, include_usage: bool) -> Self {
        Self {
            id: "chatcmpl-flowgate".to_owned(),
            model: model.to_owned(),
            created: unix_now(),
            include_usage,
            tool_index: HashMap::new(),
            usage: Usage::default(),
            finish_reason: None,
            completed: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        crate::translate::openai::chat_chunk(&self.id, self.created, &self.model, delta, finish_reason)
    }
}

impl StreamTransform for AnthropicToOpenAi {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        let Ok(value) = serde_json::from_str::<Value>(&event.data) else { return Vec::new() };
        let kind = event.event.as_deref().or_else(|| value.get("type").and_then(Value::as_str)).unwrap_or_default();
        match kind {
            "message_start" => {
                if let Some(id) = value.pointer("/message/id").and_then(Value::as_str) {
                    self.id = format!("chatcmpl-{id}");
                }
                if let Some(model) = value.pointer("/message/model").and_then(Value::as_str) {
                    self.model = model.to_owned();
                }
                if let Some(usage) = value.pointer("/message/usage") {
                    self.usage.prompt_tokens = Usage::from_anthropic(usage).prompt_tokens;
                }
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_start" => {
                let block = value.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return Vec::new();
                }
                let block_index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                let tool_index = self.tool_index.len();
                self.tool_index.insert(block_index, tool_index);
                vec![self.chunk(
                    json!({"tool_calls": [{
                        "index": tool_index,
                        "id": block.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                    }]}),
                    None,
                )]
            }
            "content_block_delta" => {
                let delta = value.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").cloned().unwrap_or(Value::String(String::new()));
                        vec![self.chunk(json!({"content": text}), None)]
                    }
                    // Extended thinking, as OpenAI-compatible servers stream reasoning (the
                    // signature, which only Anthropic can check, has no place in chat).
                    Some("thinking_delta") => {
                        let thinking = delta.get("thinking").cloned().unwrap_or(Value::String(String::new()));
                        vec![self.chunk(json!({"reasoning_content": thinking}), None)]
                    }
                    Some("input_json_delta") => {
                        let block_index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let Some(&tool_index) = self.tool_index.get(&block_index) else { return Vec::new() };
                        let fragment = delta.get("partial_json").cloned().unwrap_or(Value::String(String::new()));
                        vec![self.chunk(
                            json!({"tool_calls": [{"index": tool_index, "function": {"arguments": fragment}}]}),
                            None,
                        )]
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Some(usage) = value.get("usage") {
                    let seen = Usage::from_anthropic(usage);
                    self.usage.completion_tokens = seen.completion_tokens;
                    if seen.prompt_tokens > 0 {
                        self.usage.prompt_tokens = seen.prompt_tokens;
                    }
                }
                let reason = value.pointer("/delta/stop_reason").and_then(Value::as_str).unwrap_or("end_turn");
                self.finish_reason = Some(finish_reason_from_anthropic(reason));
                Vec::new()
            }
            "message_stop" => {
                self.completed = true;
                self.closing()
            }
            "error" => {
                let error = json!({"error": {
                    "message": value.pointer("/error/message").cloned().unwrap_or(Value::Null),
                    "type": value.pointer("/error/type").cloned().unwrap_or(Value::Null),
                    "code": "upstream_error",
                }});
                self.completed = true;
                vec![crate::sse::encode_json(None, &error), encode(None, "[DONE]")]
            }
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

impl AnthropicToOpenAi {
    fn closing(&mut self) -> Vec<Bytes> {
        let mut out = vec![self.chunk(json!({}), Some(self.finish_reason.unwrap_or("stop")))];
        if self.include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage.to_openai(),
            });
            out.push(crate::sse::encode_json(None, &chunk));
        }
        out.push(encode(None, "[DONE]"));
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    Tool(u64),
}

/// OpenAI upstream chunks → Anthropic Messages events.
#[derive(Debug)]
pub(crate) struct OpenAiToAnthropic {
    model: String,
    started: bool,
    next_block: u64,
    open: Option<(u64, OpenBlock)>,
    stop_reason: Option<&'static str>,
    usage: Usage,
    completed: bool,
}

impl OpenAiToAnthropic {
    /// A translator reporting `model` until the upstream names its own.
    pub(crate) fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            next_block: 0,
            open: None,
            stop_reason: None,
            usage: Usage::default(),
            completed: false,
        }
    }

    fn event(name: &str, data: &Value) -> Bytes {
        crate::sse::encode_json(Some(name), data)
    }

    fn start(&mut self, id: &str, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({
            "type": "message_start",
            "message": {
                "id": format!("msg_{}", id.trim_start_matches("chatcmpl-")),
                "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        out.push(Self::event("message_start", &message));
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(Self::event("content_block_stop", &json!({"type": "content_block_stop", "index": index})));
        }
    }

    fn open_block(&mut self, kind: OpenBlock, block: Value, out: &mut Vec<Bytes>) -> u64 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, kind));
        out.push(Self::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn finish_message(&mut self, out: &mut Vec<Bytes>) {
        if self.completed {
            return;
        }
        self.start("flowgate", out);
        self.close_block(out);
        self.completed = true;
        out.push(Self::event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": self.usage.to_anthropic(),
            }),
        ));
        out.push(Self::event("message_stop", &json!({"type": "message_stop"})));
    }
}

impl StreamTransform for OpenAiToAnthropic {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        let mut out = Vec::new();
        if event.data == "[DONE]" {
            self.finish_message(&mut out);
            return out;
        }
        let Ok(value) = serde_json::from_str::<Value>(&event.data) else { return out };
        if let Some(error) = value.get("error") {
            self.start("flowgate", &mut out);
            self.completed = true;
            out.push(Self::event(
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": error.get("message").cloned().unwrap_or(Value::Null)}}),
            ));
            return out;
        }
        if let Some(model) = value.get("model").and_then(Value::as_str)
            && !self.started
        {
            self.model = model.to_owned();
        }
        let id = value.get("id").and_then(Value::as_str).unwrap_or("flowgate").to_owned();
        self.start(&id, &mut out);
        if let Some(usage) = value.get("usage").and_then(Usage::from_openai) {
            self.usage = usage;
        }
        let Some(choice) = value.pointer("/choices/0") else { return out };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            let index = match self.open {
                Some((index, OpenBlock::Text)) => index,
                _ => self.open_block(OpenBlock::Text, json!({"type": "text", "text": ""}), &mut out),
            };
            out.push(Self::event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let index = match self.open {
                    Some((index, OpenBlock::Tool(open))) if open == tool => index,
                    _ => self.open_block(
                        OpenBlock::Tool(tool),
                        json!({
                            "type": "tool_use",
                            "id": call.get("id").cloned().unwrap_or_else(|| json!(format!("toolu_{tool}"))),
                            "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                            "input": {},
                        }),
                        &mut out,
                    ),
                };
                if let Some(arguments) = call.pointer("/function/arguments").and_then(Value::as_str)
                    && !arguments.is_empty()
                {
                    out.push(Self::event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                    ));
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason_from_openai(reason));
            self.close_block(&mut out);
        }
        out
    }

    fn finish(&mut self) -> Vec<Bytes> {
        // An upstream that ends without [DONE] still gets a well-formed Anthropic ending.
        let mut out = Vec::new();
        if self.started && !self.completed {
            self.finish_message(&mut out);
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

#[cfg(test)]
mod tests;
