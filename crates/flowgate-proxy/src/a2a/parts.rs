//! Where an A2A document's texts are: the text parts of every message, task history, status
//! message and artifact in it (`parts[i].text`, in A2A 0.3 with `kind: "text"`, in 1.0 as a
//! part with a `text` member), as JSON pointers the guardrails check and rewrite.

use serde_json::Value;

use crate::translate::{TextKind, TextPointer};

/// Deepest nesting searched (a task's history of messages sits a few levels down).
const MAX_DEPTH: usize = 16;

/// Escapes one JSON-pointer token.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The role a message's texts are checked as: the caller's (`user`) or the agent's (`assistant`).
fn role_of(message: &serde_json::Map<String, Value>, default: &str) -> String {
    match message.get("role").and_then(Value::as_str) {
        Some("user" | "ROLE_USER") => "user".to_owned(),
        Some("agent" | "ROLE_AGENT") => "assistant".to_owned(),
        _ => default.to_owned(),
    }
}

/// Every text part under `document`, with its role (`default_role` when the owner names none).
pub(crate) fn text_pointers(document: &Value, default_role: &str) -> Vec<TextPointer> {
    let mut out = Vec::new();
    walk(document, String::new(), default_role, 0, &mut out);
    out
}

fn walk(value: &Value, at: String, role: &str, depth: usize, out: &mut Vec<TextPointer>) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(object) => {
            let role = role_of(object, role);
            if let Some(Value::Array(parts)) = object.get("parts") {
                for (index, part) in parts.iter().enumerate() {
                    let is_text = part.get("text").is_some_and(Value::is_string)
                        && part.get("kind").is_none_or(|kind| kind.as_str() == Some("text"));
                    if is_text {
                        out.push(TextPointer {
                            pointer: format!("{at}/parts/{index}/text"),
                            role: role.clone(),
                            kind: TextKind::Text,
                        });
                    }
                }
            }
            for (key, child) in object {
                if key != "parts" && (child.is_object() || child.is_array()) {
                    walk(child, format!("{at}/{}", token(key)), &role, depth + 1, out);
                }
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                if child.is_object() || child.is_array() {
                    walk(child, format!("{at}/{index}"), role, depth + 1, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn text_parts_of_both_generations_are_found_with_their_roles() {
        let legacy = json!({"message": {"role": "user", "parts": [
            {"kind": "text", "text": "hello"}, {"kind": "file", "file": {"uri": "x"}}, {"kind": "data", "data": {"text": "no"}},
        ]}});
        let found: Vec<(String, String)> =
            text_pointers(&legacy, "user").into_iter().map(|p| (p.pointer, p.role)).collect();
        assert_eq!(found, [("/message/parts/0/text".to_owned(), "user".to_owned())]);

        let task = json!({"result": {"task": {"history": [{"role": "ROLE_USER", "parts": [{"text": "q"}]}],
            "artifacts": [{"parts": [{"text": "a"}]}], "status": {"message": {"role": "ROLE_AGENT", "parts": [{"text": "s"}]}}}}});
        let mut found: Vec<(String, String)> =
            text_pointers(&task, "assistant").into_iter().map(|p| (p.pointer, p.role)).collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("/result/task/artifacts/0/parts/0/text".to_owned(), "assistant".to_owned()),
                ("/result/task/history/0/parts/0/text".to_owned(), "user".to_owned()),
                ("/result/task/status/message/parts/0/text".to_owned(), "assistant".to_owned()),
            ]
        );
        let odd = json!({"a/b~c": {"parts": [{"text": "t"}]}});
        let pointer = &text_pointers(&odd, "user")[0].pointer;
        assert_eq!(odd.pointer(pointer), Some(&json!("t")));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(&["parts", "text", "kind", "role", "message", "a/b", "~"][..]),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Every pointer found leads to a string in the document, on any document.
        #[test]
        fn every_pointer_leads_to_a_text(document in value()) {
            for pointer in text_pointers(&document, "user") {
                prop_assert!(document.pointer(&pointer.pointer).is_some_and(Value::is_string), "{}", pointer.pointer);
            }
        }
    }
}
