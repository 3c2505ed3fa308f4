//! The pre-call stage: the request's texts scanned in one call, HTTP guardrails, and the policy
//! service's decision (deny, reroute, redact, flag).

use std::collections::BTreeMap;

use flowgate_contracts::GuardrailStage;
use flowgate_proto::compliance::Finding;
use flowgate_proto::policy::{Decision, EvaluateRequest, FindingSummary};
use serde_json::{Value, json};

use super::json_text::{JsonState, redact_json};
use super::plan::Plan;
use super::segments::{check, collect, write};
use super::verdict::{redact, split_findings};
use super::{Context, Services, blocked, unavailable};
use crate::error::ProxyError;
use crate::translate::{Codec, TextKind};

/// The pre-call stage: scans the request's texts (every message with its role, tool calls and
/// tool results; one compliance call for every active guardrail), calls HTTP guardrails with the
/// whole conversation, asks the policy service, and rewrites `body` (redaction, reroute) or
/// blocks.
pub(crate) async fn pre_call(
    services: &Services,
    plan: &mut Plan,
    codec: &dyn Codec,
    body: &mut Value,
    context: Context<'_>,
) -> Result<(), ProxyError> {
    if plan.is_empty() {
        return Ok(());
    }
    let mut segments = collect(body, codec.prompt_pointers(body));
    let original = segments.clone();
    let findings = check(services, plan, GuardrailStage::PreCall, &mut segments, &context).await?;
    for (segment, before) in segments.iter().zip(&original) {
        if segment.text != before.text {
            write(body, segment)?;
        }
    }
    if let Some(policy_id) = plan.policy_id.clone() {
        let mut counts: BTreeMap<String, (u32, f32)> = BTreeMap::new();
        for f in &findings {
            let entry = counts.entry(f.kind.clone()).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.max(f.score);
        }
        let request = EvaluateRequest {
            key_id: context.key_id.to_owned(),
            tenant_id: context.tenant_id.to_owned(),
            model: context.model.to_owned(),
            route: context.route.to_owned(),
            stage: GuardrailStage::PreCall.as_str().to_owned(),
            findings: counts
                .into_iter()
                .map(|(kind, (count, max_score))| FindingSummary { kind, count, max_score })
                .collect(),
            policy_id: policy_id.clone(),
        };
        let decision = match tokio::time::timeout(services.timeout, services.policy.evaluate(request)).await {
            Ok(Ok(decision)) => decision,
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                return Err(unavailable(&format!("policy `{policy_id}` does not exist")));
            }
            _ => return Err(unavailable("the policy service is unavailable")),
        };
        let action = decision.decision();
        plan.actions.push(json!({
            "guardrail": format!("policy:{policy_id}"), "stage": GuardrailStage::PreCall.as_str(),
            "action": format!("{action:?}").to_lowercase(), "rule": decision.matched_rule,
        }));
        match action {
            Decision::Deny => return Err(blocked(&format!("policy:{policy_id}"), &decision.reason)),
            Decision::Reroute if !decision.reroute_model.is_empty() => plan.reroute = Some(decision.reroute_model),
            Decision::Redact => {
                let pointers: Vec<String> = original.iter().map(|s| s.pointer.clone()).collect();
                let texts: Vec<String> = original.iter().map(|s| s.text.clone()).collect();
                let split = split_findings(&pointers, &texts, &findings);
                for ((_, text, local), (segment, before)) in split.into_iter().zip(segments.iter().zip(&original)) {
                    if !local.is_empty() && segment.text == before.text {
                        let refs: Vec<&Finding> = local.iter().collect();
                        let mut redacted = segment.clone();
                        redacted.text = match segment.kind {
                            TextKind::Text => redact(&text, &refs, &mut plan.restore),
                            TextKind::ToolArguments => {
                                redact_json(&text, &refs, &mut plan.restore, &mut JsonState::default())
                            }
                        };
                        write(body, &redacted)?;
                    }
                }
            }
            _ => {}
        }
    }
    // The prompt's placeholders: the only ones the answer may have put back.
    plan.restorable = plan.restore.len();
    Ok(())
}
