//! Which guardrails apply to one request: the key's policy over its tenant's defaults, the
//! catalog's default-on entries, and what the client asks for (body `guardrails`, header
//! `x-flowgate-guardrails`).

use std::sync::Arc;

use flowgate_contracts::{GuardrailKind, GuardrailStage};
use serde_json::Value;

use super::GuardrailPolicy;
use super::catalog::{Catalog, Guardrail};
use crate::error::ProxyError;

/// One guardrail applied to this request, with its effective configuration.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    /// The catalog entry.
    pub(crate) guardrail: Arc<Guardrail>,
    /// Catalog config with the key's overrides merged over it.
    pub(crate) config: Value,
}

/// What the guardrail stage decided for one request, and what the answer needs.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Active guardrails.
    pub(crate) active: Vec<Active>,
    /// Rule set for the policy service.
    pub(crate) policy_id: Option<String>,
    /// Placeholder → original, for `restore_output`.
    pub(crate) restore: Vec<(String, String)>,
    /// Whether originals are put back in the answer.
    pub(crate) restore_output: bool,
    /// How many of `restore` were made before the call (the prompt's): only those are put back
    /// in the answer; a value the answer-side guardrails redact stays redacted.
    pub(crate) restorable: usize,
    /// Audit entries: `{guardrail, action, findings}`.
    pub(crate) actions: Vec<Value>,
    /// Model to use instead (policy reroute).
    pub(crate) reroute: Option<String>,
}

impl Plan {
    /// The placeholders the answer may have put back: the prompt's own values.
    pub(crate) fn restorable(&self) -> &[(String, String)] {
        self.restore.get(..self.restorable).unwrap_or(&self.restore)
    }

    /// True when nothing needs to run.
    pub(crate) fn is_empty(&self) -> bool {
        self.active.is_empty() && self.policy_id.is_none()
    }

    /// Whether a guardrail runs at `stage`.
    pub(crate) fn has(&self, stage: GuardrailStage) -> bool {
        self.active.iter().any(|a| a.guardrail.supports(stage))
    }
}

fn merge(base: &Value, overrides: Option<&Value>) -> Value {
    let mut merged = base.clone();
    if let (Some(target), Some(Value::Object(extra))) = (merged.as_object_mut(), overrides) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    merged
}

/// Guardrails asked for by the client: body `guardrails: [...]` and header `x-flowgate-guardrails`.
pub(crate) fn requested(body: &Value, headers: &axum::http::HeaderMap) -> Result<Vec<String>, ProxyError> {
    let mut names = Vec::new();
    match body.get("guardrails") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let name = item.as_str().ok_or_else(|| ProxyError::BadRequest {
                    message: "`guardrails` must be an array of names".into(),
                    param: Some("guardrails".into()),
                })?;
                names.push(name.to_owned());
            }
        }
        Some(_) => {
            return Err(ProxyError::BadRequest {
                message: "`guardrails` must be an array of names".into(),
                param: Some("guardrails".into()),
            });
        }
    }
    if let Some(header) = headers.get("x-flowgate-guardrails").and_then(|v| v.to_str().ok()) {
        names.extend(header.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned));
    }
    Ok(names)
}

/// Decides which guardrails apply: mandatory + default-on + the optional ones asked for. Asking for
/// a forbidden or unknown one is a 400.
pub(crate) fn plan(catalog: &Catalog, policy: &GuardrailPolicy, asked: &[String]) -> Result<Plan, ProxyError> {
    let mut names: Vec<String> = Vec::new();
    for name in asked {
        if policy.forbidden_guardrails.contains(name) {
            return Err(ProxyError::BadRequest {
                message: format!("guardrail `{name}` is not allowed for this key"),
                param: Some("guardrails".into()),
            });
        }
        let known = catalog.get(name).is_some();
        let allowed = policy.optional_guardrails.contains(name)
            || policy.mandatory_guardrails.contains(name)
            || catalog.get(name).is_some_and(|g| g.default_on);
        if !known || !allowed {
            return Err(ProxyError::BadRequest {
                message: format!("guardrail `{name}` is not available for this key; see GET /v1/guardrails"),
                param: Some("guardrails".into()),
            });
        }
        names.push(name.clone());
    }
    names.extend(policy.mandatory_guardrails.iter().cloned());
    for (name, guardrail) in catalog.entries.load().iter() {
        if guardrail.default_on && !policy.forbidden_guardrails.contains(name) {
            names.push(name.clone());
        }
    }
    names.sort();
    names.dedup();
    let mut active = Vec::new();
    for name in names {
        match catalog.get(&name) {
            Some(guardrail) => {
                let config = merge(&guardrail.config, policy.guardrail_config_overrides.get(&name));
                active.push(Active { guardrail, config });
            }
            None => {
                // A mandatory guardrail missing from the catalog cannot run: fail closed.
                return Err(ProxyError::GuardrailUnavailable {
                    message: format!("mandatory guardrail `{name}` is not in the catalog"),
                });
            }
        }
    }
    let restore_output = active
        .iter()
        .filter(|a| a.guardrail.kind == GuardrailKind::Pii)
        .any(|a| a.config.get("restore_output").and_then(Value::as_bool).unwrap_or(true));
    Ok(Plan { active, policy_id: policy.policy_id.clone(), restore_output, ..Plan::default() })
}

/// Whether a streamed answer can be guarded during the call: every active guardrail that checks
/// answers must support `during_call`.
pub(crate) fn stream_supported(plan: &Plan) -> Result<(), ProxyError> {
    for active in &plan.active {
        if active.guardrail.supports(GuardrailStage::PostCall) && !active.guardrail.supports(GuardrailStage::DuringCall)
        {
            return Err(ProxyError::GuardrailUnavailable {
                message: format!(
                    "guardrail `{}` checks answers but cannot run on a stream; ask without stream",
                    active.guardrail.name
                ),
            });
        }
    }
    Ok(())
}
