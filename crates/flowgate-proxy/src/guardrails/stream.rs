//! The stream guard: every text delta and every fragment of tool-call arguments of a streamed
//! answer passes the during-call guardrails through a sliding window ([`Window`]) that holds back
//! only what a finding still to come could reach; a block ends the stream with an error event in
//! the client's format. The client's codec says which events carry text and arguments.

use std::collections::BTreeMap;
use std::sync::Arc;

use flowgate_contracts::GuardrailStage;
use serde_json::Value;

use super::json_text::{JsonState, restore_json};
use super::plan::Plan;
use super::verdict::{Form, apply, detectors, restore, scan};
use super::window::{Reach, Window};
use super::{Context, Services};
use crate::error::ProxyError;

/// What the stream guard learned, read by the audit record when the response ends.
#[derive(Debug, Default)]
pub(crate) struct StreamOutcome {
    /// Guardrail actions taken during the call.
    pub actions: Vec<Value>,
    /// Whether a guardrail stopped the stream.
    pub blocked: bool,
}

/// One streamed text: the answer's text, or the arguments of one tool call (JSON text).
#[derive(Debug, Default)]
struct Lane {
    window: Window,
    /// For tool-call arguments: where the released JSON text ends.
    json: Option<JsonState>,
}

/// Which lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneId {
    Text,
    Tool(u64),
}

struct Guard {
    services: Services,
    plan: Plan,
    codec: &'static dyn crate::translate::Codec,
    reader: Box<dyn crate::translate::TextEvents>,
    tenant_id: String,
    /// Whether a during-call scan runs (otherwise only placeholders are restored).
    scans: bool,
    reach: Reach,
    text: Lane,
    tools: BTreeMap<u64, Lane>,
    parser: crate::sse::SseParser,
    outcome: Arc<std::sync::Mutex<StreamOutcome>>,
    done: bool,
}

impl Guard {
    /// Releases what `lane` can release (everything, when `all`), checked and restored.
    async fn release(&mut self, id: LaneId, all: bool) -> Result<String, ProxyError> {
        let lane = match id {
            LaneId::Text => &mut self.text,
            LaneId::Tool(call) => {
                self.tools.entry(call).or_insert_with(|| Lane { json: Some(JsonState::default()), ..Lane::default() })
            }
        };
        let cut = if all { lane.window.held() } else { lane.window.releasable(&self.reach) };
        if cut == 0 {
            return Ok(String::new());
        }
        let findings = if self.scans {
            scan(&self.services, &self.plan, GuardrailStage::DuringCall, &lane.window.scan_text(), &self.tenant_id)
                .await?
        } else {
            Vec::new()
        };
        let (piece, local) = lane.window.release(cut, &findings);
        let before = self.plan.actions.len();
        let form = match lane.json.as_mut() {
            Some(state) => Form::Json(state),
            None => Form::Plain,
        };
        let json = matches!(form, Form::Json(_));
        let result = apply(&mut self.plan, GuardrailStage::DuringCall, &piece, &local, form);
        let new: Vec<Value> = self.plan.actions.get(before..).unwrap_or_default().to_vec();
        if !new.is_empty() {
            self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner).actions.extend(new);
        }
        let mut text = result?.unwrap_or(piece);
        if self.plan.restore_output {
            text =
                if json { restore_json(&text, self.plan.restorable()) } else { restore(&text, self.plan.restorable()) };
        }
        Ok(text)
    }

    /// The synthetic event that releases `text` on `id`, if there is any.
    fn flush_event(&mut self, id: LaneId, text: &str) -> Option<bytes::Bytes> {
        (!text.is_empty()).then(|| match id {
            LaneId::Text => self.reader.text_event(text),
            LaneId::Tool(call) => self.reader.tool_arguments_event(call, text),
        })
    }

    /// Releases everything still held (a text block, a tool call or the answer ends).
    async fn flush(&mut self) -> Result<Vec<bytes::Bytes>, ProxyError> {
        let mut out = Vec::new();
        let ids: Vec<LaneId> =
            std::iter::once(LaneId::Text).chain(self.tools.keys().map(|call| LaneId::Tool(*call))).collect();
        for id in ids {
            let text = self.release(id, true).await?;
            out.extend(self.flush_event(id, &text));
        }
        Ok(out)
    }

    /// Rewrites one event: its text delta and argument fragments pass their windows and the
    /// guardrails; at a boundary, held text is released before it.
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
        let lanes = role
            .text
            .map(|pointer| (LaneId::Text, pointer.to_owned()))
            .into_iter()
            .chain(role.tool_arguments.into_iter().map(|(call, pointer)| (LaneId::Tool(call), pointer)));
        for (id, pointer) in lanes {
            let delta = value.pointer(&pointer).and_then(Value::as_str).unwrap_or_default();
            match id {
                LaneId::Text => self.text.window.push(delta),
                LaneId::Tool(call) => self
                    .tools
                    .entry(call)
                    .or_insert_with(|| Lane { json: Some(JsonState::default()), ..Lane::default() })
                    .window
                    .push(delta),
            }
            let released = self.release(id, false).await?;
            if let Some(slot) = value.pointer_mut(&pointer) {
                *slot = Value::String(released);
            }
        }
        if role.boundary {
            out.extend(self.flush().await?);
        }
        self.reader.rewrite(&mut value);
        out.push(crate::sse::encode_json(event.event.as_deref(), &value));
        Ok(out)
    }

    /// Ends the stream with `error`'s events.
    fn fail(&mut self, error: &ProxyError) -> Vec<bytes::Bytes> {
        self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner).blocked = true;
        self.done = true;
        self.codec.error_events(error)
    }
}

/// Wraps a streamed response so every text delta and tool-call argument fragment passes the
/// during-call guardrails (through a sliding window) before it reaches the client. A block ends
/// the stream with an error event in the client's format (`guardrail_blocked`), which also
/// cancels the upstream request.
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
    let detectors =
        if plan.has(GuardrailStage::DuringCall) { detectors(&plan, GuardrailStage::DuringCall) } else { Vec::new() };
    let guard = Guard {
        services,
        codec: format.codec(),
        reader: format.codec().text_events(),
        tenant_id: context.tenant_id.to_owned(),
        scans: !detectors.is_empty(),
        reach: Reach::new(&detectors, plan.restore_output && !plan.restorable().is_empty()),
        plan,
        text: Lane::default(),
        tools: BTreeMap::new(),
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
                    let out = match guard.flush().await {
                        Ok(out) => out,
                        Err(error) => guard.fail(&error),
                    };
                    return Some((Ok(bytes::Bytes::from(out.concat())), (upstream, guard)));
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
                        out.extend(guard.fail(&error));
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
