//! The stream guard: every text delta of a streamed answer passes the during-call guardrails
//! with only the look-behind a detector needs; a block ends the stream with an error event in the
//! client's format. The client's codec says which events carry text.

use std::sync::Arc;

use serde_json::Value;

use super::answer::during_call_text;
use super::plan::Plan;
use super::{Context, Services};
use crate::error::ProxyError;

/// Look-behind buffer for streamed text: releases text up to the last whitespace (a placeholder or
/// an email address never contains whitespace), so a value split across chunks is seen whole.
#[derive(Debug, Default)]
pub(crate) struct StreamText {
    held: String,
}

/// Longest run without whitespace that is held back before it is released anyway.
const MAX_HOLD: usize = 256;

impl StreamText {
    /// Adds a delta; returns the part that can be released now.
    pub(crate) fn push(&mut self, delta: &str) -> String {
        self.held.push_str(delta);
        let cut = match self.held.rfind(char::is_whitespace) {
            Some(index) => index + self.held[index..].chars().next().map_or(1, char::len_utf8),
            None if self.held.len() > MAX_HOLD => self.held.len(),
            None => 0,
        };
        let rest = self.held.split_off(cut);
        std::mem::replace(&mut self.held, rest)
    }

    /// Everything still held (at the end of the stream).
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// What the stream guard learned, read by the audit record when the response ends.
#[derive(Debug, Default)]
pub(crate) struct StreamOutcome {
    /// Guardrail actions taken during the call.
    pub actions: Vec<Value>,
    /// Whether a guardrail stopped the stream.
    pub blocked: bool,
}

struct Guard {
    services: Services,
    plan: Plan,
    codec: &'static dyn crate::translate::Codec,
    reader: Box<dyn crate::translate::TextEvents>,
    key_id: String,
    tenant_id: String,
    model: String,
    route: String,
    text: StreamText,
    parser: crate::sse::SseParser,
    outcome: Arc<std::sync::Mutex<StreamOutcome>>,
    done: bool,
}

impl Guard {
    fn context(&self) -> (String, String, String, String) {
        (self.key_id.clone(), self.tenant_id.clone(), self.model.clone(), self.route.clone())
    }

    async fn process(&mut self, text: &str) -> Result<String, ProxyError> {
        let (key_id, tenant_id, model, route) = self.context();
        let context = Context { key_id: &key_id, tenant_id: &tenant_id, model: &model, route: &route };
        let before = self.plan.actions.len();
        let result = during_call_text(&self.services, &mut self.plan, text, context).await;
        let new: Vec<Value> = self.plan.actions[before..].to_vec();
        if !new.is_empty() {
            self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner).actions.extend(new);
        }
        result
    }

    /// The synthetic event that releases `text`, if there is any.
    fn flush_event(&self, text: &str) -> Option<bytes::Bytes> {
        (!text.is_empty()).then(|| self.reader.text_event(text))
    }

    /// Releases what the look-behind buffer still holds (a text block or the answer ends).
    async fn flush(&mut self) -> Result<Option<bytes::Bytes>, ProxyError> {
        let tail = self.text.finish();
        let tail = self.process(&tail).await?;
        Ok(self.flush_event(&tail))
    }

    /// Rewrites one event: its text delta passes the look-behind buffer and the guardrails; at a
    /// boundary, held text is released before it.
    async fn on_event(&mut self, event: crate::sse::SseEvent) -> Result<Vec<bytes::Bytes>, ProxyError> {
        let mut out = Vec::new();
        let Ok(mut value) = serde_json::from_str::<Value>(&event.data) else {
            if self.reader.classify(&event, None).boundary {
                out.extend(self.flush().await?);
            }
            out.push(crate::sse::encode(event.event.as_deref(), &event.data));
            return Ok(out);
        };
        let role = self.reader.classify(&event, Some(&value));
        if let Some(pointer) = role.text {
            let delta = value.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
            let released = self.text.push(&delta);
            let processed = self.process(&released).await?;
            if let Some(slot) = value.pointer_mut(pointer) {
                *slot = Value::String(processed);
            }
        }
        if role.boundary {
            out.extend(self.flush().await?);
        }
        out.push(crate::sse::encode(event.event.as_deref(), &value.to_string()));
        Ok(out)
    }
}

/// Wraps a streamed response so every text delta passes the during-call guardrails (with
/// look-behind) before it reaches the client. A block ends the stream with an error event in the
/// client's format (`guardrail_blocked`), which also cancels the upstream request.
pub(crate) fn guard_stream(
    response: axum::response::Response,
    services: Services,
    plan: Plan,
    format: crate::translate::ApiFormat,
    context: Context<'_>,
    outcome: Arc<std::sync::Mutex<StreamOutcome>>,
) -> axum::response::Response {
    use futures_util::StreamExt;
    let (parts, body) = response.into_parts();
    let guard = Guard {
        services,
        plan,
        codec: format.codec(),
        reader: format.codec().text_events(),
        key_id: context.key_id.to_owned(),
        tenant_id: context.tenant_id.to_owned(),
        model: context.model.to_owned(),
        route: context.route.to_owned(),
        text: StreamText::default(),
        parser: crate::sse::SseParser::default(),
        outcome,
        done: false,
    };
    let upstream = body.into_data_stream();
    let stream = futures_util::stream::unfold((upstream, guard), |(mut upstream, mut guard)| async move {
        if guard.done {
            return None;
        }
        loop {
            let chunk = match upstream.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) => return Some((Err(std::io::Error::other(error)), (upstream, guard))),
                None => {
                    guard.done = true;
                    let tail = guard.text.finish();
                    let tail = guard.process(&tail).await.unwrap_or_default();
                    let out = guard.flush_event(&tail).unwrap_or_default();
                    return Some((Ok(out), (upstream, guard)));
                }
            };
            let events = match guard.parser.push(&chunk) {
                Ok(events) => events,
                Err(_) => return Some((Ok(chunk), (upstream, guard))),
            };
            let mut out = Vec::new();
            for event in events {
                match guard.on_event(event).await {
                    Ok(bytes) => out.extend(bytes),
                    Err(error) => {
                        guard.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner).blocked = true;
                        guard.done = true;
                        out.extend(guard.codec.error_events(&error));
                        break;
                    }
                }
            }
            if !out.is_empty() {
                return Some((Ok(bytes::Bytes::from(out.concat())), (upstream, guard)));
            }
        }
    });
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(stream))
}
