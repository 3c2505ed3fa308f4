//! Policy documents: the create and patch requests, the stored row and the view. The rule-set
//! schema and its checks are `flowgate_contracts::rules` (the policy service evaluates the same
//! type); what is the api-server's own is the policy's name inside its document and naming the
//! field at fault the way the API does (`document.rules[0].action`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fields::{parse_object, rfc3339, validate_kebab};

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
    flowgate_contracts::RuleSet::from_value(&value).map_err(|error| {
        let field = if error.field.is_empty() { "document".to_owned() } else { format!("document.{}", error.field) };
        ApiError::field(field, error.message)
    })?;
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

/// Every policy, as `GET /api/policies` shows them.
#[derive(Debug, Serialize)]
pub(crate) struct PolicyList {
    pub(crate) data: Vec<PolicyView>,
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
