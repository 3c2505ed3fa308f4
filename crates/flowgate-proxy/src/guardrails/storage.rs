//! Redaction of prompts and answers before the audit trail stores them (tenants with
//! `store_prompts`).

use flowgate_contracts::guardrails::PII_ENTITIES;
use flowgate_proto::compliance::ScanRequest;
use serde_json::Value;

use super::{SEPARATOR, Services};

/// Redacts a prompt document and an answer before they are stored: the whole document as JSON
/// (every field, tool arguments included) and the answer go through one compliance scan for PII
/// and secrets, whose findings are replaced by placeholders (`<EMAIL_1>`). Returns the prompt as
/// JSON text and the answer, or `None` when the compliance service does not answer in time or
/// the redacted document is no longer JSON: nothing unredacted is ever stored.
pub(crate) async fn redact_for_storage(
    services: &Services,
    prompt: &Value,
    answer: &str,
    tenant_id: &str,
) -> Option<(String, String)> {
    // JSON text escapes control characters, so the separator can only come from the answer.
    let joined = format!("{prompt}{SEPARATOR}{answer}");
    let mut detectors: Vec<String> = PII_ENTITIES.iter().map(|d| (*d).to_owned()).collect();
    detectors.push("secret".to_owned());
    let request = ScanRequest { text: joined.clone(), detectors, tenant_id: tenant_id.to_owned(), redact: true };
    let response = match tokio::time::timeout(services.timeout, services.compliance.scan(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(status)) => {
            tracing::warn!(code = ?status.code(), "compliance scan failed; the prompt is not stored");
            return None;
        }
        Err(_) => {
            tracing::warn!("compliance scan timed out; the prompt is not stored");
            return None;
        }
    };
    let redacted = if response.findings.is_empty() { joined } else { response.redacted_text };
    let parts: Vec<&str> = redacted.split(SEPARATOR).collect();
    let [prompt, answer] = parts.as_slice() else {
        tracing::warn!("redacted text does not split back into prompt and answer; the prompt is not stored");
        return None;
    };
    if serde_json::from_str::<serde::de::IgnoredAny>(prompt).is_err() {
        tracing::warn!("the redacted prompt is not JSON; the prompt is not stored");
        return None;
    }
    Some(((*prompt).to_owned(), (*answer).to_owned()))
}
