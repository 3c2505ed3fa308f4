//! The pre-call stage: the request's texts scanned in one call, HTTP guardrails, and the policy
//! service's decision (deny, reroute, redact, flag).

use std::collections::BTreeMap;

use flowgate_contracts::GuardrailStage;
use flowgate_proto::compliance::Finding;
use flowgate_proto::policy::{Decision, EvaluateRequest, FindingSummary};
use serde_json::{Value, json};

use super::plan::Plan;
use super::verdict::{apply, redact, scan, split_findings};
use super::{Context, SEPARATOR, Services, blocked, http, unavailable};
use crate::error::ProxyError;
use crate::translate::Codec;

/// The pre-call stage: scans the request (one compliance call for every active guardrail), calls
/// HTTP guardrails, asks the policy service, and rewrites `body` (redaction, reroute) or blocks.
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
    let pointers = codec.prompt_pointers(body);
    let segments: Vec<String> =
        pointers.iter().filter_map(|p| body.pointer(p).and_then(Value::as_str).map(str::to_owned)).collect();
    let joined = segments.join(SEPARATOR);
    let findings = scan(services, plan, GuardrailStage::PreCall, &joined, context.tenant_id).await?;
    // Split findings back into segments and apply per segment, so placeholders land in place.
    for (pointer, segment, local) in split_findings(&pointers, &segments, &findings) {
        if let Some(redacted) = apply(plan, GuardrailStage::PreCall, &segment, &local)?
            && let Some(slot) = body.pointer_mut(&pointer)
        {
            *slot = Value::String(redacted);
        }
    }
    // HTTP guardrails see the last message (or the last text), and may replace it.
    let last = pointers.iter().rev().find(|p| p.starts_with("/messages/")).or(pointers.last()).cloned();
    let text = last.as_ref().and_then(|p| body.pointer(p)).and_then(Value::as_str).unwrap_or_default().to_owned();
    if let Some(replacement) = http::run(services, plan, GuardrailStage::PreCall, &text, &context).await?
        && let Some(slot) = last.and_then(|pointer| body.pointer_mut(&pointer))
    {
        *slot = Value::String(replacement);
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
                for (pointer, segment, local) in split_findings(&pointers, &segments, &findings) {
                    let unchanged = body.pointer(&pointer).and_then(Value::as_str) == Some(segment.as_str());
                    if !local.is_empty() && unchanged {
                        let refs: Vec<&Finding> = local.iter().collect();
                        let redacted = redact(&segment, &refs, &mut plan.restore);
                        if let Some(slot) = body.pointer_mut(&pointer) {
                            *slot = Value::String(redacted);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
