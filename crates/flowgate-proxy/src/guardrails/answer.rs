//! Post-call checks of a whole answer (its texts and its tool calls' arguments), and placeholder
//! restoration.

use bytes::Bytes;
use flowgate_contracts::GuardrailStage;
use serde_json::Value;

use super::json_text::restore_json;
use super::plan::Plan;
use super::segments::{check, collect, write};
use super::verdict::restore;
use super::{Context, Services};
use crate::error::ProxyError;
use crate::translate::{ApiFormat, TextKind, TextPointer};

/// Post-call processing of a whole JSON answer in the client's format: its texts and the
/// arguments of its tool calls are checked together (one scan, then the HTTP guardrails), then
/// placeholders restored. Returns the new body.
pub(crate) async fn post_call_json(
    services: &Services,
    plan: &mut Plan,
    format: ApiFormat,
    body: &[u8],
    context: Context<'_>,
) -> Result<Bytes, ProxyError> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else { return Ok(Bytes::copy_from_slice(body)) };
    let codec = format.codec();
    let pointer = |pointer: String, kind: TextKind| TextPointer { pointer, role: "assistant".to_owned(), kind };
    let pointers: Vec<TextPointer> = codec
        .answer_pointers(&value)
        .into_iter()
        .map(|p| pointer(p, TextKind::Text))
        .chain(codec.tool_argument_pointers(&value).into_iter().map(|p| pointer(p, TextKind::ToolArguments)))
        .collect();
    let mut segments = collect(&value, pointers);
    if segments.is_empty() {
        return Ok(Bytes::copy_from_slice(body));
    }
    let original: Vec<String> = segments.iter().map(|s| s.text.clone()).collect();
    if plan.has(GuardrailStage::PostCall) {
        check(services, plan, GuardrailStage::PostCall, &mut segments, &context).await?;
    }
    if plan.restore_output {
        for segment in &mut segments {
            segment.text = match segment.kind {
                TextKind::Text => restore(&segment.text, plan.restorable()),
                TextKind::ToolArguments => restore_json(&segment.text, plan.restorable()),
            };
        }
    }
    for (segment, before) in segments.iter().zip(&original) {
        if segment.text != *before {
            write(&mut value, segment)?;
        }
    }
    Ok(Bytes::from(value.to_string()))
}
