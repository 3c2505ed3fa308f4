//! Stage 4, guard (pre-call): which guardrails apply to this request (the key's policy, the
//! catalog, what the client asks for), then the pre-call scan, HTTP guardrails and policy
//! decision, which may redact the body, reroute the model or block the request.

use axum::http::HeaderMap;
use flowgate_contracts::GuardrailStage;
use serde_json::Value;

use super::parse::Parsed;
use crate::auth::KeyInfo;
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::guardrails::{self, Context as GuardContext, GuardrailPolicy, Plan};
use crate::routing::RoutingTable;
use crate::state::ProxyState;

/// The key's guardrail policy over its tenant's defaults (resolved when the key was); one that
/// cannot be read stops the request (`guardrail_unavailable`).
pub(crate) fn policy_of(key: &KeyInfo) -> Result<&GuardrailPolicy, ProxyError> {
    key.guardrail_policy()
}

/// Who is asking, for guardrail calls.
pub(crate) fn context(cx: &RequestContext) -> GuardContext<'_> {
    GuardContext { key_id: cx.key_id(), tenant_id: cx.tenant_id(), model: &cx.model, route: cx.route() }
}

/// Plans the request's guardrails and runs the pre-call ones. `None` when no guardrail applies.
pub(crate) async fn pre_call(
    state: &ProxyState,
    cx: &mut RequestContext,
    headers: &HeaderMap,
    request: &mut Parsed,
    table: &RoutingTable,
) -> Result<Option<Plan>, ProxyError> {
    let asked = guardrails::requested(&request.body, headers)?;
    let mut plan = guardrails::plan(state.catalog(), policy_of(&cx.key)?, &asked)?;
    if plan.is_empty() {
        return Ok(None);
    }
    if request.fields.stream {
        guardrails::stream_supported(&plan)?;
    }
    let result = guardrails::pre_call(state.guard(), &mut plan, cx.codec(), &mut request.body, context(cx)).await;
    cx.audit.record().guardrail_actions.clone_from(&plan.actions);
    result?;
    if let Some(target) = plan.reroute.take() {
        if !table.contains(&target) {
            return Err(ProxyError::GuardrailUnavailable {
                message: format!("policy rerouted to unknown model `{target}`"),
            });
        }
        request.body["model"] = Value::String(target.clone());
        cx.model = target;
    }
    Ok(Some(plan))
}

/// Whether the answer must pass guardrails (post-call checks, or placeholders to restore).
pub(crate) fn guards_answer(plan: &Plan) -> bool {
    plan.restore_output && !plan.restore.is_empty()
        || plan
            .active
            .iter()
            .any(|a| a.guardrail.supports(GuardrailStage::PostCall) || a.guardrail.supports(GuardrailStage::DuringCall))
}
