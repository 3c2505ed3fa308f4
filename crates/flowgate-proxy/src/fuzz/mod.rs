//! Property tests ("fuzz targets", run by `cargo test`) for every parser that takes bytes from a
//! client or an upstream: request bodies through the parse stage, the codecs' `request_fields`
//! and the translations both ways (`requests`); upstream answers (`requests` too); SSE framing
//! (`sse`); the stream transforms and the stream guard's readers on arbitrary event sequences
//! (`streams`); the Gemini and Bedrock formats and the AWS event-stream framing (`providers`); the MCP
//! gateway's JSON-RPC messages (`mcp`). None may panic: each answers Ok or a `ProxyError` in the caller's format.
//!
//! Inputs are generated (arbitrary JSON biased towards the field names the codecs read, nearly
//! valid requests and events, arbitrary bytes) and mutated from the corpus checked in under
//! `fuzz-corpus/` (every corpus file is also run as it is). Case counts are bounded so the whole
//! set runs in seconds in a debug build; `PROPTEST_CASES` raises them for a longer run.

mod mcp;
mod providers;
mod requests;
mod sse;
mod streams;

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value, json};

/// Cases per property: `PROPTEST_CASES` when set, else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// The files of `fuzz-corpus/<kind>`, as bytes, by name.
fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus").join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

/// A corpus file of `kind` with a few random edits (byte changed, inserted or removed, tail cut).
fn mutated_corpus(kind: &str) -> impl Strategy<Value = Vec<u8>> + use<> {
    let seeds: Vec<Vec<u8>> = corpus(kind).into_iter().map(|(_, bytes)| bytes).collect();
    (prop::sample::select(seeds), prop::collection::vec((any::<prop::sample::Index>(), 0u8..8, any::<u8>()), 0..6))
        .prop_map(|(mut bytes, edits)| {
            for (at, edit, byte) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match edit {
                    0..=2 => bytes[i] = byte,
                    3 | 4 => bytes.insert(i, byte),
                    5 | 6 => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        })
}

/// Object keys the codecs read, so generated documents reach their deep paths.
const KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "best_of",
    "temperature",
    "top_p",
    "top_k",
    "stream",
    "stream_options",
    "include_usage",
    "system",
    "tools",
    "function",
    "name",
    "description",
    "parameters",
    "input_schema",
    "properties",
    "tool_calls",
    "tool_call_id",
    "tool_use_id",
    "arguments",
    "input",
    "prompt",
    "id",
    "tool_choice",
    "stop",
    "stop_sequences",
    "image_url",
    "url",
    "source",
    "media_type",
    "data",
    "metadata",
    "user_id",
    "user",
    "parallel_tool_calls",
    "disable_parallel_tool_use",
    "guardrails",
    "index",
    "delta",
    "choices",
    "message",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "finish_reason",
    "stop_reason",
    "content_block",
    "partial_json",
    "error",
    "contents",
    "parts",
    "candidates",
    "functionCall",
    "args",
    "usageMetadata",
    "promptTokenCount",
    "candidatesTokenCount",
    "promptFeedback",
    "blockReason",
    "finishReason",
    "output",
    "toolUse",
    "toolUseId",
    "stopReason",
    "contentBlockIndex",
    "start",
    "inputTokens",
    "outputTokens",
];

/// String values the codecs branch on.
const WORDS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "function",
    "text",
    "image",
    "image_url",
    "tool_use",
    "tool_result",
    "base64",
    "url",
    "auto",
    "none",
    "required",
    "any",
    "object",
    "string",
    "data:image/png;base64,AAAA",
    "data:;base64,",
    "{\"a\":1}",
    "{",
    "[DONE]",
    "",
    "message_start",
    "text_delta",
    "input_json_delta",
    "end_turn",
    "max_tokens",
    "tool_calls",
    "stop",
    "length",
    "content_filter",
];

/// A JSON leaf: null, booleans, numbers across the whole range, strings the codecs know or not.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..8).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => "[a-z_]{1,8}"]
}

/// Any JSON value, a few levels deep, with keys the codecs read.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Token counts as an upstream may send them: small, huge, or not numbers at all.
fn token_count() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..100).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!("7")),
    ]
}

/// A `usage` object of either format.
fn usage() -> impl Strategy<Value = Value> {
    (token_count(), token_count(), token_count(), token_count()).prop_map(|(a, b, c, d)| {
        json!({
            "prompt_tokens": a, "completion_tokens": b,
            "input_tokens": a, "output_tokens": b, "cache_read_input_tokens": c, "cache_creation_input_tokens": d,
        })
    })
}

/// Sets `field` on `object` (when it is one).
fn set(object: &mut Value, field: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert(field.to_owned(), value);
    }
}
