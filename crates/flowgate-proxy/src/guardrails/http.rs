//! HTTP guardrails: the operator's own service, called at a stage with every text checked there
//! (the whole conversation before the call: system prompt, earlier turns, tool calls and tool
//! results; the whole answer after it), whose verdict (allow, block, redact with replacements) is
//! honoured. Any other answer is an error: the request fails closed unless the guardrail is
//! `fail_open`. One loop serves every stage.

use flowgate_contracts::{GuardrailKind, GuardrailStage};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::plan::{Active, Plan};
use super::segments::Segment;
use super::{Context, Services, blocked, unavailable};
use crate::error::ProxyError;
use crate::translate::TextKind;

/// An HTTP guardrail's answer.
#[derive(Debug, PartialEq)]
enum Verdict {
    Allow,
    Block {
        reason: Option<String>,
    },
    /// The new texts, one per text sent.
    Redact(Vec<String>),
}

impl Verdict {
    fn action(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block { .. } => "block",
            Self::Redact(_) => "redact",
        }
    }
}

/// The request an HTTP guardrail receives: who is asking, and every text with its role and type
/// (`messages`), also joined in `text` for guardrails that read one string.
fn request_body(
    active: &Active,
    stage: GuardrailStage,
    segments: &[Segment],
    texts: &[String],
    context: &Context<'_>,
) -> Value {
    let messages: Vec<Value> = segments
        .iter()
        .zip(texts)
        .map(|(segment, text)| json!({"role": segment.role, "type": segment.kind.as_str(), "text": text}))
        .collect();
    json!({
        "stage": stage.as_str(), "model": context.model, "key_id": context.key_id,
        "tenant_id": context.tenant_id, "config": active.config,
        "messages": messages, "text": texts.join("\n\n"),
    })
}

/// Reads a verdict: `{"action": "allow"}`, `{"action": "block", "reason"?}`, or
/// `{"action": "redact", "messages": [...]}` with one replacement per text sent (a string, or
/// `{"text": ...}`); `{"action": "redact", "text": ...}` replaces the only text sent. Tool-call
/// arguments must stay JSON.
fn parse_verdict(verdict: &Value, segments: &[Segment]) -> Result<Verdict, String> {
    let action = verdict.get("action").and_then(Value::as_str);
    match action {
        Some("allow") => Ok(Verdict::Allow),
        Some("block") => {
            Ok(Verdict::Block { reason: verdict.get("reason").and_then(Value::as_str).map(str::to_owned) })
        }
        Some("redact") => {
            let texts: Vec<String> = match (verdict.get("messages"), verdict.get("text").and_then(Value::as_str)) {
                (Some(Value::Array(items)), _) => items
                    .iter()
                    .map(|item| item.as_str().or_else(|| item.get("text").and_then(Value::as_str)).map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or("`messages` must hold a text for each message")?,
                (None, Some(text)) if segments.len() == 1 => vec![text.to_owned()],
                (None, Some(_)) => {
                    return Err("`text` alone can only replace a single text; answer `messages`".to_owned());
                }
                _ => return Err("`redact` needs `messages`".to_owned()),
            };
            if texts.len() != segments.len() {
                return Err(format!("`messages` holds {} texts for the {} sent", texts.len(), segments.len()));
            }
            for (segment, text) in segments.iter().zip(&texts) {
                if segment.kind == TextKind::ToolArguments
                    && serde_json::from_str::<serde::de::IgnoredAny>(text).is_err()
                {
                    return Err("replaced tool-call arguments must be JSON".to_owned());
                }
            }
            Ok(Verdict::Redact(texts))
        }
        Some(other) => Err(format!("unknown action `{}`", other.chars().take(32).collect::<String>())),
        None => Err("no `action`".to_owned()),
    }
}

/// Calls one HTTP guardrail with `texts` (the current texts of `segments`). `None`: it failed and
/// is `fail_open`.
async fn call(
    services: &Services,
    active: &Active,
    stage: GuardrailStage,
    segments: &[Segment],
    texts: &[String],
    context: &Context<'_>,
) -> Result<Option<Verdict>, ProxyError> {
    let guardrail = &active.guardrail;
    let Some(url) = &guardrail.http_url else { return Ok(Some(Verdict::Allow)) };
    let mut request = services.http.post(url).json(&request_body(active, stage, segments, texts, context));
    if let Some(token) = &guardrail.http_token {
        request = request.bearer_auth(token.expose_secret());
    }
    let outcome = tokio::time::timeout(guardrail.http_timeout, async {
        let response = request.send().await.map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let verdict = response.json::<Value>().await.map_err(|e| e.without_url().to_string())?;
        parse_verdict(&verdict, segments).map_err(|e| format!("answered an invalid verdict: {e}"))
    })
    .await;
    let error = match outcome {
        Ok(Ok(verdict)) => return Ok(Some(verdict)),
        Ok(Err(error)) => error,
        Err(_) => "timed out".to_owned(),
    };
    tracing::warn!(guardrail = %guardrail.name, %error, fail_open = guardrail.fail_open, "HTTP guardrail failed");
    if guardrail.fail_open {
        Ok(None)
    } else {
        Err(unavailable(&format!("guardrail `{}` failed ({error})", guardrail.name)))
    }
}

/// Runs the HTTP guardrails active at `stage` on `segments`, one after another, each seeing the
/// texts the previous one left. A block stops the request; a redaction replaces the texts.
/// Returns the replacements (one per segment), when there are any.
pub(super) async fn run(
    services: &Services,
    plan: &mut Plan,
    stage: GuardrailStage,
    segments: &[Segment],
    context: &Context<'_>,
) -> Result<Option<Vec<String>>, ProxyError> {
    let http: Vec<Active> = plan
        .active
        .iter()
        .filter(|a| a.guardrail.kind == GuardrailKind::Http && a.guardrail.supports(stage))
        .cloned()
        .collect();
    if http.is_empty() {
        return Ok(None);
    }
    let mut texts: Vec<String> = segments.iter().map(|s| s.text.clone()).collect();
    let mut replaced = false;
    for active in &http {
        let verdict = call(services, active, stage, segments, &texts, context).await?;
        let name = &active.guardrail.name;
        let Some(verdict) = verdict else {
            plan.actions
                .push(json!({"guardrail": name, "stage": stage.as_str(), "action": "allow", "reason": "failed open"}));
            continue;
        };
        plan.actions.push(json!({"guardrail": name, "stage": stage.as_str(), "action": verdict.action()}));
        match verdict {
            Verdict::Allow => {}
            Verdict::Block { reason } => {
                return Err(blocked(name, reason.as_deref().unwrap_or("rejected by the guardrail")));
            }
            Verdict::Redact(new) => {
                texts = new;
                replaced = true;
            }
        }
    }
    Ok(replaced.then_some(texts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(n: usize) -> Vec<Segment> {
        let body = json!({"messages": (0..n).map(|i| json!({"role": "user", "content": format!("m{i}")})).collect::<Vec<_>>()});
        super::super::segments::collect(&body, crate::translate::chat_prompt_pointers(&body))
    }

    #[test]
    fn only_documented_verdicts_are_accepted() {
        let two = segments(2);
        assert_eq!(parse_verdict(&json!({"action": "allow"}), &two), Ok(Verdict::Allow));
        assert_eq!(
            parse_verdict(&json!({"action": "block", "reason": "no"}), &two),
            Ok(Verdict::Block { reason: Some("no".into()) })
        );
        assert_eq!(
            parse_verdict(&json!({"action": "redact", "messages": ["a", {"text": "b"}]}), &two),
            Ok(Verdict::Redact(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_verdict(&json!({"action": "redact", "text": "x"}), &segments(1)),
            Ok(Verdict::Redact(vec!["x".into()]))
        );
        for bad in [
            json!({"action": "alow"}),
            json!({"action": "deny"}),
            json!({}),
            json!("allow"),
            json!({"action": "redact"}),
            json!({"action": "redact", "text": "x"}),
            json!({"action": "redact", "messages": ["only one"]}),
            json!({"action": "redact", "messages": [1, 2]}),
        ] {
            assert!(parse_verdict(&bad, &two).is_err(), "{bad}");
        }
    }
}
