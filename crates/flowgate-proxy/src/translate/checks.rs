//! The checks of the request fields the gateway knows, made before anything is forwarded: types
//! and ranges of the output limit, `n`, `temperature` and `top_p`, message roles and content shapes
//! (a string or an array of typed parts). Each codec states its format's [`Rules`]; a field no
//! rule names passes through unchanged (providers add fields every month). A 400 names the field
//! in `param` (and in its message, which is all an Anthropic error body carries).
//!
//! Checking reads the parsed body in place: a valid request costs one walk over its messages and
//! no allocation; only an error builds a string.

use serde_json::Value;

use crate::error::ProxyError;
use crate::wire::Endpoint;

/// One format's rules for the fields it knows.
#[derive(Debug)]
pub(crate) struct Rules {
    /// The output-limit fields (`max_tokens`, ...): each a positive integer when present.
    pub(crate) output_limits: &'static [&'static str],
    /// A chat request must set the first of `output_limits` (Anthropic's `max_tokens`).
    pub(crate) output_required: bool,
    /// Other fields that count something (`n`, `best_of`): positive integers when present.
    pub(crate) counts: &'static [&'static str],
    /// The highest `temperature` the format accepts (the lowest is 0).
    pub(crate) temperature_max: f64,
    /// The message roles the format accepts.
    pub(crate) roles: &'static [&'static str],
    /// Roles whose `content` may be null or absent (an assistant turn that only calls tools).
    pub(crate) content_optional: &'static [&'static str],
    /// Top-level fields shaped like a message's content (Anthropic's `system`).
    pub(crate) content_fields: &'static [&'static str],
}

fn bad(message: String, param: String) -> ProxyError {
    ProxyError::BadRequest { message, param: Some(param) }
}

/// Checks `body` (a JSON object) for `endpoint` against `rules`.
pub(crate) fn check(endpoint: Endpoint, body: &Value, rules: &Rules) -> Result<(), ProxyError> {
    if endpoint == Endpoint::Embeddings {
        return Ok(());
    }
    for field in rules.output_limits.iter().chain(rules.counts) {
        positive_integer(body, field)?;
    }
    if rules.output_required
        && endpoint == Endpoint::Chat
        && let Some(first) = rules.output_limits.first()
        && rules.output_limits.iter().all(|field| body.get(*field).is_none_or(Value::is_null))
    {
        return Err(bad(format!("`{first}` is required: a positive integer"), (*first).to_owned()));
    }
    number_between(body, "temperature", rules.temperature_max)?;
    number_between(body, "top_p", 1.0)?;
    if endpoint == Endpoint::Chat {
        for field in rules.content_fields {
            if let Some(content) = body.get(*field).filter(|v| !v.is_null()) {
                content_shape(content).map_err(|fault| fault.error(field))?;
            }
        }
        if let Some(messages) = body.get("messages").and_then(Value::as_array) {
            for (index, message) in messages.iter().enumerate() {
                check_message(index, message, rules)?;
            }
        }
    }
    Ok(())
}

/// `field`, when present and not null, is a whole number of at least 1.
fn positive_integer(body: &Value, field: &str) -> Result<(), ProxyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(value) if value.as_u64().is_some_and(|n| n >= 1) => Ok(()),
        Some(_) => Err(bad(format!("`{field}` must be a positive integer"), field.to_owned())),
    }
}

/// `field`, when present and not null, is a number from 0 to `max`.
fn number_between(body: &Value, field: &str, max: f64) -> Result<(), ProxyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(value) if value.as_f64().is_some_and(|x| (0.0..=max).contains(&x)) => Ok(()),
        Some(_) => Err(bad(format!("`{field}` must be a number from 0 to {max}"), field.to_owned())),
    }
}

fn check_message(index: usize, message: &Value, rules: &Rules) -> Result<(), ProxyError> {
    let Some(message) = message.as_object() else {
        return Err(bad(format!("`messages[{index}]` must be an object"), format!("messages[{index}]")));
    };
    let role = match message.get("role") {
        Some(Value::String(role)) if rules.roles.contains(&role.as_str()) => role.as_str(),
        Some(Value::String(_)) => {
            return Err(bad(
                format!("`messages[{index}].role` must be one of: {}", rules.roles.join(", ")),
                format!("messages[{index}].role"),
            ));
        }
        _ => {
            return Err(bad(
                format!("`messages[{index}].role` is required: a string"),
                format!("messages[{index}].role"),
            ));
        }
    };
    match message.get("content") {
        None | Some(Value::Null) if rules.content_optional.contains(&role) => Ok(()),
        None | Some(Value::Null) => Err(bad(
            format!("`messages[{index}].content` is required for a `{role}` message"),
            format!("messages[{index}].content"),
        )),
        Some(content) => content_shape(content).map_err(|fault| fault.error(&format!("messages[{index}].content"))),
    }
}

/// What is wrong with a content value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentFault {
    /// Neither a string nor an array.
    Shape,
    /// The part at this index is not an object with a string `type`.
    Part(usize),
}

impl ContentFault {
    fn error(self, at: &str) -> ProxyError {
        match self {
            Self::Shape => bad(format!("`{at}` must be a string or an array of content parts"), at.to_owned()),
            Self::Part(part) => bad(
                format!("`{at}[{part}].type` is required: a content part is an object with a string `type`"),
                format!("{at}[{part}].type"),
            ),
        }
    }
}

/// A string, or an array of objects each with a string `type`.
fn content_shape(content: &Value) -> Result<(), ContentFault> {
    match content {
        Value::String(_) => Ok(()),
        Value::Array(parts) => match parts.iter().position(|part| !part.get("type").is_some_and(Value::is_string)) {
            Some(part) => Err(ContentFault::Part(part)),
            None => Ok(()),
        },
        _ => Err(ContentFault::Shape),
    }
}
