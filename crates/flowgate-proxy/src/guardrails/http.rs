//! HTTP guardrails: the operator's own service, called with the text at a stage, whose verdict
//! (allow, block, redact with a replacement) is honoured. One loop serves every stage.

use flowgate_contracts::{GuardrailKind, GuardrailStage};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::plan::{Active, Plan};
use super::{Context, Services, blocked, unavailable};
use crate::error::ProxyError;

/// An HTTP guardrail's answer.
struct Verdict {
    action: String,
    reason: Option<String>,
    text: Option<String>,
}

/// Calls one HTTP guardrail with `text`.
async fn call(
    services: &Services,
    active: &Active,
    stage: GuardrailStage,
    text: &str,
    context: &Context<'_>,
) -> Result<Verdict, ProxyError> {
    let guardrail = &active.guardrail;
    let allow =
        |reason: Option<&str>| Verdict { action: "allow".to_owned(), reason: reason.map(str::to_owned), text: None };
    let Some(url) = &guardrail.http_url else { return Ok(allow(None)) };
    let mut request = services.http.post(url).json(&json!({
        "stage": stage.as_str(), "text": text, "model": context.model, "key_id": context.key_id,
        "tenant_id": context.tenant_id, "config": active.config,
    }));
    if let Some(token) = &guardrail.http_token {
        request = request.bearer_auth(token.expose_secret());
    }
    let outcome = tokio::time::timeout(guardrail.http_timeout, async {
        let response = request.send().await.map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        response.json::<Value>().await.map_err(|e| e.without_url().to_string())
    })
    .await;
    match outcome {
        Ok(Ok(verdict)) => Ok(Verdict {
            action: verdict.get("action").and_then(Value::as_str).unwrap_or("allow").to_owned(),
            reason: verdict.get("reason").and_then(Value::as_str).map(str::to_owned),
            text: verdict.get("text").and_then(Value::as_str).map(str::to_owned),
        }),
        Ok(Err(error)) if !guardrail.fail_open => {
            tracing::warn!(guardrail = %guardrail.name, %error, "HTTP guardrail failed");
            Err(unavailable(&format!("guardrail `{}` is unavailable", guardrail.name)))
        }
        Err(_) if !guardrail.fail_open => Err(unavailable(&format!("guardrail `{}` timed out", guardrail.name))),
        _ => Ok(allow(Some("failed open"))),
    }
}

/// Runs the HTTP guardrails active at `stage` on `text`, one after another, each seeing the text
/// the previous one left. A block stops the request; a redaction replaces the text. Returns the
/// replacement, when there is one.
pub(super) async fn run(
    services: &Services,
    plan: &mut Plan,
    stage: GuardrailStage,
    text: &str,
    context: &Context<'_>,
) -> Result<Option<String>, ProxyError> {
    let http: Vec<Active> = plan
        .active
        .iter()
        .filter(|a| a.guardrail.kind == GuardrailKind::Http && a.guardrail.supports(stage))
        .cloned()
        .collect();
    let mut replaced: Option<String> = None;
    for active in &http {
        let verdict = call(services, active, stage, replaced.as_deref().unwrap_or(text), context).await?;
        plan.actions
            .push(json!({"guardrail": active.guardrail.name, "stage": stage.as_str(), "action": verdict.action}));
        match verdict.action.as_str() {
            "block" | "deny" => {
                let reason = verdict.reason.as_deref().unwrap_or("rejected by the guardrail");
                return Err(blocked(&active.guardrail.name, reason));
            }
            "redact" | "modify" => {
                if let Some(text) = verdict.text {
                    replaced = Some(text);
                }
            }
            _ => {}
        }
    }
    Ok(replaced)
}
