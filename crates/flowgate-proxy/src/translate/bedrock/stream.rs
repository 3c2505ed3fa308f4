//! `ConverseStream` events → hub (OpenAI) chunks. The events, as AWS documents them:
//! `messageStart {role}`, then per content block `contentBlockStart` (a tool use's id and name),
//! `contentBlockDelta` (`delta.text`, or `delta.toolUse.input` as a fragment of JSON text) and
//! `contentBlockStop`, then `messageStop {stopReason}` and `metadata {usage, metrics}`. An
//! exception arrives as a message of type `exception` instead.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{finish_reason, usage};
use crate::sse::encode;
use crate::wire::{Usage, unix_now};

/// Converse stream → hub stream, usage always sent.
#[derive(Debug)]
pub(crate) struct BedrockToHub {
    id: String,
    model: String,
    created: u64,
    started: bool,
    /// Content block index → tool call index, for tool-use blocks.
    tool_blocks: Vec<(u64, usize)>,
    finish_reason: Option<&'static str>,
    usage: Usage,
    /// `metadata` (the last event) was seen.
    completed: bool,
    failed: bool,
}

impl BedrockToHub {
    /// A translator naming `model` in its chunks.
    pub(crate) fn new(model: &str) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            model: model.to_owned(),
            created: unix_now(),
            started: false,
            tool_blocks: Vec::new(),
            finish_reason: None,
            usage: Usage::default(),
            completed: false,
            failed: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        crate::translate::openai::chat_chunk(&self.id, self.created, &self.model, delta, finish_reason)
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    /// An error event in the hub stream; nothing follows it.
    pub(crate) fn error(&mut self, message: &str, code: &str) -> Vec<Bytes> {
        if self.failed || self.completed {
            return Vec::new();
        }
        self.failed = true;
        let body = json!({"error": {"message": message, "type": "upstream_error", "code": code}});
        vec![encode(None, &body.to_string())]
    }

    /// Handles one event (`:event-type` and its JSON payload).
    pub(crate) fn on_message(&mut self, event_type: &str, payload: &Value) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.failed || self.completed {
            return out;
        }
        match event_type {
            "messageStart" => self.start(&mut out),
            "contentBlockStart" => {
                self.start(&mut out);
                if let Some(tool) = payload.pointer("/start/toolUse") {
                    let block = payload.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                    let call = self.tool_blocks.len();
                    self.tool_blocks.push((block, call));
                    out.push(self.chunk(
                        json!({"tool_calls": [{
                            "index": call,
                            "id": tool.get("toolUseId").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": {"name": tool.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                        }]}),
                        None,
                    ));
                }
            }
            "contentBlockDelta" => {
                self.start(&mut out);
                let block = payload.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                if let Some(text) = payload.pointer("/delta/text").and_then(Value::as_str)
                    && !text.is_empty()
                {
                    out.push(self.chunk(json!({"content": text}), None));
                }
                if let Some(fragment) = payload.pointer("/delta/toolUse/input").and_then(Value::as_str)
                    && let Some((_, call)) = self.tool_blocks.iter().find(|(b, _)| *b == block)
                {
                    out.push(
                        self.chunk(json!({"tool_calls": [{"index": call, "function": {"arguments": fragment}}]}), None),
                    );
                }
            }
            "messageStop" => {
                let reason = payload.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn");
                self.finish_reason = Some(finish_reason(reason));
            }
            "metadata" => {
                if let Some(reported) = payload.get("usage") {
                    self.usage = usage(reported);
                }
                out.extend(self.close());
            }
            // `contentBlockStop` and events added later carry nothing the hub needs.
            _ => {}
        }
        out
    }

    fn close(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.completed = true;
        out.push(self.chunk(json!({}), Some(self.finish_reason.unwrap_or("stop"))));
        let usage = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage.to_openai(),
        });
        out.push(encode(None, &usage.to_string()));
        out.push(encode(None, "[DONE]"));
        out
    }

    /// The upstream body ended: a stream that stopped (`messageStop`) but sent no `metadata`
    /// still ends well; one cut before `messageStop` ends with an error.
    pub(crate) fn finish(&mut self) -> Vec<Bytes> {
        if self.failed || self.completed {
            return Vec::new();
        }
        if self.finish_reason.is_some() {
            return self.close();
        }
        self.error("the Bedrock stream ended before messageStop", "upstream_disconnected")
    }

    /// Token usage seen so far.
    #[cfg(test)]
    pub(crate) fn usage(&self) -> Usage {
        self.usage
    }
}
