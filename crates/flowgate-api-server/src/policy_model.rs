//! Policy rule sets as the api-server validates them on write.
//!
//! The policy service evaluates these documents with `flowgate_policy::rules::RuleSet`. Service
//! crates never depend on each other, so the shape and the checks of `RuleSet::parse` /
//! `RuleSet::validate` are mirrored here and must be kept in sync with
//! `crates/flowgate-policy/src/rules.rs`: the same fields (unknown ones rejected), the same action
//! names, and the same rules — a non-empty set name; non-empty, unique rule names; `reroute` needs
//! `reroute_model`; `min_score` and every `min_scores` floor within 0..=1; `min_score`/`min_count`
//! only with a finding condition (`finding`, `any_finding` or `min_scores`); `finding` and
//! `any_finding` not both; `any_finding` and `min_scores` not empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::guardrail_model::validate_kebab;
use crate::model::{parse_object, rfc3339};

/// What a matching rule decides (`flowgate_policy::rules::Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Allow,
    Deny,
    Redact,
    Flag,
    Reroute,
}

/// `flowgate_policy::rules::Conditions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "parsed for validation; the policy service evaluates them")]
struct Conditions {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    finding: Option<String>,
    #[serde(default)]
    min_count: Option<u32>,
    #[serde(default)]
    min_score: Option<f32>,
    #[serde(default)]
    any_finding: Option<Vec<String>>,
    #[serde(default)]
    min_scores: Option<BTreeMap<String, f32>>,
}

impl Conditions {
    fn has_finding_condition(&self) -> bool {
        self.finding.is_some() || self.any_finding.is_some() || self.min_scores.is_some()
    }
}

/// `flowgate_policy::rules::Rule`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "parsed for validation; the policy service evaluates them")]
struct Rule {
    name: String,
    #[serde(default)]
    when: Conditions,
    action: Action,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    reroute_model: Option<String>,
}

/// `flowgate_policy::rules::RuleSet`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "parsed for validation; the policy service evaluates them")]
struct RuleSet {
    name: String,
    #[serde(default = "default_action")]
    default: Action,
    #[serde(default)]
    rules: Vec<Rule>,
}

fn default_action() -> Action {
    Action::Allow
}

fn invalid(field: String, message: impl Into<String>) -> ApiError {
    ApiError::field(format!("document.{field}"), message)
}

impl RuleSet {
    /// `RuleSet::validate`'s checks, with the field at fault named.
    fn validate(&self) -> Result<(), ApiError> {
        if self.name.trim().is_empty() {
            return Err(invalid("name".to_owned(), "must not be empty"));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(invalid(format!("rules[{index}].name"), "must not be empty"));
            }
            if self.rules[..index].iter().any(|r| r.name == rule.name) {
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

/// Validates `document` as the rule set of policy `name`: a missing `name` inside it becomes the
/// policy's; a different one is an error. Returns the JSON text to store.
pub(crate) fn validate_document(name: &str, document: Map<String, Value>) -> Result<String, ApiError> {
    let mut document = document;
    match document.get("name") {
        None => {
            document.insert("name".to_owned(), Value::String(name.to_owned()));
        }
        Some(Value::String(inner)) if inner == name => {}
        Some(_) => {
            return Err(ApiError::field("document.name", format!("must be `{name}` (the policy's name) or omitted")));
        }
    }
    let value = Value::Object(document);
    let set: RuleSet = serde_path_to_error::deserialize(&value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        if path == "." || path.is_empty() {
            ApiError::field("document", message)
        } else {
            ApiError::field(format!("document.{path}"), message)
        }
    })?;
    set.validate()?;
    Ok(value.to_string())
}

/// `POST /api/policies`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePolicy {
    name: String,
    document: Map<String, Value>,
}

impl CreatePolicy {
    /// The name and the document text to store.
    pub(crate) fn validate(self) -> Result<(String, String), ApiError> {
        let name = validate_kebab("name", &self.name)?;
        let document = validate_document(&name, self.document)?;
        Ok((name, document))
    }
}

/// `PATCH /api/policies/{name}`: a new document (the version goes up by one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchPolicy {
    #[serde(default)]
    name: Option<Value>,
    document: Option<Map<String, Value>>,
}

impl PatchPolicy {
    /// The new document text, if the patch has one.
    pub(crate) fn document(self, name: &str) -> Result<Option<String>, ApiError> {
        if self.name.is_some() {
            return Err(ApiError::field("name", "cannot be changed (keys refer to it); create a new policy"));
        }
        self.document.map(|document| validate_document(name, document)).transpose()
    }
}

/// A policy row.
#[derive(Debug, Clone)]
pub(crate) struct PolicyRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) version: i64,
    pub(crate) document: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A policy as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct PolicyView {
    id: String,
    name: String,
    version: i64,
    document: Value,
    created_at: String,
    updated_at: String,
}

impl From<PolicyRow> for PolicyView {
    fn from(row: PolicyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            version: row.version,
            document: parse_object(&row.document),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_json;

    fn create(body: &str) -> Result<(String, String), ApiError> {
        parse_json::<CreatePolicy>(body.as_bytes())?.validate()
    }

    #[test]
    fn valid_documents_get_the_policy_name() {
        let (name, document) = create(
            r#"{"name": "strict", "document": {"default": "deny", "rules": [
                {"name": "r1", "when": {"finding": "email", "min_count": 2, "model": "gpt-4*"}, "action": "allow"},
                {"name": "r2", "when": {"finding": "*"}, "action": "reroute", "reroute_model": "local"},
                {"name": "r3", "when": {"any_finding": ["secret", "prompt_injection"], "min_scores": {"secret": 0.5}, "min_count": 1}, "action": "flag"}]}}"#,
        )
        .unwrap();
        assert_eq!(name, "strict");
        let stored: Value = serde_json::from_str(&document).unwrap();
        assert_eq!(stored["name"], "strict");
        assert_eq!(stored["rules"][1]["reroute_model"], "local");
    }

    #[test]
    fn invalid_documents_name_the_field_at_fault() {
        for (body, needle) in [
            (
                r#"{"name": "p", "document": {"rules": [{"name": "r", "action": "explode"}]}}"#,
                "`document.rules[0].action` unknown variant `explode`",
            ),
            (
                r#"{"name": "p", "document": {"rules": [{"name": "r", "action": "reroute"}]}}"#,
                "`document.rules[0].reroute_model` is required: rule `r`",
            ),
            (
                r#"{"name": "p", "document": {"rules": [{"name": "r", "action": "deny"}, {"name": "r", "action": "flag"}]}}"#,
                "`document.rules[1].name` `r` is used twice",
            ),
            (
                r#"{"name": "p", "document": {"rules": [{"name": " ", "action": "deny"}]}}"#,
                "`document.rules[0].name` must not be empty",
            ),
            (
                r#"{"name": "p", "document": {"rules": [{"name": "r", "action": "deny", "when": {"finding": "x", "min_score": 2}}]}}"#,
                "`document.rules[0].when.min_score` must be between 0 and 1",
            ),
            (
                r#"{"name": "p", "document": {"rules": [{"name": "r", "action": "deny", "when": {"min_count": 2}}]}}"#,
                "`document.rules[0].when` min_score/min_count need `finding`",
            ),
            (
                r#"{"name": "p", "document": {"rules": [{"name": "r", "action": "deny", "when": {"colour": "red"}}]}}"#,
                "`document.rules[0].when.colour` unknown field `colour`",
            ),
            (r#"{"name": "p", "document": {"default": "maybe"}}"#, "`document.default` unknown variant `maybe`"),
            (r#"{"name": "p", "document": {"name": "other"}}"#, "`document.name` must be `p`"),
            (r#"{"name": "p", "document": {"rules": {}}}"#, "`document.rules` invalid type"),
            (r#"{"name": "P!", "document": {}}"#, "`name` must be kebab-case"),
        ] {
            let error = create(body).unwrap_err().to_string();
            assert!(error.contains(needle), "{body}: {error}");
        }
    }

    #[test]
    fn patches_cannot_rename() {
        let patch: PatchPolicy = parse_json(br#"{"name": "x", "document": {}}"#).unwrap();
        assert!(patch.document("p").unwrap_err().to_string().contains("`name` cannot be changed"));
        let patch: PatchPolicy = parse_json(br#"{"document": {"rules": []}}"#).unwrap();
        assert!(patch.document("p").unwrap().unwrap().contains(r#""name":"p""#));
    }
}
