//! A deployment's default request parameters (LiteLLM's `temperature`, `max_tokens`, `stop`, ...
//! written in `litellm_params`), merged under the client's own values: a parameter the client
//! sent is never changed. Defaults are written in the hub's names (OpenAI Chat Completions); a
//! target of another format gets them through its codec.

use serde_json::{Map, Value};

use super::{ApiFormat, request};
use crate::error::ProxyError;

/// Parameters that say the same thing: a client that sent one of them gets no default for any.
const SAME_MEANING: &[&[&str]] = &[&["max_tokens", "max_completion_tokens"]];

/// [`request`], with `defaults` merged under the client's values.
pub(crate) fn request_with_defaults(
    from: ApiFormat,
    to: ApiFormat,
    body: &Value,
    upstream_model: &str,
    defaults: &Map<String, Value>,
) -> Result<Value, ProxyError> {
    if defaults.is_empty() {
        return request(from, to, body, upstream_model);
    }
    if from.is_hub() {
        let mut merged = body.clone();
        merge_under(&mut merged, defaults);
        return request(from, to, &merged, upstream_model);
    }
    let mut out = request(from, to, body, upstream_model)?;
    if to.is_hub() {
        merge_under(&mut out, defaults);
    } else {
        merge_under(&mut out, &in_format(to, defaults, upstream_model)?);
    }
    Ok(out)
}

/// Sets each default the body does not have (nor a parameter of the same meaning).
fn merge_under(body: &mut Value, defaults: &Map<String, Value>) {
    let Some(object) = body.as_object_mut() else { return };
    for (name, value) in defaults {
        let group = SAME_MEANING.iter().find(|group| group.contains(&name.as_str())).copied().unwrap_or_default();
        let sent = object.contains_key(name) || group.iter().any(|other| object.contains_key(*other));
        if !sent {
            object.insert(name.clone(), value.clone());
        }
    }
}

/// The defaults in the names of `format`: a hub request made of them alone, translated by the
/// format's codec, without its conversation.
fn in_format(format: ApiFormat, defaults: &Map<String, Value>, model: &str) -> Result<Map<String, Value>, ProxyError> {
    let mut hub = defaults.clone();
    hub.insert("model".to_owned(), Value::String(model.to_owned()));
    hub.insert("messages".to_owned(), serde_json::json!([{"role": "user", "content": "-"}]));
    let translated = format.codec().request_from_hub(&Value::Object(hub), model)?;
    let mut out = translated.as_object().cloned().unwrap_or_default();
    for conversation in ["model", "messages", "system", "contents", "input"] {
        out.remove(conversation);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn defaults() -> Map<String, Value> {
        json!({"temperature": 0.2, "max_tokens": 64, "stop": ["END"]}).as_object().cloned().unwrap()
    }

    #[test]
    fn the_clients_values_win_and_the_rest_are_filled_in() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.9});
        let out = request_with_defaults(ApiFormat::OpenAi, ApiFormat::OpenAi, &body, "up", &defaults()).unwrap();
        assert_eq!(out["temperature"], 0.9);
        assert_eq!(out["max_tokens"], 64);
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["model"], "up");
    }

    #[test]
    fn a_client_limit_under_the_other_name_keeps_the_default_out() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 5});
        let out = request_with_defaults(ApiFormat::OpenAi, ApiFormat::OpenAi, &body, "up", &defaults()).unwrap();
        assert!(out.get("max_tokens").is_none(), "{out}");
        assert_eq!(out["max_completion_tokens"], 5);
    }

    #[test]
    fn an_anthropic_upstream_gets_the_defaults_in_its_own_names() {
        let body = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        let out = request_with_defaults(ApiFormat::Anthropic, ApiFormat::Anthropic, &body, "up", &defaults()).unwrap();
        assert_eq!(out["max_tokens"], 10, "the client's limit stays");
        assert_eq!(out["temperature"], 0.2);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["messages"], body["messages"], "the conversation is the client's");
        let from_openai = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let out =
            request_with_defaults(ApiFormat::OpenAi, ApiFormat::Anthropic, &from_openai, "up", &defaults()).unwrap();
        assert_eq!(out["max_tokens"], 64);
        assert_eq!(out["stop_sequences"], json!(["END"]));
    }
}
