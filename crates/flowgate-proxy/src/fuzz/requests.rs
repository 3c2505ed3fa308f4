//! Client request bodies (and upstream answers): bytes → the parse stage → each codec's
//! `request_fields` → translation to every format, and whole answers back.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{config, corpus, json_value, key, mutated_corpus, set, usage};
use crate::error::ProxyError;
use crate::mock::MockParams;
use crate::pipeline::{answer, parse};
use crate::translate::{self, ApiFormat, Endpoint};

const FORMATS: [ApiFormat; 3] = [ApiFormat::OpenAi, ApiFormat::Anthropic, ApiFormat::Responses];
const ENDPOINTS: [Endpoint; 3] = [Endpoint::Chat, Endpoint::Completions, Endpoint::Embeddings];

/// A refusal is a 400 that names its parameter when it can.
fn assert_bad_request(error: &ProxyError, body: &Value) {
    assert!(matches!(error, ProxyError::BadRequest { .. }), "{error:?} for {body}");
    for format in FORMATS {
        // The caller's error body renders for any refusal.
        assert!(format.codec().error_body(error).is_object());
    }
}

/// Everything the pipeline does with a client body before it is sent: no panic, only Ok or a 400.
fn exercise_body(body: &Value) {
    for format in FORMATS {
        let codec = format.codec();
        for endpoint in ENDPOINTS {
            if let Err(error) = codec.request_fields(endpoint, body) {
                assert_bad_request(&error, body);
            }
        }
        for text in codec.prompt_pointers(body) {
            let found = body.pointer(&text.pointer);
            let usable = match text.kind {
                crate::translate::TextKind::Text => found.is_some_and(Value::is_string),
                crate::translate::TextKind::ToolArguments => found.is_some(),
            };
            assert!(usable, "{} in {body}", text.pointer);
        }
        let _document = codec.prompt_document(body);
        let _answer = codec.mock_answer(body, &MockParams::default());
        for target in FORMATS {
            match translate::request(format, target, body, "up") {
                Ok(out) => {
                    if body.is_object() {
                        assert_eq!(out["model"], "up", "{format:?} → {target:?}: {out}");
                    }
                    // The translated request is itself readable by the target's codec.
                    let _fields = target.codec().request_fields(Endpoint::Chat, &out);
                    let _back = translate::request(target, format, &out, "again");
                }
                Err(error) => assert_bad_request(&error, body),
            }
        }
    }
}

/// A content part of either format, well-formed or not.
fn part() -> impl Strategy<Value = Value> {
    prop_oneof![
        "\\PC{0,8}".prop_map(|text| json!({"type": "text", "text": text})),
        Just(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})),
        Just(json!({"type": "image_url", "image_url": {"url": "https://example.com/x.png"}})),
        Just(json!({"type": "image_url"})),
        Just(json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}})),
        Just(json!({"type": "image", "source": {"type": "url", "url": 7}})),
        json_value().prop_map(|input| json!({"type": "tool_use", "id": "toolu_1", "name": "f", "input": input})),
        json_value().prop_map(|content| json!({"type": "tool_result", "tool_use_id": "t", "content": content})),
        json_value(),
    ]
}

/// A message `content`: a string, parts, or anything.
fn content() -> impl Strategy<Value = Value> {
    prop_oneof![
        "\\PC{0,12}".prop_map(Value::String),
        prop::collection::vec(part(), 0..4).prop_map(Value::Array),
        Just(Value::Null),
        json_value(),
    ]
}

/// OpenAI tool calls with arguments that are JSON objects, other JSON, or not JSON.
fn tool_calls() -> impl Strategy<Value = Value> {
    let arguments = prop_oneof![
        prop::sample::select(vec!["{}", "{\"a\":1}", "", "  ", "not json", "[1]", "null", "{\"a\":"])
            .prop_map(str::to_owned),
        "\\PC{0,12}",
    ];
    prop::collection::vec(
        (arguments, prop::option::of(json_value())).prop_map(
            |(arguments, id)| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": arguments}}),
        ),
        0..3,
    )
    .prop_map(Value::Array)
}

/// A conversation turn, well-formed or not.
fn message() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        prop::sample::select(vec!["user", "assistant", "system", "developer", "tool", "function", "wizard"])
            .prop_map(Value::from),
        json_value(),
    ];
    (role, content(), prop::option::of(tool_calls()), prop::option::of(json_value()), any::<bool>()).prop_map(
        |(role, content, calls, call_id, drop_content)| {
            let mut message = json!({"role": role, "content": content});
            if drop_content {
                set(&mut message, "content", Value::Null);
            }
            if let Some(calls) = calls {
                set(&mut message, "tool_calls", calls);
            }
            if let Some(id) = call_id {
                set(&mut message, "tool_call_id", id);
            }
            message
        },
    )
}

/// Tools and tool choices of either format.
fn tooling() -> impl Strategy<Value = Vec<(String, Value)>> {
    let tool = prop_oneof![
        json_value()
            .prop_map(|parameters| json!({"type": "function", "function": {"name": "f", "parameters": parameters}})),
        json_value().prop_map(|schema| json!({"name": "f", "input_schema": schema, "description": "d"})),
        json_value(),
    ];
    let choice = prop_oneof![
        prop::sample::select(vec!["auto", "none", "required"]).prop_map(Value::from),
        Just(json!({"type": "function", "function": {"name": "f"}})),
        Just(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})),
        Just(json!({"type": "any"})),
        json_value(),
    ];
    (prop::collection::vec(tool, 0..3), prop::option::of(choice), prop::option::of(any::<bool>())).prop_map(
        |(tools, choice, parallel)| {
            let mut fields = vec![("tools".to_owned(), Value::Array(tools))];
            if let Some(choice) = choice {
                fields.push(("tool_choice".to_owned(), choice));
            }
            if let Some(parallel) = parallel {
                fields.push(("parallel_tool_calls".to_owned(), Value::Bool(parallel)));
            }
            fields
        },
    )
}

/// A nearly valid chat request of either format: a model and turns, plus fields set to anything.
fn request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(message(), 0..5),
        prop::option::of(tooling()),
        prop::collection::vec((key(), json_value()), 0..4),
        prop::option::of(prop_oneof![(1u64..5000).prop_map(Value::from), json_value()]),
    )
        .prop_map(|(messages, tooling, extra, max_tokens)| {
            let mut body = json!({"model": "m", "messages": messages});
            if let Some(max_tokens) = max_tokens {
                set(&mut body, "max_tokens", max_tokens);
            }
            for (field, value) in tooling.into_iter().flatten().chain(extra) {
                set(&mut body, &field, value);
            }
            body
        })
}

/// A Responses input item, plausible or not: messages with typed parts, function calls and their
/// outputs, reasoning, hosted tools' items, anything.
fn responses_item() -> impl Strategy<Value = Value> {
    let role = prop::sample::select(vec!["user", "assistant", "system", "developer", "wizard"]);
    let part_type =
        prop::sample::select(vec!["input_text", "output_text", "input_image", "input_file", "refusal", "audio"]);
    let parts = prop::collection::vec(
        (part_type, json_value())
            .prop_map(|(kind, value)| json!({"type": kind, "text": value, "image_url": value, "file_id": value})),
        0..3,
    );
    let content = prop_oneof![json_value(), parts.prop_map(Value::Array), "[^\r]{0,12}".prop_map(Value::String)];
    let kind = prop::sample::select(vec![
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "web_search_call",
        "custom_tool_call",
        "item_reference",
    ]);
    (prop::option::of(kind), role, content, json_value(), json_value()).prop_map(|(kind, role, content, arguments, output)| {
        let mut item = json!({"role": role, "content": content, "call_id": "c", "name": "f", "arguments": arguments, "output": output, "id": "x"});
        if let Some(kind) = kind {
            item["type"] = json!(kind);
        }
        item
    })
}

/// A nearly valid Responses request: a model and an input, tools, plus fields set to anything.
fn responses_request() -> impl Strategy<Value = Value> {
    let input = prop_oneof![
        "[^\r]{0,12}".prop_map(Value::String),
        prop::collection::vec(responses_item(), 0..5).prop_map(Value::Array),
        json_value(),
    ];
    let tool_type = prop::sample::select(vec!["function", "web_search", "custom", "file_search"]);
    let tools = prop::collection::vec(
        (tool_type, json_value())
            .prop_map(|(kind, parameters)| json!({"type": kind, "name": "f", "parameters": parameters})),
        0..3,
    );
    (input, prop::option::of(tools), prop::collection::vec((key(), json_value()), 0..4), prop::option::of(json_value()))
        .prop_map(|(input, tools, extra, choice)| {
            let mut body = json!({"model": "m", "input": input});
            if let Some(tools) = tools {
                body["tools"] = Value::Array(tools);
            }
            if let Some(choice) = choice {
                body["tool_choice"] = choice;
            }
            for (field, value) in extra {
                set(&mut body, &field, value);
            }
            body
        })
}

/// A whole answer of either format, well-formed or not.
fn answer_body() -> impl Strategy<Value = Value> {
    let openai = (content(), prop::option::of(tool_calls()), prop::option::of(json_value()), usage()).prop_map(
        |(content, calls, finish, usage)| {
            json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "tool_calls": calls}, "finish_reason": finish}],
                "usage": usage})
        },
    );
    let anthropic = (prop::collection::vec(part(), 0..4), json_value(), usage()).prop_map(|(content, stop, usage)| {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": content,
            "stop_reason": stop, "usage": usage})
    });
    let responses =
        (prop::collection::vec(responses_item(), 0..4), json_value(), usage()).prop_map(|(output, status, usage)| {
            json!({"id": "resp_1", "object": "response", "model": "m", "output": output, "status": status,
            "incomplete_details": {"reason": status}, "usage": usage})
        });
    prop_oneof![openai, anthropic, responses, json_value()]
}

/// An upstream answer's bytes into the client's format: Ok, or the 502 for a body that is not
/// JSON; never a panic.
fn exercise_answer(bytes: &[u8]) {
    for client in FORMATS {
        for upstream in FORMATS {
            match answer::full_body(client, upstream, Bytes::copy_from_slice(bytes)) {
                Ok((out, _usage)) => {
                    let _text = answer::collected_text(client, &out, true);
                }
                Err(error) => assert_eq!(error.code(), "bad_upstream_response"),
            }
        }
    }
}

/// A body's bytes through the parse stage, then everything after it.
fn exercise_bytes(bytes: &[u8]) {
    match parse::json_object(bytes) {
        Ok(body) => exercise_body(&body),
        Err(error) => assert_bad_request(&error, &Value::Null),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_json_value_is_read_or_refused_with_a_400(body in json_value()) {
        exercise_body(&body);
    }

    #[test]
    fn nearly_valid_requests_are_read_or_refused_and_translate_both_ways(body in request()) {
        exercise_body(&body);
    }

    #[test]
    fn nearly_valid_responses_requests_are_read_or_refused_and_translate(body in responses_request()) {
        exercise_body(&body);
    }

    #[test]
    fn any_bytes_through_the_parse_stage(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        exercise_bytes(&bytes);
    }

    #[test]
    fn mutated_corpus_requests_through_the_parse_stage(bytes in mutated_corpus("requests")) {
        exercise_bytes(&bytes);
    }

    #[test]
    fn serialised_requests_with_edits_through_the_parse_stage(
        body in request(),
        cut in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = body.to_string().into_bytes();
        exercise_bytes(&bytes);
        let at = cut.index(bytes.len());
        bytes[at] = byte;
        exercise_bytes(&bytes);
        bytes.truncate(at);
        exercise_bytes(&bytes);
    }

    #[test]
    fn upstream_answers_translate_or_are_a_502(answer in answer_body(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        exercise_answer(answer.to_string().as_bytes());
        exercise_answer(&bytes);
        crate::translate::responses::response::assert_readings_agree(answer.to_string().as_bytes());
        crate::translate::responses::response::assert_readings_agree(&bytes);
        for client in FORMATS {
            let _hub = client.codec().response_to_hub(&answer);
            let _back = client.codec().response_from_hub(&answer);
            let _pointers = client.codec().answer_pointers(&answer);
        }
    }
}

/// Every corpus request, as it is, through every parser.
#[test]
fn the_request_corpus_parses_without_panicking() {
    for (name, bytes) in corpus("requests") {
        exercise_bytes(&bytes);
        // The corpus holds valid requests of each format: they are read, not refused.
        let body = parse::json_object(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let format = if name.starts_with("anthropic") {
            ApiFormat::Anthropic
        } else if name.starts_with("responses") {
            ApiFormat::Responses
        } else {
            ApiFormat::OpenAi
        };
        if !name.contains("invalid") {
            format.codec().request_fields(Endpoint::Chat, &body).unwrap_or_else(|error| panic!("{name}: {error}"));
        }
    }
}
