//! `streamGenerateContent?alt=sse` events → hub (OpenAI) chunks. Each Gemini event is a whole
//! `GenerateContentResponse` holding the next text fragment (or whole function calls); the last
//! one carries `finishReason` and `usageMetadata`. Gemini sends no end marker: the stream ends
//! with the body, and the hub's usage chunk and `[DONE]` are written then.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{BLOCKING_FINISH, candidate_parts, finish_reason, prompt_blocked, usage};
use crate::sse::{SseEvent, encode};
use crate::translate::StreamTransform;
use crate::wire::{Usage, unix_now};

/// Gemini stream → hub stream. Usage is always sent (the pipeline's hub passthrough drops it
/// for clients that did not ask).
#[derive(Debug)]
pub(crate) struct GeminiToHub {
    id: String,
    model: String,
    created: u64,
    started: bool,
    /// Tool calls sent so far (their index in the answer).
    calls: usize,
    finish_reason: Option<&'static str>,
    usage: Usage,
    completed: bool,
    /// An error event was sent: nothing follows it.
    failed: bool,
}

impl GeminiToHub {
    /// A translator naming `model` until the upstream names its version.
    pub(crate) fn new(model: &str) -> Self {
        Self {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            model: model.to_owned(),
            created: unix_now(),
            started: false,
            calls: 0,
            finish_reason: None,
            usage: Usage::default(),
            completed: false,
            failed: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        crate::translate::openai::chat_chunk(&self.id, self.created, &self.model, delta, finish_reason)
    }

    fn error(&mut self, message: &str, code: &str) -> Vec<Bytes> {
        self.failed = true;
        let body = json!({"error": {"message": message, "type": "upstream_error", "code": code}});
        vec![encode(None, &body.to_string())]
    }
}

impl StreamTransform for GeminiToHub {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.completed || self.failed {
            return out;
        }
        let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
            return self.error("the Gemini stream sent an event that is not JSON", "bad_upstream_stream");
        };
        if let Some(error) = value.get("error") {
            let message = error.get("message").and_then(Value::as_str).unwrap_or("Gemini reported an error");
            return self.error(message, "upstream_error");
        }
        if let Some(blocked) = prompt_blocked(&value) {
            return self.error(&blocked.0, "content_policy_violation");
        }
        if !self.started
            && let Some(version) = value.get("modelVersion").and_then(Value::as_str)
        {
            self.model = version.to_owned();
        }
        if let Some(metadata) = value.get("usageMetadata") {
            self.usage = usage(metadata);
        }
        let Some(candidate) = value.pointer("/candidates/0") else { return out };
        let (text, calls) = candidate_parts(candidate, self.calls);
        let reason = candidate.get("finishReason").and_then(Value::as_str);
        if !self.started
            && text.is_empty()
            && calls.is_empty()
            && let Some(reason) = reason.filter(|r| BLOCKING_FINISH.contains(r))
        {
            return self
                .error(&format!("Gemini withheld the answer (finishReason {reason})"), "content_policy_violation");
        }
        if !self.started {
            self.started = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        if !text.is_empty() {
            out.push(self.chunk(json!({"content": text}), None));
        }
        for call in calls {
            let index = self.calls;
            self.calls += 1;
            let mut call = call;
            call["index"] = json!(index);
            out.push(self.chunk(json!({"tool_calls": [call]}), None));
        }
        if let Some(reason) = reason {
            self.finish_reason = Some(finish_reason(reason, self.calls > 0));
        }
        out
    }

    fn finish(&mut self) -> Vec<Bytes> {
        if self.completed || self.failed {
            return Vec::new();
        }
        if self.finish_reason.is_none() {
            // Gemini's last event carries the finish reason: without it, the answer was cut.
            return self.error("the Gemini stream ended before its last event", "upstream_disconnected");
        }
        self.completed = true;
        let mut out = Vec::new();
        if !self.started {
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let reason = self.finish_reason.unwrap_or(if self.calls > 0 { "tool_calls" } else { "stop" });
        out.push(self.chunk(json!({}), Some(reason)));
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

    fn usage(&self) -> Usage {
        self.usage
    }

    fn completed(&self) -> bool {
        self.completed
    }
}
