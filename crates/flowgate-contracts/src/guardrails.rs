//! Guardrails as every service names them: kinds, stages, the PII entities the built-in detector
//! knows and the shape of their findings ([`span_shape`]), and the per-key guardrail policy (a
//! key's, or a tenant's defaults) with its parse, validation, key-over-tenant resolution and
//! typed proto form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod proto;
mod span;

pub use proto::{key_guardrails, to_proto};
pub use span::{SpanShape, span_shape};

/// PII entity types the built-in detector knows (the `pii` kind's `entities`).
pub const PII_ENTITIES: [&str; 6] = ["email", "phone", "payment_card", "iban", "ssn", "ip_address"];

/// What a guardrail does. Serde names are the API's (`prompt_injection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailKind {
    /// Personal data: detect and replace with placeholders (or block).
    Pii,
    /// Credentials: provider keys, private keys, JWTs, high-entropy tokens.
    Secrets,
    /// Prompt injection and jailbreak classifier.
    PromptInjection,
    /// A list of forbidden terms.
    BlockedTerms,
    /// An external service called over HTTP.
    Http,
}

impl GuardrailKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [Self::Pii, Self::Secrets, Self::PromptInjection, Self::BlockedTerms, Self::Http];

    /// The name stored and shown (`pii`, `prompt_injection`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pii => "pii",
            Self::Secrets => "secrets",
            Self::PromptInjection => "prompt_injection",
            Self::BlockedTerms => "blocked_terms",
            Self::Http => "http",
        }
    }

    /// The kind named `text`, if any.
    pub fn from_name(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The stages a guardrail of this kind can run at. HTTP guardrails see whole texts, so they
    /// have no during-call (streaming) stage.
    pub fn supported_stages(self) -> &'static [GuardrailStage] {
        match self {
            Self::Http => &[GuardrailStage::PreCall, GuardrailStage::PostCall],
            _ => &GuardrailStage::ALL,
        }
    }
}

/// Where in a request's life a guardrail runs. Serde names are the API's (`pre_call`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailStage {
    /// On the request, before the upstream sees it.
    PreCall,
    /// On a JSON answer.
    PostCall,
    /// On a streamed answer, chunk by chunk.
    DuringCall,
}

impl GuardrailStage {
    /// Every stage, in request order.
    pub const ALL: [Self; 3] = [Self::PreCall, Self::PostCall, Self::DuringCall];

    /// The name stored and shown (`pre_call`, `post_call`, `during_call`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreCall => "pre_call",
            Self::PostCall => "post_call",
            Self::DuringCall => "during_call",
        }
    }

    /// The stage named `text`, if any.
    pub fn from_name(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|stage| stage.as_str() == text)
    }
}

/// A guardrail policy cannot be read; `field` names the part at fault (empty: the whole
/// document).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable guardrail policy: {}{message}", if field.is_empty() { String::new() } else { format!("`{field}` ") })]
pub struct PolicyError {
    /// Path inside the policy document, e.g. `mandatory_guardrails[1]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl PolicyError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A key's (or a tenant's default) guardrail policy, as stored in `virtual_keys.guardrail_policy`
/// and `tenants.guardrail_defaults`. Fields not named here are kept in the stored document but
/// have no effect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardrailPolicy {
    /// Always applied.
    pub mandatory_guardrails: Vec<String>,
    /// Applied when the client asks (`guardrails: [...]` or `x-flowgate-guardrails`).
    pub optional_guardrails: Vec<String>,
    /// Never applied, hidden, rejected if asked.
    pub forbidden_guardrails: Vec<String>,
    /// Guardrail name → settings (always a JSON object) shallow-merged over the catalog's
    /// `runtime_config`.
    pub guardrail_config_overrides: BTreeMap<String, Value>,
    /// Rule set the policy service evaluates on findings (by name).
    pub policy_id: Option<String>,
}

impl GuardrailPolicy {
    /// Parses a stored policy; empty text is the empty policy (a key without a tenant row).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let value: Value = serde_json::from_str(text).map_err(|error| PolicyError::new("", error.to_string()))?;
        match value {
            Value::Object(object) => Self::from_object(&object),
            _ => Err(PolicyError::new("", "must be a JSON object")),
        }
    }

    /// Reads and validates a policy document, naming the field at fault.
    pub fn from_object(object: &Map<String, Value>) -> Result<Self, PolicyError> {
        let policy: Self = serde_path_to_error::deserialize(&Value::Object(object.clone())).map_err(|error| {
            let path = error.path().to_string();
            let field = if path == "." { String::new() } else { path };
            PolicyError::new(field, error.into_inner().to_string())
        })?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks what the types cannot: names are non-empty, overrides are objects, a named policy
    /// is not blank.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (field, names) in [
            ("mandatory_guardrails", &self.mandatory_guardrails),
            ("optional_guardrails", &self.optional_guardrails),
            ("forbidden_guardrails", &self.forbidden_guardrails),
        ] {
            if let Some(index) = names.iter().position(|name| name.trim().is_empty()) {
                return Err(PolicyError::new(format!("{field}[{index}]"), "must be a guardrail name"));
            }
        }
        for (name, settings) in &self.guardrail_config_overrides {
            if !settings.is_object() {
                return Err(PolicyError::new(
                    format!("guardrail_config_overrides.{name}"),
                    "must be an object of runtime_config settings",
                ));
            }
        }
        if self.policy_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(PolicyError::new("policy_id", "must name a policy; omit it for none"));
        }
        Ok(())
    }

    /// This (key) policy over `tenant`'s defaults: each list the key sets wins, overrides merge
    /// by guardrail name (the key's win), and the key's `policy_id` wins.
    #[must_use]
    pub fn over(self, tenant: Self) -> Self {
        let pick = |own: Vec<String>, inherited: Vec<String>| if own.is_empty() { inherited } else { own };
        let mut overrides = tenant.guardrail_config_overrides;
        overrides.extend(self.guardrail_config_overrides);
        Self {
            mandatory_guardrails: pick(self.mandatory_guardrails, tenant.mandatory_guardrails),
            optional_guardrails: pick(self.optional_guardrails, tenant.optional_guardrails),
            forbidden_guardrails: pick(self.forbidden_guardrails, tenant.forbidden_guardrails),
            guardrail_config_overrides: overrides,
            policy_id: self.policy_id.or(tenant.policy_id),
        }
    }

    /// The key's stored policy over its tenant's stored defaults (both JSON text).
    pub fn resolve(key_json: &str, tenant_json: &str) -> Result<Self, PolicyError> {
        Ok(Self::parse(key_json)?.over(Self::parse(tenant_json)?))
    }
}

#[cfg(test)]
mod tests;
