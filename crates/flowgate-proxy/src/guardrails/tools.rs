//! Guardrails on MCP tool traffic. A tool call's arguments and a tool's result are JSON documents
//! outside any model format: the caller names where their texts are (`TextPointer`s into the
//! document), and they are checked like a prompt's texts at `stage` (one compliance scan, then
//! the HTTP guardrails), redacted in place or refused.

use flowgate_contracts::GuardrailStage;
use serde_json::Value;

use super::plan::Plan;
use super::segments::{check, collect, write};
use super::{Context, Services};
use crate::error::ProxyError;
use crate::translate::TextPointer;

/// Checks the texts of `document` at `pointers` with the guardrails of `plan` active at `stage`,
/// writing redactions back into it. Nothing happens when no guardrail of the plan runs at `stage`.
pub(crate) async fn check_document(
    services: &Services,
    plan: &mut Plan,
    stage: GuardrailStage,
    document: &mut Value,
    pointers: Vec<TextPointer>,
    context: Context<'_>,
) -> Result<(), ProxyError> {
    if !plan.has(stage) {
        return Ok(());
    }
    let mut segments = collect(document, pointers);
    if segments.is_empty() {
        return Ok(());
    }
    let original: Vec<String> = segments.iter().map(|s| s.text.clone()).collect();
    check(services, plan, stage, &mut segments, &context).await?;
    for (segment, before) in segments.iter().zip(&original) {
        if segment.text != *before {
            write(document, segment)?;
        }
    }
    Ok(())
}
