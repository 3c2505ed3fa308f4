//! The text of a record made safe to store, once, when its request's record is finished
//! ([`crate::context::AuditGuard`]): much of it comes from the client (the model asked for, the
//! route, the address, the prompt and answer of tenants that store them) or from a provider
//! (error codes). A string is valid UTF-8 by construction, but a NUL (`"\u0000"` in a JSON body)
//! is one too, and PostgreSQL refuses it in any text column; a megabyte-long model name would be
//! stored, indexed and shown as is. So every text field has NUL (and, in the short fields, every
//! control character) replaced by U+FFFD and is cut to a bound, marked where it was cut.
//!
//! What the database still refuses after this (a constraint an operator added, a limit of the
//! engine) is found by the writer, record by record, and moved to the dead-letter file.

use flowgate_contracts::audit::AuditRecord;
use serde_json::Value;

/// Most bytes kept of a short field: ids, route, address, model and deployment names, codes.
pub(crate) const FIELD_CAP: usize = 256;
/// Most bytes kept of the stored prompt and of the stored answer.
pub(crate) const TEXT_CAP: usize = 1 << 20;
/// Most entries kept of `fallbacks` and of `guardrail_actions`.
pub(crate) const LIST_CAP: usize = 64;
/// Deepest nesting kept inside a guardrail action (they are two levels deep).
const JSON_DEPTH: usize = 4;
/// What ends a short field that was cut.
const FIELD_MARK: &str = "…";
/// What ends a prompt or answer that was cut.
const TEXT_MARK: &str = "…[truncated]";

/// Replaces NUL and control characters and bounds the length of every text field of `record`.
pub(crate) fn sanitise(record: &mut AuditRecord) {
    let AuditRecord {
        request_id,
        tenant_id,
        key_id,
        client_ip,
        route,
        model_requested,
        model_used,
        deployment,
        provider,
        error_code,
        fallbacks,
        guardrail_actions,
        prompt,
        response,
        metadata,
        ..
    } = record;
    for field in [request_id, route] {
        short(field);
    }
    for field in [tenant_id, key_id, client_ip, model_requested, model_used, deployment, provider, error_code]
        .into_iter()
        .flatten()
    {
        short(field);
    }
    fallbacks.truncate(LIST_CAP);
    fallbacks.iter_mut().for_each(short);
    guardrail_actions.truncate(LIST_CAP);
    for action in guardrail_actions.iter_mut() {
        bound_json(action, 0);
    }
    // Few entries, short names and values: they come from request headers.
    while metadata.len() > LIST_CAP {
        metadata.pop_last();
    }
    *metadata = std::mem::take(metadata)
        .into_iter()
        .map(|(mut name, mut value)| {
            short(&mut name);
            short(&mut value);
            (name, value)
        })
        .collect();
    for text in [prompt, response].into_iter().flatten() {
        clean(text, TEXT_CAP, TEXT_MARK, |c| c == '\0');
    }
}

/// A short field: no control characters, at most [`FIELD_CAP`] bytes.
fn short(field: &mut String) {
    clean(field, FIELD_CAP, FIELD_MARK, char::is_control);
}

/// Strings inside a JSON value made short; what is nested deeper than [`JSON_DEPTH`] dropped.
fn bound_json(value: &mut Value, depth: usize) {
    if depth >= JSON_DEPTH && (value.is_array() || value.is_object()) {
        *value = Value::Null;
        return;
    }
    match value {
        Value::String(text) => short(text),
        Value::Array(items) => {
            items.truncate(LIST_CAP);
            items.iter_mut().for_each(|item| bound_json(item, depth + 1));
        }
        Value::Object(map) => {
            if map.len() > LIST_CAP {
                let keep: Vec<String> = map.keys().take(LIST_CAP).cloned().collect();
                map.retain(|key, _| keep.contains(key));
            }
            let long_keys: Vec<String> =
                map.keys().filter(|key| key.len() > FIELD_CAP || key.contains(char::is_control)).cloned().collect();
            for key in long_keys {
                if let Some(item) = map.remove(&key) {
                    let mut key = key;
                    short(&mut key);
                    map.insert(key, item);
                }
            }
            map.values_mut().for_each(|item| bound_json(item, depth + 1));
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `text` with every character `bad` says replaced by U+FFFD, cut to at most `cap` bytes (at a
/// character boundary, ending with `mark`) when longer. Untouched, without copying, when clean.
fn clean(text: &mut String, cap: usize, mark: &str, bad: fn(char) -> bool) {
    let dirty = text.contains(bad);
    if !dirty && text.len() <= cap {
        return;
    }
    let mut out = String::with_capacity(text.len().min(cap));
    let mut whole = true;
    for c in text.chars() {
        let c = if bad(c) { char::REPLACEMENT_CHARACTER } else { c };
        if out.len() + c.len_utf8() > cap {
            whole = false;
            break;
        }
        out.push(c);
    }
    if !whole {
        let mut end = cap.saturating_sub(mark.len()).min(out.len());
        while !out.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        out.truncate(end);
        out.push_str(mark);
    }
    *text = out;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_and_control_characters_are_replaced_in_every_short_field() {
        let mut record = AuditRecord {
            request_id: "r\0".into(),
            route: "/v1/chat\ncompletions".into(),
            tenant_id: Some("t\0".into()),
            key_id: Some("k\0".into()),
            client_ip: Some("1.2.3.4\0".into()),
            model_requested: Some("fake-gpt\0x".into()),
            model_used: Some("m\0".into()),
            deployment: Some("d\0".into()),
            provider: Some("p\0".into()),
            error_code: Some("e\u{1b}[31m".into()),
            fallbacks: vec!["f\0".into()],
            guardrail_actions: vec![json!({"guardrail": "g\0", "findings": {"k\0": 1}})],
            prompt: Some("{\"a\":\"line\\nbreak\"}\0".into()),
            response: Some("line\nbreak\0and\ttab".into()),
            ..AuditRecord::default()
        };
        sanitise(&mut record);
        assert_eq!(record.model_requested.as_deref(), Some("fake-gpt\u{FFFD}x"));
        assert_eq!(record.route, "/v1/chat\u{FFFD}completions");
        assert_eq!(record.error_code.as_deref(), Some("e\u{FFFD}[31m"));
        assert_eq!(record.guardrail_actions[0], json!({"guardrail": "g\u{FFFD}", "findings": {"k\u{FFFD}": 1}}));
        // Stored texts keep their line breaks and tabs; only NUL goes.
        assert_eq!(record.response.as_deref(), Some("line\nbreak\u{FFFD}and\ttab"));
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains("\\u0000"), "{text}");
    }

    #[test]
    fn long_fields_are_cut_at_a_character_boundary_and_marked() {
        let mut record = AuditRecord {
            model_requested: Some("é".repeat(10_000)),
            route: "x".repeat(FIELD_CAP),
            prompt: Some("ü".repeat(TEXT_CAP)),
            response: Some("\0".repeat(TEXT_CAP)),
            fallbacks: vec!["m".into(); 1000],
            ..AuditRecord::default()
        };
        sanitise(&mut record);
        let model = record.model_requested.unwrap();
        assert!(model.len() <= FIELD_CAP && model.ends_with(FIELD_MARK), "{}", model.len());
        assert!(model.starts_with("éé"));
        assert_eq!(record.route, "x".repeat(FIELD_CAP), "a field at the bound is kept whole");
        let prompt = record.prompt.unwrap();
        assert!(prompt.len() <= TEXT_CAP && prompt.ends_with(TEXT_MARK));
        // Replacing a NUL (1 byte) by U+FFFD (3 bytes) cannot take a text past its bound.
        let response = record.response.unwrap();
        assert!(response.len() <= TEXT_CAP && response.ends_with(TEXT_MARK));
        assert_eq!(record.fallbacks.len(), LIST_CAP);
    }

    #[test]
    fn a_clean_record_is_unchanged() {
        let record = AuditRecord {
            request_id: "0193-abc".into(),
            route: "/v1/chat/completions".into(),
            model_requested: Some("gpt-4o-mini".into()),
            client_ip: Some("2001:db8::1".into()),
            guardrail_actions: vec![json!({"guardrail": "pii", "stage": "pre_call", "findings": {"email": 2}})],
            prompt: Some("{\"messages\":[]}".into()),
            response: Some("Hello,\nworld".into()),
            ..AuditRecord::default()
        };
        let mut sanitised = record.clone();
        sanitise(&mut sanitised);
        assert_eq!(sanitised, record);
    }

    #[test]
    fn deep_or_wide_guardrail_actions_are_bounded() {
        let mut deep = json!("x");
        for _ in 0..10 {
            deep = json!([deep]);
        }
        let wide: serde_json::Map<String, Value> = (0..1000).map(|i| (format!("k{i}"), json!(i))).collect();
        let mut record = AuditRecord {
            guardrail_actions: vec![deep, Value::Object(wide), json!({"k".repeat(1000): "v".repeat(1000)})],
            ..AuditRecord::default()
        };
        sanitise(&mut record);
        assert!(record.guardrail_actions[0].to_string().len() < 32, "{}", record.guardrail_actions[0]);
        assert_eq!(record.guardrail_actions[1].as_object().unwrap().len(), LIST_CAP);
        assert!(record.guardrail_actions[2].to_string().len() < 2 * FIELD_CAP + 16);
    }
}
