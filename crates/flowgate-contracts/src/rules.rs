//! The policy rule-set schema, its parse and its validation: what the api-server checks on write
//! and the policy service evaluates. Rule sets are data (JSON; shown here as YAML for brevity). A rule set is an ordered list of rules; the first rule whose conditions all
//! hold decides, otherwise the set's default applies.
//!
//! ```yaml
//! name: default
//! default: allow
//! rules:
//!   - name: block-injection
//!     when: {finding: prompt_injection, min_score: 0.8}
//!     action: deny
//!     reason: prompt injection detected
//!   - name: cheap-model-for-pii
//!     when: {finding: email, model: "gpt-4*"}
//!     action: reroute
//!     reroute_model: local-llm
//!   - name: risky-content
//!     when:
//!       any_finding: [secret, prompt_injection]
//!       min_scores: {secret: 0.5, prompt_injection: 0.6}
//!     action: flag
//! ```
//!
//! # Finding conditions
//! - `finding: kind` (or `*`): findings of that kind; `any_finding: [kinds]`: of any of them
//!   (exclusive with `finding`).
//! - `min_count` (default 1): at least this many such findings in total.
//! - `min_score` (default 0): at least one such finding scored this high.
//! - `min_scores: {kind: score}`: a per-kind score floor; a kind counts only when its best finding
//!   reaches its floor (kinds not listed use `min_score`). On its own, `min_scores` means "any of
//!   the kinds listed, each with its floor".

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Stop it with the rule's reason.
    Deny,
    /// Let it through with findings replaced by placeholders.
    Redact,
    /// Let it through and mark it in the audit trail.
    Flag,
    /// Send it to another model name.
    Reroute,
}

/// Conditions of a rule; every one given must hold. Strings match exactly, or as a prefix when they
/// end in `*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Virtual key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Requested model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Route, e.g. `/v1/chat/completions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// `pre_call`, `post_call` or `during_call` ([`crate::GuardrailStage`] names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// A finding kind that must be present (`email`, `prompt_injection`, `*` for any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// With `finding`: at least this many such findings. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u32>,
    /// With `finding`: at least one such finding scored this high. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// Finding kinds of which at least one must be present (instead of `finding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_finding: Option<Vec<String>>,
    /// Per-kind minimum score; see the module documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_scores: Option<std::collections::BTreeMap<String, f32>>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the set; reported as the matched rule.
    pub name: String,
    /// Conditions; an empty set always matches.
    #[serde(default)]
    pub when: Conditions,
    /// The decision.
    pub action: Action,
    /// Shown to the caller on deny, recorded otherwise.
    #[serde(default)]
    pub reason: Option<String>,
    /// Required for `reroute`.
    #[serde(default)]
    pub reroute_model: Option<String>,
}

/// A rule set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Name of the set.
    pub name: String,
    /// Decision when no rule matches. Default `allow`.
    #[serde(default = "default_action")]
    pub default: Action,
    /// Rules, evaluated in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn default_action() -> Action {
    Action::Allow
}

/// A rule set failed to parse or validate; `field` names the part at fault (`rules[0].action`;
/// empty: the whole document).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rule set: {}{message}", if field.is_empty() { String::new() } else { format!("`{field}` ") })]
pub struct ValidationError {
    /// Path inside the document.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError { field: field.into(), message: message.into() }
}

fn from_path_error<E: std::fmt::Display>(error: serde_path_to_error::Error<E>) -> ValidationError {
    let path = error.path().to_string();
    let field = if path == "." { String::new() } else { path };
    invalid(field, error.into_inner().to_string())
}

impl Conditions {
    /// Whether the rule looks at findings (`finding`, `any_finding` or `min_scores`).
    pub fn has_finding_condition(&self) -> bool {
        self.finding.is_some() || self.any_finding.is_some() || self.min_scores.is_some()
    }
}

impl RuleSet {
    /// Parses a rule set from JSON text and validates it.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let set: RuleSet = serde_path_to_error::deserialize(&mut deserializer).map_err(from_path_error)?;
        set.validate()?;
        Ok(set)
    }

    /// Reads a rule set from a JSON value and validates it.
    pub fn from_value(value: &Value) -> Result<Self, ValidationError> {
        let set: RuleSet = serde_path_to_error::deserialize(value).map_err(from_path_error)?;
        set.validate()?;
        Ok(set)
    }

    /// Reads the stored document of policy `name`: a document without `name` gets the policy's.
    pub fn from_document(name: &str, mut document: Value) -> Result<Self, ValidationError> {
        if let Some(object) = document.as_object_mut()
            && !object.contains_key("name")
        {
            object.insert("name".to_owned(), Value::String(name.to_owned()));
        }
        Self::from_value(&document)
    }

    /// Checks what the types cannot: a non-empty set name; non-empty, unique rule names;
    /// `reroute` needs `reroute_model`; `min_score` and every `min_scores` floor within 0..=1;
    /// `min_score`/`min_count` only with a finding condition; `finding` and `any_finding` not
    /// both; `any_finding` and `min_scores` not empty.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(invalid(format!("rules[{index}].name"), "must not be empty"));
            }
            if self.rules.iter().take(index).any(|r| r.name == rule.name) {
                return Err(invalid(format!("rules[{index}].name"), format!("`{}` is used twice", rule.name)));
            }
            if rule.action == Action::Reroute && rule.reroute_model.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(
                    format!("rules[{index}].reroute_model"),
                    format!("is required: rule `{}` has action reroute", rule.name),
                ));
            }
            let when = &rule.when;
            if when.min_score.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
                return Err(invalid(format!("rules[{index}].when.min_score"), "must be between 0 and 1"));
            }
            if (when.min_score.is_some() || when.min_count.is_some()) && !when.has_finding_condition() {
                return Err(invalid(
                    format!("rules[{index}].when"),
                    "min_score/min_count need `finding`, `any_finding` or `min_scores`",
                ));
            }
            if when.finding.is_some() && when.any_finding.is_some() {
                return Err(invalid(format!("rules[{index}].when"), "use `finding` or `any_finding`, not both"));
            }
            if when
                .any_finding
                .as_ref()
                .is_some_and(|kinds| kinds.is_empty() || kinds.iter().any(|k| k.trim().is_empty()))
            {
                return Err(invalid(format!("rules[{index}].when.any_finding"), "must list finding kinds"));
            }
            if let Some(floors) = &when.min_scores {
                if floors.is_empty() {
                    return Err(invalid(format!("rules[{index}].when.min_scores"), "must not be empty"));
                }
                if let Some((kind, _)) = floors.iter().find(|(_, s)| !(0.0..=1.0).contains(*s)) {
                    return Err(invalid(format!("rules[{index}].when.min_scores.{kind}"), "must be between 0 and 1"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_sets_name_the_field_at_fault() {
        for (doc, needle) in [
            (
                r#"{"name":"t","rules":[{"name":"r","action":"reroute"}]}"#,
                "`rules[0].reroute_model` is required: rule `r`",
            ),
            (
                r#"{"name":"t","rules":[{"name":"r","action":"explode"}]}"#,
                "`rules[0].action` unknown variant `explode`",
            ),
            (
                r#"{"name":"t","rules":[{"name":"r","action":"deny"},{"name":"r","action":"flag"}]}"#,
                "`rules[1].name` `r` is used twice",
            ),
            (r#"{"name":" ","rules":[]}"#, "`name` must not be empty"),
            (
                r#"{"name":"t","rules":[{"name":"r","when":{"finding":"a","any_finding":["b"]},"action":"deny"}]}"#,
                "not both",
            ),
            (
                r#"{"name":"t","rules":[{"name":"r","when":{"any_finding":[]},"action":"deny"}]}"#,
                "`rules[0].when.any_finding` must list",
            ),
            (
                r#"{"name":"t","rules":[{"name":"r","when":{"min_scores":{"a":1.5}},"action":"deny"}]}"#,
                "`rules[0].when.min_scores.a`",
            ),
            (r#"{"name":"t","rules":[{"name":"r","when":{"min_count":2},"action":"deny"}]}"#, "need `finding`"),
            (
                r#"{"name":"t","rules":[{"name":"r","when":{"colour":"red"},"action":"deny"}]}"#,
                "`rules[0].when.colour` unknown field",
            ),
            (r#"{"name":"t","default":"maybe"}"#, "`default` unknown variant `maybe`"),
        ] {
            let error = RuleSet::parse(doc).unwrap_err().to_string();
            assert!(error.starts_with("invalid rule set: ") && error.contains(needle), "{doc}: {error}");
            let value: Value = serde_json::from_str(doc).unwrap();
            assert_eq!(RuleSet::from_value(&value).unwrap_err().field, RuleSet::parse(doc).unwrap_err().field);
        }
    }

    #[test]
    fn stored_documents_get_the_policy_name() {
        let set = RuleSet::from_document("strict", serde_json::json!({"default": "deny"})).unwrap();
        assert_eq!((set.name.as_str(), set.default), ("strict", Action::Deny));
        let kept = RuleSet::from_document("strict", serde_json::json!({"name": "other"})).unwrap();
        assert_eq!(kept.name, "other");
        assert!(RuleSet::from_document("p", serde_json::json!([])).unwrap_err().field.is_empty());
    }
}
