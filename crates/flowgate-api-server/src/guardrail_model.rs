//! The guardrail catalog's documents: kinds and their `config_schema`, the built-ins seeded at
//! start, request validation, and the view (never the bearer token).
//!
//! `runtime_config` of a built-in kind is checked against the kind's JSON Schema by
//! [`check_schema`], a validator for the subset of JSON Schema those schemas use (`type`, `enum`,
//! `properties`, `additionalProperties: false`, `required`, `items`, `uniqueItems`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum`).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::fields::{Change, json_text, parse_object, present, rfc3339};

/// Longest guardrail or policy name.
pub(crate) const MAX_NAME_LEN: usize = 64;
const MAX_DESCRIPTION_LEN: usize = 2048;
const MAX_URL_LEN: usize = 2048;
const MAX_TOKEN_LEN: usize = 4096;
/// Default and largest timeout of an HTTP guardrail call, in milliseconds.
pub(crate) const DEFAULT_HTTP_TIMEOUT_MS: i64 = 5000;
const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;

/// PII entity types the built-in detector knows.
pub(crate) use flowgate_contracts::PII_ENTITIES;

/// A name: lowercase letters and digits in words joined by single hyphens (`pii-redact`).
pub(crate) fn validate_kebab(field: &str, name: &str) -> Result<String, ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .split('-')
            .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ApiError::field(
            field,
            format!(
                "must be kebab-case (lowercase letters and digits joined by single hyphens, e.g. `pii-redact`), at most {MAX_NAME_LEN} characters"
            ),
        ))
    }
}

pub(crate) use flowgate_contracts::{GuardrailKind as Kind, GuardrailStage as Stage};

/// The JSON Schema of `runtime_config` for a built-in kind; `None` for `http`, whose schema is
/// the operator's.
pub(crate) fn kind_schema(kind: Kind) -> Option<Value> {
    let properties = match kind {
        Kind::Pii => json!({
            "entities": {
                "type": "array",
                "description": "Entity types to detect and replace with placeholders such as <EMAIL_1>; absent: all of them.",
                "items": {"type": "string", "enum": PII_ENTITIES},
                "uniqueItems": true,
            },
            "restore_output": {
                "type": "boolean",
                "description": "Put the original values back where the model's answer repeats a placeholder.",
            },
        }),
        Kind::Secrets => json!({
            "action": {
                "type": "string",
                "enum": ["block", "redact", "flag"],
                "description": "What a detected secret does: block the request (default), replace it with a placeholder, or only record it.",
            },
        }),
        Kind::PromptInjection => json!({
            "threshold": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "Classifier score at or above which a prompt is treated as an injection (default 0.8).",
            },
        }),
        Kind::BlockedTerms => json!({
            "terms": {
                "type": "array",
                "description": "Terms that block a request or answer containing them (case-insensitive, whole words).",
                "items": {"type": "string", "minLength": 1, "maxLength": 256},
                "maxItems": 10000,
            },
        }),
        Kind::Http => return None,
    };
    Some(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("{} runtime_config", kind.as_str()),
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    }))
}

/// A guardrail shipped with Flowgate, seeded into the catalog at start.
#[derive(Debug, Clone)]
pub(crate) struct Builtin {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) description: &'static str,
    pub(crate) stages: &'static [Stage],
    pub(crate) runtime_config: Value,
}

/// The built-in guardrails. They can be configured (PATCH) but not renamed or deleted; none is
/// on by default.
pub(crate) fn builtins() -> Vec<Builtin> {
    vec![
        Builtin {
            name: "pii-redact",
            kind: Kind::Pii,
            description: "Replaces emails, phone numbers, payment cards (Luhn-checked), IBANs (checksum), US SSNs and IP \
                          addresses with placeholders before the provider sees them; optionally restores them in the answer.",
            stages: &[Stage::PreCall, Stage::PostCall, Stage::DuringCall],
            runtime_config: json!({"entities": PII_ENTITIES, "restore_output": true}),
        },
        Builtin {
            name: "secrets-detect",
            kind: Kind::Secrets,
            description: "Blocks requests carrying credentials: provider API keys, private keys, JWTs, high-entropy tokens.",
            stages: &[Stage::PreCall],
            runtime_config: json!({"action": "block"}),
        },
        Builtin {
            name: "prompt-injection",
            kind: Kind::PromptInjection,
            description: "Blocks prompts the injection and jailbreak classifier scores at or above the threshold.",
            stages: &[Stage::PreCall],
            runtime_config: json!({"threshold": 0.8}),
        },
        Builtin {
            name: "blocked-terms",
            kind: Kind::BlockedTerms,
            description: "Blocks requests and answers containing any of the configured terms.",
            stages: &[Stage::PreCall, Stage::PostCall, Stage::DuringCall],
            runtime_config: json!({"terms": []}),
        },
    ]
}

fn is_builtin(name: &str, kind: &str) -> bool {
    builtins().iter().any(|b| b.name == name && b.kind.as_str() == kind)
}

/// Stages as stored: a JSON array of stage names.
pub(crate) fn stages_text(stages: &[Stage]) -> String {
    Value::Array(stages.iter().map(|s| Value::String(s.as_str().to_owned())).collect()).to_string()
}

// ---------------------------------------------------------------------------------------------
// The JSON Schema subset
// ---------------------------------------------------------------------------------------------

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks `value` against `schema` (the subset described in the module docs); the error names
/// the path, e.g. `runtime_config.entities[2]`.
pub(crate) fn check_schema(schema: &Value, value: &Value, path: &str) -> Result<(), ApiError> {
    let fail = |message: String| Err(ApiError::field(path, message));
    if let Some(expected) = schema.get("type").and_then(Value::as_str)
        && !type_matches(expected, value)
    {
        return fail(format!("must be {expected}, not {}", describe(value)));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let names: Vec<String> = options.iter().map(Value::to_string).collect();
        return fail(format!("must be one of {}", names.join(", ")));
    }
    if let (Some(minimum), Some(number)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && number < minimum
    {
        return fail(format!("must be at least {minimum}"));
    }
    if let (Some(maximum), Some(number)) = (schema.get("maximum").and_then(Value::as_f64), value.as_f64())
        && number > maximum
    {
        return fail(format!("must be at most {maximum}"));
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema.get("minLength").and_then(Value::as_u64).is_some_and(|min| length < min) {
            return fail("is too short".to_owned());
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            return fail(format!("must be at most {max} characters"));
        }
    }
    if let Some(items) = value.as_array() {
        let count = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            return fail(format!("must have at most {max} items"));
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            return fail(format!("must have at least {min} items"));
        }
        if schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            for (index, item) in items.iter().enumerate() {
                if items[..index].contains(item) {
                    return Err(ApiError::field(format!("{path}[{index}]"), "repeats an earlier item"));
                }
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                check_schema(item_schema, item, &format!("{path}[{index}]"))?;
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return Err(ApiError::field(format!("{path}.{name}"), "is required"));
                }
            }
        }
        for (name, item) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => check_schema(property, item, &format!("{path}.{name}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    let known: Vec<&str> =
                        properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                    return Err(ApiError::field(
                        format!("{path}.{name}"),
                        format!("is not a setting of this kind (known: {})", known.join(", ")),
                    ));
                }
                None => {}
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

fn validate_description(text: &str) -> Result<String, ApiError> {
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::field("description", format!("must be at most {MAX_DESCRIPTION_LEN} characters")));
    }
    Ok(text.trim().to_owned())
}

fn validate_stages(kind: Kind, stages: &[Stage]) -> Result<String, ApiError> {
    if stages.is_empty() {
        return Err(ApiError::field("stages", "must name at least one of pre_call, post_call, during_call"));
    }
    for (index, stage) in stages.iter().enumerate() {
        if stages[..index].contains(stage) {
            return Err(ApiError::field(format!("stages[{index}]"), "repeats an earlier stage"));
        }
        if !kind.supported_stages().contains(stage) {
            return Err(ApiError::field(
                format!("stages[{index}]"),
                format!("`{}` is not supported by {} guardrails", stage.as_str(), kind.as_str()),
            ));
        }
    }
    Ok(stages_text(stages))
}

fn validate_config(kind: Kind, config: Map<String, Value>) -> Result<String, ApiError> {
    let config = Value::Object(config);
    if let Some(schema) = kind_schema(kind) {
        check_schema(&schema, &config, "runtime_config")?;
    }
    Ok(config.to_string())
}

fn validate_url(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    let invalid = |message: &str| ApiError::field("http_url", message);
    if text.len() > MAX_URL_LEN {
        return Err(invalid("must be at most 2048 characters"));
    }
    let uri: axum::http::Uri = text.parse().map_err(|_| invalid("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("must be an http:// or https:// URL"));
    }
    let Some(authority) = uri.authority() else { return Err(invalid("must name a host")) };
    if authority.as_str().contains('@') {
        return Err(invalid("must not contain credentials; send the token as `bearer_token`, which is stored sealed"));
    }
    if authority.host().is_empty() {
        return Err(invalid("must name a host"));
    }
    Ok(text.to_owned())
}

fn validate_timeout(ms: u64) -> Result<i64, ApiError> {
    if ms == 0 || ms > MAX_HTTP_TIMEOUT_MS {
        return Err(ApiError::field("http_timeout_ms", format!("must be between 1 and {MAX_HTTP_TIMEOUT_MS}")));
    }
    i64::try_from(ms).map_err(|_| ApiError::field("http_timeout_ms", "is too large"))
}

/// A bearer token must fit an `Authorization` header: visible ASCII, no spaces. The error never
/// repeats it.
fn validate_token(token: &SecretString) -> Result<(), ApiError> {
    let text = token.expose_secret();
    if text.is_empty() || text.len() > MAX_TOKEN_LEN {
        return Err(ApiError::field("bearer_token", format!("must be 1 to {MAX_TOKEN_LEN} characters")));
    }
    if !text.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::field("bearer_token", "must be visible ASCII without spaces"));
    }
    Ok(())
}

fn http_only(kind: Kind, field: &str) -> Result<(), ApiError> {
    if kind == Kind::Http {
        Ok(())
    } else {
        Err(ApiError::field(field, format!("applies only to http guardrails, not {}", kind.as_str())))
    }
}

fn schema_for(kind: Kind, given: Option<Map<String, Value>>) -> Result<String, ApiError> {
    match (kind_schema(kind), given) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "config_schema",
            format!("is defined by Flowgate for {} guardrails and cannot be set", kind.as_str()),
        )),
        (Some(schema), None) => Ok(schema.to_string()),
        (None, given) => Ok(json_text(&given.unwrap_or_default())),
    }
}

/// `POST /api/guardrails`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGuardrail {
    name: String,
    kind: Kind,
    description: Option<String>,
    stages: Option<Vec<Stage>>,
    runtime_config: Option<Map<String, Value>>,
    config_schema: Option<Map<String, Value>>,
    default_on: Option<bool>,
    fail_open: Option<bool>,
    http_url: Option<String>,
    http_timeout_ms: Option<u64>,
    bearer_token: Option<SecretString>,
}

impl fmt::Debug for CreateGuardrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateGuardrail").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// A new guardrail's columns, validated; the token is sealed by the caller.
pub(crate) struct GuardrailFields {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) description: String,
    pub(crate) stages: String,
    pub(crate) runtime_config: String,
    pub(crate) config_schema: String,
    pub(crate) default_on: bool,
    pub(crate) fail_open: bool,
    pub(crate) http_url: Option<String>,
    pub(crate) http_timeout_ms: Option<i64>,
    pub(crate) bearer_token: Option<SecretString>,
}

impl fmt::Debug for GuardrailFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardrailFields").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl CreateGuardrail {
    pub(crate) fn validate(self) -> Result<GuardrailFields, ApiError> {
        let kind = self.kind;
        let name = validate_kebab("name", &self.name)?;
        let (http_url, http_timeout_ms) = if kind == Kind::Http {
            let url = self
                .http_url
                .as_deref()
                .ok_or_else(|| ApiError::field("http_url", "is required for http guardrails"))?;
            let timeout = self.http_timeout_ms.map(validate_timeout).transpose()?.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS);
            (Some(validate_url(url)?), Some(timeout))
        } else {
            for (field, given) in [
                ("http_url", self.http_url.is_some()),
                ("http_timeout_ms", self.http_timeout_ms.is_some()),
                ("bearer_token", self.bearer_token.is_some()),
            ] {
                if given {
                    http_only(kind, field)?;
                }
            }
            (None, None)
        };
        if let Some(token) = &self.bearer_token {
            validate_token(token)?;
        }
        Ok(GuardrailFields {
            description: validate_description(self.description.as_deref().unwrap_or_default())?,
            stages: validate_stages(kind, self.stages.as_deref().unwrap_or(&[Stage::PreCall]))?,
            runtime_config: validate_config(kind, self.runtime_config.unwrap_or_default())?,
            config_schema: schema_for(kind, self.config_schema)?,
            default_on: self.default_on.unwrap_or(false),
            fail_open: self.fail_open.unwrap_or(false),
            http_url,
            http_timeout_ms,
            bearer_token: self.bearer_token,
            name,
            kind,
        })
    }
}

/// `PATCH /api/guardrails/{name}`: absent fields stay; `null` resets (empty description, the
/// `pre_call` stage, `{}` config, `false` flags, the default timeout, no token).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchGuardrail {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    kind: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    stages: Option<Option<Vec<Stage>>>,
    #[serde(default, deserialize_with = "present")]
    runtime_config: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    config_schema: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    default_on: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    fail_open: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    http_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    http_timeout_ms: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    bearer_token: Option<Option<SecretString>>,
}

impl fmt::Debug for PatchGuardrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatchGuardrail").finish_non_exhaustive()
    }
}

/// What a patch does to the bearer token.
#[derive(Default)]
pub(crate) enum TokenChange {
    /// Leave it.
    #[default]
    Keep,
    /// Remove it.
    Clear,
    /// Replace it (sealed by the caller).
    Set(SecretString),
}

impl PatchGuardrail {
    /// The columns to change on a guardrail of `kind`, and what happens to its token.
    pub(crate) fn changes(self, kind_text: &str) -> Result<(Vec<Change>, TokenChange), ApiError> {
        if self.name.is_some() {
            return Err(ApiError::field(
                "name",
                "cannot be changed (keys and policies refer to it); create a new guardrail",
            ));
        }
        if self.kind.is_some() {
            return Err(ApiError::field("kind", "cannot be changed; create a new guardrail"));
        }
        // A stored kind this build does not know can only be deleted.
        let kind = Kind::from_name(kind_text)
            .ok_or_else(|| ApiError::Conflict(format!("this guardrail has unknown kind `{kind_text}`")))?;
        let mut changes = Vec::new();
        if let Some(description) = self.description {
            changes
                .push(Change::Text("description", validate_description(description.as_deref().unwrap_or_default())?));
        }
        if let Some(stages) = self.stages {
            changes
                .push(Change::Text("stages", validate_stages(kind, stages.as_deref().unwrap_or(&[Stage::PreCall]))?));
        }
        if let Some(config) = self.runtime_config {
            changes.push(Change::Text("runtime_config", validate_config(kind, config.unwrap_or_default())?));
        }
        if let Some(schema) = self.config_schema {
            // null on a built-in kind is a no-op reset to Flowgate's schema.
            match (kind_schema(kind), schema) {
                (Some(_), None) => {}
                (_, schema) => changes.push(Change::Text("config_schema", schema_for(kind, schema)?)),
            }
        }
        for (column, value) in [("default_on", self.default_on), ("fail_open", self.fail_open)] {
            if let Some(value) = value {
                changes.push(Change::Int(column, Some(i64::from(value.unwrap_or(false)))));
            }
        }
        if let Some(url) = self.http_url {
            http_only(kind, "http_url")?;
            let url = url.ok_or_else(|| ApiError::field("http_url", "cannot be null for http guardrails"))?;
            changes.push(Change::Text("http_url", validate_url(&url)?));
        }
        if let Some(timeout) = self.http_timeout_ms {
            http_only(kind, "http_timeout_ms")?;
            let timeout = timeout.map(validate_timeout).transpose()?.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS);
            changes.push(Change::Int("http_timeout_ms", Some(timeout)));
        }
        let token = match self.bearer_token {
            None => TokenChange::Keep,
            Some(token) => {
                http_only(kind, "bearer_token")?;
                match token {
                    None => TokenChange::Clear,
                    Some(token) => {
                        validate_token(&token)?;
                        TokenChange::Set(token)
                    }
                }
            }
        };
        Ok((changes, token))
    }
}

/// `GET /api/guardrails?kind=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListGuardrails {
    pub(crate) kind: Option<Kind>,
}

/// A guardrail row (the sealed token is never selected, only whether there is one).
#[derive(Debug, Clone)]
pub(crate) struct GuardrailRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) description: String,
    pub(crate) stages: String,
    pub(crate) runtime_config: String,
    pub(crate) config_schema: String,
    pub(crate) default_on: i64,
    pub(crate) fail_open: i64,
    pub(crate) http_url: Option<String>,
    pub(crate) http_timeout_ms: Option<i64>,
    pub(crate) has_token: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A guardrail as the API shows it. There is no field that could carry the token.
#[derive(Debug, Serialize)]
pub(crate) struct GuardrailView {
    id: String,
    name: String,
    kind: String,
    /// Shipped with Flowgate: configurable, not deletable.
    builtin: bool,
    description: String,
    stages: Value,
    runtime_config: Value,
    config_schema: Value,
    default_on: bool,
    fail_open: bool,
    http_url: Option<String>,
    http_timeout_ms: Option<i64>,
    has_bearer_token: bool,
    created_at: String,
    updated_at: String,
}

impl From<GuardrailRow> for GuardrailView {
    fn from(row: GuardrailRow) -> Self {
        // Built-in kinds always show the schema of this build.
        let config_schema =
            Kind::from_name(&row.kind).and_then(kind_schema).unwrap_or_else(|| parse_object(&row.config_schema));
        Self {
            builtin: is_builtin(&row.name, &row.kind),
            stages: serde_json::from_str(&row.stages).unwrap_or_else(|_| Value::Array(Vec::new())),
            runtime_config: parse_object(&row.runtime_config),
            config_schema,
            default_on: row.default_on != 0,
            fail_open: row.fail_open != 0,
            has_bearer_token: row.has_token != 0,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            id: row.id,
            name: row.name,
            kind: row.kind,
            description: row.description,
            http_url: row.http_url,
            http_timeout_ms: row.http_timeout_ms,
        }
    }
}

/// Whether `name` is a built-in guardrail's (they cannot be deleted).
pub(crate) fn builtin_row(row: &GuardrailRow) -> bool {
    is_builtin(&row.name, &row.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_json;

    fn create(body: &str) -> Result<GuardrailFields, ApiError> {
        parse_json::<CreateGuardrail>(body.as_bytes())?.validate()
    }

    fn error(body: &str) -> String {
        create(body).unwrap_err().to_string()
    }

    #[test]
    fn builtins_satisfy_their_own_schemas() {
        for builtin in builtins() {
            let schema = kind_schema(builtin.kind).unwrap();
            check_schema(&schema, &builtin.runtime_config, "runtime_config").unwrap();
            validate_kebab("name", builtin.name).unwrap();
            validate_stages(builtin.kind, builtin.stages).unwrap();
        }
    }

    #[test]
    fn names_are_kebab_case() {
        for good in ["a", "pii-redact", "x1-y2-z3"] {
            validate_kebab("name", good).unwrap();
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "a b", "é", &"a".repeat(65)] {
            assert!(validate_kebab("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn runtime_config_is_checked_against_the_kind_schema() {
        let ok = create(
            r#"{"name": "pii-strict", "kind": "pii", "stages": ["pre_call", "during_call"],
                           "runtime_config": {"entities": ["email", "iban"], "restore_output": false}}"#,
        )
        .unwrap();
        assert_eq!(ok.stages, r#"["pre_call","during_call"]"#);
        assert!(ok.config_schema.contains("restore_output"));
        for (body, needle) in [
            (
                r#"{"name": "p", "kind": "pii", "runtime_config": {"entities": ["dna"]}}"#,
                "`runtime_config.entities[0]` must be one of",
            ),
            (
                r#"{"name": "p", "kind": "pii", "runtime_config": {"entities": ["email", "email"]}}"#,
                "`runtime_config.entities[1]` repeats",
            ),
            (
                r#"{"name": "p", "kind": "pii", "runtime_config": {"restore_output": "yes"}}"#,
                "must be boolean, not a string",
            ),
            (
                r#"{"name": "p", "kind": "pii", "runtime_config": {"colour": 1}}"#,
                "`runtime_config.colour` is not a setting",
            ),
            (r#"{"name": "p", "kind": "prompt_injection", "runtime_config": {"threshold": 1.5}}"#, "must be at most 1"),
            (
                r#"{"name": "p", "kind": "blocked_terms", "runtime_config": {"terms": [""]}}"#,
                "`runtime_config.terms[0]` is too short",
            ),
            (
                r#"{"name": "p", "kind": "secrets", "runtime_config": {"action": "explode"}}"#,
                "`runtime_config.action` must be one of",
            ),
            (r#"{"name": "p", "kind": "pii", "config_schema": {}}"#, "`config_schema` is defined by Flowgate"),
            (r#"{"name": "p", "kind": "pii", "stages": []}"#, "`stages` must name"),
            (r#"{"name": "p", "kind": "pii", "stages": ["pre_call", "pre_call"]}"#, "`stages[1]` repeats"),
            (r#"{"name": "p", "kind": "pii", "stages": ["later"]}"#, "unknown variant `later`"),
            (r#"{"name": "p", "kind": "magic"}"#, "unknown variant `magic`"),
            (r#"{"name": "P", "kind": "pii"}"#, "`name` must be kebab-case"),
            (r#"{"name": "p", "kind": "pii", "http_url": "http://x"}"#, "`http_url` applies only to http"),
        ] {
            let text = error(body);
            assert!(text.contains(needle), "{body}: {text}");
        }
    }

    #[test]
    fn http_guardrails_need_a_url_and_keep_the_token_out_of_errors() {
        let fields = create(
            r#"{"name": "acme-dlp", "kind": "http", "http_url": "https://dlp.example.com/check",
                "bearer_token": "tok_123", "stages": ["pre_call", "post_call"], "config_schema": {"type": "object"}}"#,
        )
        .unwrap();
        assert_eq!(fields.http_timeout_ms, Some(DEFAULT_HTTP_TIMEOUT_MS));
        assert_eq!(fields.bearer_token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(), Some("tok_123"));
        assert!(!format!("{fields:?}").contains("tok_123"));
        for (body, needle) in [
            (r#"{"name": "h", "kind": "http"}"#, "`http_url` is required"),
            (r#"{"name": "h", "kind": "http", "http_url": "ftp://x"}"#, "http:// or https://"),
            (r#"{"name": "h", "kind": "http", "http_url": "https://u:p@x/"}"#, "must not contain credentials"),
            (r#"{"name": "h", "kind": "http", "http_url": "not a url"}"#, "is not a URL"),
            (r#"{"name": "h", "kind": "http", "http_url": "http://x", "http_timeout_ms": 0}"#, "`http_timeout_ms`"),
            (
                r#"{"name": "h", "kind": "http", "http_url": "http://x", "stages": ["during_call"]}"#,
                "not supported by http",
            ),
        ] {
            let text = error(body);
            assert!(text.contains(needle), "{body}: {text}");
        }
        let text =
            error(r#"{"name": "h", "kind": "http", "http_url": "http://x", "bearer_token": "has space secret"}"#);
        assert!(text.contains("`bearer_token`") && !text.contains("secret"), "{text}");
    }

    #[test]
    fn patches_keep_name_and_kind_and_reset_on_null() {
        let patch = |body: &str, kind: &str| parse_json::<PatchGuardrail>(body.as_bytes()).unwrap().changes(kind);
        let (changes, token) = patch(r#"{"default_on": true, "fail_open": null, "stages": null}"#, "pii").unwrap();
        assert_eq!(
            changes,
            vec![
                Change::Text("stages", r#"["pre_call"]"#.into()),
                Change::Int("default_on", Some(1)),
                Change::Int("fail_open", Some(0)),
            ]
        );
        assert!(matches!(token, TokenChange::Keep));
        assert!(matches!(patch(r#"{"bearer_token": null}"#, "http").unwrap().1, TokenChange::Clear));
        assert!(matches!(patch(r#"{"bearer_token": "t2"}"#, "http").unwrap().1, TokenChange::Set(_)));
        for (body, kind, needle) in [
            (r#"{"name": "x"}"#, "pii", "`name` cannot be changed"),
            (r#"{"kind": "http"}"#, "pii", "`kind` cannot be changed"),
            (r#"{"bearer_token": "t"}"#, "pii", "applies only to http"),
            (r#"{"http_url": null}"#, "http", "cannot be null"),
            (r#"{"runtime_config": {"threshold": -1}}"#, "prompt_injection", "must be at least 0"),
        ] {
            let Err(error) = patch(body, kind) else { panic!("{body} accepted") };
            assert!(error.to_string().contains(needle), "{body}: {error}");
        }
    }
}
