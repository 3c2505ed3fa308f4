//! Scans and verdicts: one compliance scan per stage over the union of the active guardrails'
//! detectors, each guardrail's verdict on the findings it owns (block, redact, flag), and
//! placeholders numbered across the request that `restore_output` puts back.

use std::collections::BTreeMap;

use flowgate_contracts::guardrails::PII_ENTITIES;
use flowgate_contracts::{GuardrailKind, GuardrailStage};
use flowgate_proto::compliance::{Finding, ScanRequest};
use serde_json::{Value, json};

use super::json_text::{JsonState, redact_json};
use super::plan::{Active, Plan};
use super::{SEPARATOR, Services, blocked, unavailable};
use crate::error::ProxyError;

/// Detector names for the active guardrails at `stage`.
pub(super) fn detectors(plan: &Plan, stage: GuardrailStage) -> Vec<String> {
    let mut detectors = Vec::new();
    for active in plan.active.iter().filter(|a| a.guardrail.supports(stage)) {
        match active.guardrail.kind {
            GuardrailKind::Pii => {
                let entities: Vec<String> = active
                    .config
                    .get("entities")
                    .and_then(Value::as_array)
                    .map(|e| e.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_else(|| PII_ENTITIES.iter().map(|s| (*s).to_owned()).collect());
                detectors.extend(entities);
            }
            GuardrailKind::Secrets => detectors.push("secret".to_owned()),
            GuardrailKind::PromptInjection => detectors.push("prompt_injection".to_owned()),
            GuardrailKind::BlockedTerms => {
                let terms: Vec<&str> = active
                    .config
                    .get("terms")
                    .and_then(Value::as_array)
                    .map(|t| t.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !terms.is_empty() {
                    detectors.push(format!("blocked_terms:{}", terms.join("|")));
                }
            }
            GuardrailKind::Http => {}
        }
    }
    detectors.sort();
    detectors.dedup();
    detectors
}

fn summarize(findings: &[Finding]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.kind.clone()).or_insert(0) += 1;
    }
    counts
}

/// Which findings a guardrail acts on.
fn owned_by(active: &Active, finding: &Finding) -> bool {
    match active.guardrail.kind {
        GuardrailKind::Pii => {
            let entities = active.config.get("entities").and_then(Value::as_array);
            match entities {
                Some(e) => e.iter().any(|v| v.as_str() == Some(finding.kind.as_str())),
                None => PII_ENTITIES.contains(&finding.kind.as_str()),
            }
        }
        GuardrailKind::Secrets => finding.kind == "secret",
        GuardrailKind::PromptInjection => finding.kind == "prompt_injection",
        GuardrailKind::BlockedTerms => finding.kind.starts_with("blocked_term"),
        GuardrailKind::Http => false,
    }
}

pub(super) async fn scan(
    services: &Services,
    plan: &Plan,
    stage: GuardrailStage,
    text: &str,
    tenant_id: &str,
) -> Result<Vec<Finding>, ProxyError> {
    let detectors = detectors(plan, stage);
    if detectors.is_empty() {
        return Ok(Vec::new());
    }
    let request = ScanRequest { text: text.to_owned(), detectors, tenant_id: tenant_id.to_owned(), redact: false };
    let fail_open = plan
        .active
        .iter()
        .filter(|a| a.guardrail.supports(stage) && a.guardrail.kind != GuardrailKind::Http)
        .all(|a| a.guardrail.fail_open);
    match tokio::time::timeout(services.timeout, services.compliance.scan(request)).await {
        Ok(Ok(response)) => Ok(response.findings),
        Ok(Err(status)) => {
            tracing::warn!(code = ?status.code(), "compliance scan failed");
            if fail_open { Ok(Vec::new()) } else { Err(unavailable("the compliance service is unavailable")) }
        }
        Err(_) => {
            tracing::warn!(timeout_secs = services.timeout.as_secs(), "compliance scan timed out");
            if fail_open { Ok(Vec::new()) } else { Err(unavailable("the compliance scan timed out")) }
        }
    }
}

/// Assigns placeholders across the request: the same value gets the same placeholder.
pub(super) fn placeholder(restore: &mut Vec<(String, String)>, kind: &str, value: &str) -> String {
    if let Some((placeholder, _)) =
        restore.iter().find(|(p, v)| v == value && p.starts_with(&format!("<{}_", kind.to_ascii_uppercase())))
    {
        return placeholder.clone();
    }
    let prefix = format!("<{}_", kind.to_ascii_uppercase());
    let n = restore.iter().filter(|(p, _)| p.starts_with(&prefix)).count() + 1;
    let placeholder = format!("{prefix}{n}>");
    restore.push((placeholder.clone(), value.to_owned()));
    placeholder
}

/// Replaces `findings` in `text` with placeholders.
pub(super) fn redact(text: &str, findings: &[&Finding], restore: &mut Vec<(String, String)>) -> String {
    let mut sorted: Vec<&&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| f.start);
    let mut out = String::with_capacity(text.len());
    let mut last = 0usize;
    for f in sorted {
        let (start, end) = (f.start as usize, f.end as usize);
        if start < last || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[last..start]);
        out.push_str(&placeholder(restore, &f.kind, &text[start..end]));
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// How a checked text is written: plain text, or JSON text (tool-call arguments) that must stay
/// valid JSON; `state` is where a piece of JSON text starts (see [`JsonState`]).
#[derive(Debug)]
pub(super) enum Form<'a> {
    /// Plain text.
    Plain,
    /// JSON text, or a piece of it.
    Json(&'a mut JsonState),
}

/// Applies the verdicts of the active guardrails at `stage` to `findings` over `text`: blocks, or
/// returns the redacted text (when anything was redacted). A JSON text's state moves past it.
pub(super) fn apply(
    plan: &mut Plan,
    stage: GuardrailStage,
    text: &str,
    findings: &[Finding],
    form: Form<'_>,
) -> Result<Option<String>, ProxyError> {
    let to_redact = decide(plan, stage, findings);
    let to_redact = match to_redact {
        Ok(to_redact) => to_redact,
        Err(error) => {
            if let Form::Json(state) = form {
                state.advance(text);
            }
            return Err(error);
        }
    };
    match form {
        Form::Plain if to_redact.is_empty() => Ok(None),
        Form::Plain => Ok(Some(redact(text, &to_redact, &mut plan.restore))),
        Form::Json(state) if to_redact.is_empty() => {
            state.advance(text);
            Ok(None)
        }
        Form::Json(state) => Ok(Some(redact_json(text, &to_redact, &mut plan.restore, state))),
    }
}

/// Each active guardrail's verdict at `stage` on the findings it owns, recorded in the plan's
/// actions: the findings to redact, or the block.
fn decide<'f>(plan: &mut Plan, stage: GuardrailStage, findings: &'f [Finding]) -> Result<Vec<&'f Finding>, ProxyError> {
    let mut to_redact: Vec<&Finding> = Vec::new();
    let mut actions = Vec::new();
    for active in plan.active.iter().filter(|a| a.guardrail.supports(stage)) {
        let mine: Vec<&Finding> = findings.iter().filter(|f| owned_by(active, f)).collect();
        if mine.is_empty() {
            continue;
        }
        let counts = summarize(&mine.iter().map(|f| (*f).clone()).collect::<Vec<_>>());
        let name = &active.guardrail.name;
        let action = match active.guardrail.kind {
            GuardrailKind::Pii => active.config.get("action").and_then(Value::as_str).unwrap_or("redact"),
            GuardrailKind::PromptInjection => {
                let threshold = active.config.get("threshold").and_then(Value::as_f64).unwrap_or(0.8);
                if mine.iter().all(|f| f64::from(f.score) < threshold) {
                    continue;
                }
                active.config.get("action").and_then(Value::as_str).unwrap_or("block")
            }
            _ => active.config.get("action").and_then(Value::as_str).unwrap_or("block"),
        };
        actions.push(json!({"guardrail": name, "stage": stage.as_str(), "action": action, "findings": counts}));
        match action {
            "redact" => to_redact.extend(mine),
            "flag" | "log" => {}
            _ => {
                plan.actions.extend(actions);
                let what: Vec<&String> = counts.keys().collect();
                return Err(blocked(
                    name,
                    &format!("{} detected", what.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                ));
            }
        }
    }
    plan.actions.extend(actions);
    Ok(to_redact)
}

/// Findings of one scan over the joined segments, split back per segment (offsets made local).
pub(super) fn split_findings(
    pointers: &[String],
    segments: &[String],
    findings: &[Finding],
) -> Vec<(String, String, Vec<Finding>)> {
    let mut out = Vec::with_capacity(segments.len());
    let mut offset = 0usize;
    for (pointer, segment) in pointers.iter().zip(segments) {
        let end = offset + segment.len();
        let local = findings
            .iter()
            .filter(|f| (f.start as usize) >= offset && (f.end as usize) <= end)
            .map(|f| Finding {
                start: u32::try_from(f.start as usize - offset).unwrap_or(0),
                end: u32::try_from(f.end as usize - offset).unwrap_or(0),
                ..f.clone()
            })
            .collect();
        out.push((pointer.clone(), segment.clone(), local));
        offset = end + SEPARATOR.len();
    }
    out
}

/// Puts original values back in place of placeholders.
pub(crate) fn restore(text: &str, restore: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (placeholder, original) in restore {
        if out.contains(placeholder.as_str()) {
            out = out.replace(placeholder.as_str(), original);
        }
    }
    out
}
