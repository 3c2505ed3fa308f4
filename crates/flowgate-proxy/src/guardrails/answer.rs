//! Post-call and during-call checks of the answer's text, and placeholder restoration.

use bytes::Bytes;
use flowgate_contracts::GuardrailStage;
use serde_json::Value;

use super::plan::Plan;
use super::verdict::{apply, detectors, restore, scan};
use super::{Context, Services, http};
use crate::error::ProxyError;
use crate::translate::ApiFormat;

/// The post-call stage for a JSON answer's text: scan (answer-side guardrails), block or redact,
/// then restore placeholders. Returns the new text.
pub(crate) async fn post_call_text(
    services: &Services,
    plan: &mut Plan,
    text: &str,
    context: Context<'_>,
) -> Result<String, ProxyError> {
    let mut text = text.to_owned();
    if plan.has(GuardrailStage::PostCall) {
        let findings = scan(services, plan, GuardrailStage::PostCall, &text, context.tenant_id).await?;
        if let Some(redacted) = apply(plan, GuardrailStage::PostCall, &text, &findings)? {
            text = redacted;
        }
        if let Some(replacement) = http::run(services, plan, GuardrailStage::PostCall, &text, &context).await? {
            text = replacement;
        }
    }
    if plan.restore_output {
        text = restore(&text, &plan.restore);
    }
    Ok(text)
}

/// During-call processing of one released piece of streamed text: answer-side scans (block or
/// redact) and placeholder restoration.
pub(crate) async fn during_call_text(
    services: &Services,
    plan: &mut Plan,
    text: &str,
    context: Context<'_>,
) -> Result<String, ProxyError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let mut text = text.to_owned();
    if plan.has(GuardrailStage::DuringCall) && !detectors(plan, GuardrailStage::DuringCall).is_empty() {
        let findings = scan(services, plan, GuardrailStage::DuringCall, &text, context.tenant_id).await?;
        if let Some(redacted) = apply(plan, GuardrailStage::DuringCall, &text, &findings)? {
            text = redacted;
        }
    }
    if plan.restore_output {
        text = restore(&text, &plan.restore);
    }
    Ok(text)
}

/// Post-call processing of a whole JSON answer in the client's format: each text is checked and
/// restored. Returns the new body.
pub(crate) async fn post_call_json(
    services: &Services,
    plan: &mut Plan,
    format: ApiFormat,
    body: &[u8],
    context: Context<'_>,
) -> Result<Bytes, ProxyError> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else { return Ok(Bytes::copy_from_slice(body)) };
    let pointers = format.codec().answer_pointers(&value);
    for pointer in pointers {
        let Some(text) = value.pointer(&pointer).and_then(Value::as_str).map(str::to_owned) else { continue };
        let processed = post_call_text(services, plan, &text, context).await?;
        if let Some(slot) = value.pointer_mut(&pointer) {
            *slot = Value::String(processed);
        }
    }
    Ok(Bytes::from(value.to_string()))
}
