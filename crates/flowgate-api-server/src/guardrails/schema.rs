//! What Flowgate defines about guardrail kinds: the JSON Schema of each built-in kind's
//! `runtime_config`, the validator for the subset of JSON Schema those schemas use
//! ([`check_schema`]), and the built-in guardrails seeded into the catalog at start.
//!
//! The subset: `type`, `enum`, `properties`, `additionalProperties: false`, `required`, `items`,
//! `uniqueItems`, `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum`.

use flowgate_contracts::PII_ENTITIES;
use flowgate_contracts::{GuardrailKind as Kind, GuardrailStage as Stage};
use serde_json::{Value, json};

use crate::error::ApiError;

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

/// Whether a guardrail named `name` of `kind` is a built-in (configurable, not deletable).
pub(crate) fn is_builtin(name: &str, kind: Kind) -> bool {
    builtins().iter().any(|b| b.name == name && b.kind == kind)
}

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
                if items.iter().take(index).any(|earlier| earlier == item) {
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
