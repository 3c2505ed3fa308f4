//! The MCP gateway's JSON-RPC parser (`mcp::jsonrpc::parse`) on client bytes: it never panics,
//! accepts every valid corpus message and refuses every invalid one, and an accepted request keeps
//! its id and method exactly; `canonical` gives equal text for objects whose members differ only
//! in order, and its text reads back as the same value.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{config, corpus, json_value, mutated_corpus};
use crate::mcp::jsonrpc::{self, Message};

#[test]
fn corpus_messages_are_accepted_or_refused_as_named() {
    for (name, bytes) in corpus("mcp") {
        let parsed = jsonrpc::parse(&bytes);
        assert_eq!(parsed.is_err(), name.contains("invalid"), "{name}: {parsed:?}");
    }
}

/// A method name, known or not.
fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&["initialize", "ping", "tools/list", "tools/call", "notifications/initialized"][..])
            .prop_map(str::to_owned),
        "\\PC{0,16}",
    ]
}

/// A valid id.
fn id() -> impl Strategy<Value = Value> {
    prop_oneof![any::<i64>().prop_map(Value::from), "\\PC{0,12}".prop_map(Value::String)]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn mutated_messages_never_panic(bytes in mutated_corpus("mcp")) {
        let _ = jsonrpc::parse(&bytes);
    }

    #[test]
    fn arbitrary_bytes_and_values_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), value in json_value()) {
        let _ = jsonrpc::parse(&bytes);
        let _ = jsonrpc::parse(value.to_string().as_bytes());
    }

    #[test]
    fn a_valid_request_keeps_its_id_method_and_params(id in id(), method in method(), params in prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..4)) {
        let params: Map<String, Value> = params.into_iter().collect();
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let parsed = jsonrpc::parse(body.to_string().as_bytes());
        let Ok(Message::Request { id: read_id, method: read_method, params: read_params }) = parsed else {
            return Err(TestCaseError::fail(format!("refused: {parsed:?}")));
        };
        prop_assert_eq!(read_id.to_value(), id);
        prop_assert_eq!(read_method, method);
        // Compared with the params as they read back from text (serde_json's float parsing is
        // not exact to the last bit without its `float_roundtrip` feature).
        let expected: Value = serde_json::from_str(&body.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(Value::Object(read_params), expected["params"].clone());
    }

    #[test]
    fn canonical_text_ignores_member_order_and_reads_back(value in json_value()) {
        fn reversed(value: &Value) -> Value {
            match value {
                Value::Object(map) => Value::Object(map.iter().rev().map(|(k, v)| (k.clone(), reversed(v))).collect()),
                Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
                other => other.clone(),
            }
        }
        let text = jsonrpc::canonical(&value);
        prop_assert_eq!(&text, &jsonrpc::canonical(&reversed(&value)));
        let back: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected: Value = serde_json::from_str(&value.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, expected);
    }
}
