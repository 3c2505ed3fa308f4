//! The stream transforms (passthrough, to and from the hub, the chain) and the stream guard's
//! readers on arbitrary event sequences: no panic, and what they write is whole SSE events.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{config, json_value, usage};
use crate::sse::{SseEvent, SseParser};
use crate::translate::{self, ApiFormat, Chain, StreamTransform};

const EVENT_NAMES: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
    "ping",
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
];

fn small_or_any() -> impl Strategy<Value = Value> {
    prop_oneof![(0u64..4).prop_map(Value::from), any::<u64>().prop_map(Value::from), json_value()]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof!["[^\r]{0,12}".prop_map(Value::String), json_value()]
}

/// An Anthropic event body, plausible or not.
fn anthropic_event() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(EVENT_NAMES),
        small_or_any(),
        prop::sample::select(vec!["text_delta", "input_json_delta", "thinking_delta", "text", "tool_use"]),
        text(),
        usage(),
        json_value(),
    )
        .prop_map(|(kind, index, delta_type, text, usage, stop)| {
            json!({
                "type": kind, "index": index,
                "delta": {"type": delta_type, "text": text, "partial_json": text, "stop_reason": stop},
                "content_block": {"type": delta_type, "id": "toolu_1", "name": "f", "text": ""},
                "message": {"id": "msg_1", "model": "m", "usage": usage},
                "usage": usage,
                "error": {"type": "overloaded_error", "message": text},
            })
        })
}

/// An OpenAI chunk, plausible or not.
fn openai_chunk() -> impl Strategy<Value = Value> {
    (text(), small_or_any(), text(), prop::option::of(usage()), json_value(), any::<bool>(), any::<bool>()).prop_map(
        |(content, tool_index, arguments, usage, finish, no_choices, error)| {
            let mut chunk = json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 0, "delta": {
                    "content": content,
                    "tool_calls": [{"index": tool_index, "id": "call_1", "function": {"name": "f", "arguments": arguments}}],
                }, "finish_reason": finish}],
                "usage": usage,
            });
            if no_choices {
                chunk["choices"] = json!([]);
            }
            if error {
                chunk["error"] = json!({"message": "upstream says no"});
            }
            chunk
        },
    )
}

/// A Responses event body, plausible or not.
fn responses_event() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(EVENT_NAMES),
        small_or_any(),
        prop::sample::select(vec!["message", "function_call", "reasoning", "web_search_call"]),
        text(),
        usage(),
        json_value(),
    )
        .prop_map(|(kind, index, item_type, text, usage, anything)| {
            json!({
                "type": kind, "sequence_number": index, "output_index": index, "content_index": 0, "item_id": "x",
                "delta": text, "text": text, "arguments": text,
                "item": {"type": item_type, "id": "x", "call_id": "c", "name": "f", "arguments": text,
                    "content": [{"type": "output_text", "text": text}]},
                "part": {"type": "output_text", "text": text},
                "response": {"id": "resp_1", "model": "m", "usage": usage, "output": [
                    {"type": item_type, "content": [{"type": "output_text", "text": text}], "arguments": text}],
                    "incomplete_details": anything, "error": anything},
                "code": anything, "message": text,
            })
        })
}

/// An event as the SSE parser hands it over (no `\r` anywhere, no `\n` in the name).
fn event() -> impl Strategy<Value = SseEvent> {
    let data = prop_oneof![
        Just("[DONE]".to_owned()),
        "[^\r]{0,16}",
        json_value().prop_map(|v| v.to_string()),
        anthropic_event().prop_map(|v| v.to_string()),
        openai_chunk().prop_map(|v| v.to_string()),
        responses_event().prop_map(|v| v.to_string()),
    ];
    let name = prop_oneof![
        Just(None),
        prop::sample::select(EVENT_NAMES).prop_map(|n| Some(n.to_owned())),
        "[^\r\n]{0,8}".prop_map(Some),
    ];
    (name, data).prop_map(|(event, data)| SseEvent { event, data })
}

/// Whatever `transform` writes for `events`, checked to be whole SSE events.
fn run(transform: &mut dyn StreamTransform, events: &[SseEvent]) -> Vec<SseEvent> {
    let mut out: Vec<Bytes> = Vec::new();
    for event in events {
        out.extend(transform.on_event(event));
    }
    out.extend(transform.finish());
    let _usage = transform.usage();
    let _completed = transform.completed();
    let mut parser = SseParser::default();
    let mut parsed = Vec::new();
    for chunk in &out {
        assert!(chunk.ends_with(b"\n\n"), "an event is written whole: {chunk:?}");
        parsed.extend(parser.push(chunk).unwrap());
    }
    assert_eq!(parser.finish(), None, "nothing left unterminated");
    parsed
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn every_transform_takes_any_event_sequence(events in prop::collection::vec(event(), 0..24)) {
        let formats = [ApiFormat::OpenAi, ApiFormat::Anthropic, ApiFormat::Responses];
        for from in formats {
            for to in formats {
                for include_usage in [false, true] {
                    run(translate::stream(from, to, "m", include_usage).as_mut(), &events);
                }
            }
            let codec = from.codec();
            let mut chain = Chain::new(codec.stream_to_hub("m", true), codec.stream_from_hub("m"));
            run(&mut chain, &events);

            // The stream guard's reader, and the text event it writes at any point.
            let mut reader = codec.text_events();
            for event in &events {
                let value = serde_json::from_str::<Value>(&event.data).ok();
                let role = reader.classify(event, value.as_ref());
                if let (Some(pointer), Some(value)) = (role.text, value.as_ref()) {
                    let _text = value.pointer(pointer);
                }
                let written = reader.text_event("held");
                prop_assert!(written.ends_with(b"\n\n"));
                let written = reader.tool_arguments_event(0, "{");
                prop_assert!(written.ends_with(b"\n\n"));
                if let Some(mut value) = value.clone() {
                    reader.rewrite(&mut value);
                }
                let _delta = value.as_ref().and_then(|v| codec.delta_pointer(v));
            }
        }
    }
}
