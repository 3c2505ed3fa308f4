//! The Gemini and Bedrock formats and the AWS event-stream framing: whatever bytes a provider
//! sends (split anywhere, corrupted, cut short) and whatever JSON its events or answers hold, the
//! decoders and translations answer with hub events, an error event or an error, never a panic;
//! and a valid event stream split at any points decodes to the same messages.

use bytes::Bytes;
use flowgate_common::settings::Provider;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{config, corpus, json_value, mutated_corpus};
use crate::aws::eventstream;
use crate::sse::SseParser;
use crate::translate::{bedrock, gemini};
use crate::upstream::providers::decoder;

/// Every hub event a decoder wrote is an SSE event with JSON data or `[DONE]`.
fn assert_hub_events(chunks: &[Bytes]) {
    let mut parser = SseParser::default();
    for chunk in chunks {
        for event in parser.push(chunk).unwrap() {
            assert!(event.data == "[DONE]" || serde_json::from_str::<Value>(&event.data).is_ok(), "{}", event.data);
        }
    }
}

/// Feeds `bytes` to `provider`'s decoder in pieces cut at `cuts`.
fn decode(provider: Provider, bytes: &[u8], cuts: &[prop::sample::Index]) -> Vec<Bytes> {
    let mut decoder = decoder(provider, "m");
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for point in points.into_iter().chain(std::iter::once(bytes.len())) {
        out.extend(decoder.push(bytes.get(from..point).unwrap_or_default()));
        from = point.max(from);
    }
    out.extend(decoder.finish());
    out
}

/// A nearly valid Converse stream event: a known type with an arbitrary or plausible payload.
fn bedrock_frame() -> impl Strategy<Value = Vec<u8>> {
    let kinds =
        ["messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"];
    let payload = prop_oneof![
        json_value(),
        Just(json!({"contentBlockIndex": 0, "delta": {"text": "hi"}})),
        Just(json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}})),
        Just(json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\""}}})),
        Just(json!({"stopReason": "tool_use"})),
        Just(json!({"usage": {"inputTokens": u64::MAX, "outputTokens": -1}})),
    ];
    let message_type = prop_oneof![4 => Just("event"), 1 => Just("exception")];
    (prop::sample::select(kinds.to_vec()), payload, message_type).prop_map(|(kind, payload, message_type)| {
        eventstream::encode(
            &[(":event-type", kind), (":message-type", message_type), (":exception-type", "throttlingException")],
            payload.to_string().as_bytes(),
        )
        .to_vec()
    })
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn arbitrary_bytes_never_panic_either_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        for provider in [Provider::Gemini, Provider::Bedrock] {
            assert_hub_events(&decode(provider, &bytes, &cuts));
        }
    }

    #[test]
    fn gemini_streams_from_the_corpus_mutated_never_panic(bytes in mutated_corpus("gemini"), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        assert_hub_events(&decode(Provider::Gemini, &bytes, &cuts));
    }

    #[test]
    fn gemini_events_with_arbitrary_json_never_panic(events in prop::collection::vec(json_value(), 0..6)) {
        let wire: String = events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect();
        assert_hub_events(&decode(Provider::Gemini, wire.as_bytes(), &[]));
        for event in &events {
            let _ = gemini::response_to_hub(event, "m");
            let _ = gemini::request_from_hub(event);
            let _ = gemini::embeddings_request(event, "m");
            let _ = gemini::embeddings_response(event, "m", 1);
            let _ = gemini::vertex_embeddings_request(event);
            let _ = gemini::vertex_embeddings_response(event, "m", 1);
            let _ = bedrock::embeddings_request(event, "amazon.titan-embed-text-v2:0");
            let _ = bedrock::embeddings_request(event, "cohere.embed-english-v3");
            let _ = bedrock::embeddings_response(event, "m", Some(1), 1);
            let _ = bedrock::request_from_hub(event);
            let _ = bedrock::response_to_hub(event, "m");
        }
    }

    #[test]
    fn valid_event_streams_split_anywhere_decode_to_the_same_messages(frames in prop::collection::vec(bedrock_frame(), 1..6), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let wire: Vec<u8> = frames.concat();
        let whole = eventstream::Decoder::default().push(&wire).unwrap();
        prop_assert_eq!(whole.len(), frames.len());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut decoder = eventstream::Decoder::default();
        let mut pieces = Vec::new();
        let mut from = 0;
        for point in points.into_iter().chain(std::iter::once(wire.len())) {
            pieces.extend(decoder.push(&wire[from..point]).unwrap());
            from = point;
        }
        prop_assert_eq!(pieces, whole);
        assert_hub_events(&decode(Provider::Bedrock, &wire, &cuts));
    }

    #[test]
    fn corrupted_event_streams_are_refused_or_decoded_never_a_panic(frames in prop::collection::vec(bedrock_frame(), 1..4), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut wire: Vec<u8> = frames.concat();
        for (at, byte) in edits {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let _ = eventstream::Decoder::default().push(&wire);
        assert_hub_events(&decode(Provider::Bedrock, &wire, &[]));
    }
}

#[test]
fn every_gemini_corpus_file_decodes_to_hub_events() {
    for (name, bytes) in corpus("gemini") {
        let out = decode(Provider::Gemini, &bytes, &[]);
        assert!(!out.is_empty(), "{name}");
        assert_hub_events(&out);
    }
}
