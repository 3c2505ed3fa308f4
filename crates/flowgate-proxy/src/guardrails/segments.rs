//! The texts of a request or a whole answer that guardrails check, read where the codec says they
//! are, checked together (one compliance scan, then the HTTP guardrails, which see all of them
//! with their roles), and written back in place. Tool-call arguments are checked as JSON text and
//! stay valid JSON.

use flowgate_contracts::GuardrailStage;
use flowgate_proto::compliance::Finding;
use serde_json::Value;

use super::json_text::JsonState;
use super::plan::Plan;
use super::verdict::{Form, apply, scan, split_findings};
use super::{Context, SEPARATOR, Services, http};
use crate::error::ProxyError;
use crate::translate::{TextKind, TextPointer};

/// One checked text.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    /// Where it is in the body.
    pub(super) pointer: String,
    /// Who wrote it.
    pub(super) role: String,
    /// Text, or tool-call arguments.
    pub(super) kind: TextKind,
    /// The text (tool-call arguments held as a JSON value: that value as JSON text).
    pub(super) text: String,
    /// The body holds it as a JSON value (Anthropic `input`), not as a string.
    as_value: bool,
}

impl Segment {
    /// How its text is redacted: tool-call arguments as JSON text.
    pub(super) fn form<'a>(&self, state: &'a mut JsonState) -> Form<'a> {
        match self.kind {
            TextKind::Text => Form::Plain,
            TextKind::ToolArguments => Form::Json(state),
        }
    }
}

/// The texts `pointers` point to in `body` (pointers to absent or non-text values are skipped).
pub(super) fn collect(body: &Value, pointers: Vec<TextPointer>) -> Vec<Segment> {
    pointers
        .into_iter()
        .filter_map(|TextPointer { pointer, role, kind }| {
            let (text, as_value) = match (body.pointer(&pointer)?, kind) {
                (Value::String(text), _) => (text.clone(), false),
                (Value::Null, _) | (_, TextKind::Text) => return None,
                (value, TextKind::ToolArguments) => (value.to_string(), true),
            };
            Some(Segment { pointer, role, kind, text, as_value })
        })
        .collect()
}

/// Writes `segment`'s text back into `body`. Arguments held as a JSON value are parsed back; if
/// they no longer parse (an HTTP guardrail replaced them with something else), nothing unchecked
/// is sent: the request or answer is stopped.
pub(super) fn write(body: &mut Value, segment: &Segment) -> Result<(), ProxyError> {
    let value = if segment.as_value {
        serde_json::from_str(&segment.text).map_err(|_| ProxyError::GuardrailUnavailable {
            message: "the checked tool-call arguments are no longer JSON; nothing was sent (fail closed)".into(),
        })?
    } else {
        Value::String(segment.text.clone())
    };
    if let Some(slot) = body.pointer_mut(&segment.pointer) {
        *slot = value;
    }
    Ok(())
}

/// Checks `segments` at `stage`: one compliance scan over all of them, each guardrail's verdict on
/// its findings (block, or redaction in place), then the HTTP guardrails over all of them, which
/// may replace any. Returns the scan's findings (offsets in the joined texts).
pub(super) async fn check(
    services: &Services,
    plan: &mut Plan,
    stage: GuardrailStage,
    segments: &mut [Segment],
    context: &Context<'_>,
) -> Result<Vec<Finding>, ProxyError> {
    let texts: Vec<String> = segments.iter().map(|s| s.text.clone()).collect();
    let pointers: Vec<String> = segments.iter().map(|s| s.pointer.clone()).collect();
    let joined = texts.join(SEPARATOR);
    let findings =
        if joined.is_empty() { Vec::new() } else { scan(services, plan, stage, &joined, context.tenant_id).await? };
    for ((_, _, local), segment) in split_findings(&pointers, &texts, &findings).into_iter().zip(segments.iter_mut()) {
        let mut state = JsonState::default();
        if let Some(redacted) = apply(plan, stage, &segment.text, &local, segment.form(&mut state))? {
            segment.text = redacted;
        }
    }
    if let Some(replacements) = http::run(services, plan, stage, segments, context).await? {
        for (segment, text) in segments.iter_mut().zip(replacements) {
            segment.text = text;
        }
    }
    Ok(findings)
}
