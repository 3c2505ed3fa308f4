//! The codec contract: what every format's codec must do, checked for each format against the
//! codec's own mock answers, plus each format's specific cases. A new format adds a module here
//! that calls [`contract`].

use bytes::Bytes;
use serde_json::{Value, json};

use super::*;
use crate::mock::{MockAnswer, MockParams};
use crate::sse::SseParser;

fn events(chunks: &[Bytes]) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    chunks.iter().flat_map(|chunk| parser.push(chunk).unwrap()).collect()
}

/// The text a stream of `codec`'s format carries, read through its delta pointer.
fn streamed_text(codec: &dyn Codec, events: &[SseEvent]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|v| codec.delta_pointer(&v).and_then(|p| v.pointer(p)).and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The text of a whole answer of `codec`'s format, read through its answer pointers.
fn answer_text(codec: &dyn Codec, answer: &Value) -> String {
    codec.answer_pointers(answer).iter().filter_map(|p| answer.pointer(p).and_then(Value::as_str)).collect()
}

/// Every format, as upstream and as client.
const FORMATS: [ApiFormat; 3] = [ApiFormat::OpenAi, ApiFormat::Anthropic, ApiFormat::Responses];

/// The arguments of the tool calls of a whole answer of `codec`'s format, read through its
/// pointers, as JSON.
fn tool_arguments(codec: &dyn Codec, answer: &Value) -> Vec<Value> {
    codec
        .tool_argument_pointers(answer)
        .iter()
        .filter_map(|p| answer.pointer(p))
        .map(|v| v.as_str().map_or_else(|| v.clone(), |s| serde_json::from_str(s).unwrap()))
        .collect()
}

/// The arguments a stream of `codec`'s format carries, per call, read by its stream guard reader.
fn streamed_arguments(codec: &dyn Codec, events: &[SseEvent]) -> std::collections::BTreeMap<u64, String> {
    let mut reader = codec.text_events();
    let mut calls = std::collections::BTreeMap::<u64, String>::new();
    for event in events {
        let value = serde_json::from_str::<Value>(&event.data).ok();
        let role = reader.classify(event, value.as_ref());
        for (call, pointer) in role.tool_arguments {
            let fragment = value.as_ref().and_then(|v| v.pointer(&pointer)).and_then(Value::as_str).unwrap();
            calls.entry(call).or_default().push_str(fragment);
        }
    }
    calls
}

/// Runs every stream event through `transform`, parsing what it writes.
fn run(transform: &mut dyn StreamTransform, events: &[SseEvent]) -> Vec<SseEvent> {
    let mut out = Vec::new();
    for event in events {
        out.extend(transform.on_event(event));
    }
    out.extend(transform.finish());
    self::events(&out)
}

/// `body` is refused with a 400 that names `param`, in `param` and in the message (an Anthropic
/// error body carries only the message).
fn assert_rejected(codec: &dyn Codec, body: &Value, param: &str) {
    let error = codec.request_fields(Endpoint::Chat, body).unwrap_err();
    assert!(matches!(error, ProxyError::BadRequest { .. }), "{error:?}");
    assert_eq!(error.param(), Some(param), "{body}");
    assert!(error.to_string().contains(param), "{error}");
}

/// `request` with `field` set to `value`.
fn with(request: &Value, field: &str, value: Value) -> Value {
    let mut body = request.clone();
    body[field] = value;
    body
}

/// The field that holds a request's conversation in `format` (`messages`, or Responses' `input`).
fn conversation(format: ApiFormat) -> &'static str {
    if format == ApiFormat::Responses { "input" } else { "messages" }
}

/// `request` with `message` appended to its conversation (in `messages`, or `input`).
fn with_message(request: &Value, message: Value) -> (Value, usize) {
    let mut body = request.clone();
    let field = if body.get("input").is_some_and(Value::is_array) { "input" } else { "messages" };
    let messages = body[field].as_array_mut().unwrap();
    messages.push(message);
    let index = messages.len() - 1;
    (body, index)
}

/// The checks every codec makes on the fields the gateway knows, before anything is forwarded.
fn validation_contract(format: ApiFormat, request: &Value) {
    let codec = format.codec();
    let messages = conversation(format);
    for bad in [json!(0), json!(-3), json!("12"), json!(1.5), json!(true), json!({})] {
        assert_rejected(codec, &with(request, "max_tokens", bad), "max_tokens");
    }
    for bad in [json!(-0.1), json!("hot"), json!(5), json!([1])] {
        assert_rejected(codec, &with(request, "temperature", bad), "temperature");
    }
    for bad in [json!(1.5), json!(-1), json!("x")] {
        assert_rejected(codec, &with(request, "top_p", bad), "top_p");
    }
    for (field, edge) in
        [("max_tokens", json!(1)), ("temperature", json!(0)), ("top_p", json!(1)), ("top_p", json!(0.5))]
    {
        codec.request_fields(Endpoint::Chat, &with(request, field, edge)).unwrap();
    }
    for field in ["temperature", "top_p"] {
        codec.request_fields(Endpoint::Chat, &with(request, field, Value::Null)).unwrap();
    }

    let (body, i) = with_message(request, json!(7));
    assert_rejected(codec, &body, &format!("{messages}[{i}]"));
    let (body, i) = with_message(request, json!({"role": "wizard", "content": "x"}));
    assert_rejected(codec, &body, &format!("{messages}[{i}].role"));
    let (body, i) = with_message(request, json!({"content": "x"}));
    assert_rejected(codec, &body, &format!("{messages}[{i}].role"));
    let (body, i) = with_message(request, json!({"role": "user", "content": 5}));
    assert_rejected(codec, &body, &format!("{messages}[{i}].content"));
    let (body, i) = with_message(request, json!({"role": "user"}));
    assert_rejected(codec, &body, &format!("{messages}[{i}].content"));
    let (body, i) =
        with_message(request, json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"text": "b"}]}));
    assert_rejected(codec, &body, &format!("{messages}[{i}].content[1].type"));
    let (body, _) = with_message(request, json!({"role": "user", "content": [{"type": "text", "text": "typed"}]}));
    codec.request_fields(Endpoint::Chat, &body).unwrap();

    // Fields the gateway does not know pass, and reach an upstream of the same format unchanged.
    let extra = json!({"nested": [1, {"deep": null}], "flag": true});
    let body = with(request, "a_field_from_next_month", extra.clone());
    codec.request_fields(Endpoint::Chat, &body).unwrap();
    assert_eq!(crate::translate::request(format, format, &body, "up").unwrap()["a_field_from_next_month"], extra);
}

/// What every codec must satisfy. `request` is a chat request in the codec's format whose last
/// user message is "hello there".
fn contract(format: ApiFormat, request: &Value) {
    let codec = format.codec();
    validation_contract(format, request);

    // Requests: the pipeline's fields, and the checks on them.
    let fields = codec.request_fields(Endpoint::Chat, request).unwrap();
    assert_eq!(fields.model, "m");
    assert!(!fields.stream);
    let mut no_model = request.clone();
    no_model.as_object_mut().unwrap().remove("model");
    let error = codec.request_fields(Endpoint::Chat, &no_model).unwrap_err();
    assert_eq!(error.param(), Some("model"));
    let mut bad_stream = request.clone();
    bad_stream["stream"] = json!("yes");
    assert_eq!(codec.request_fields(Endpoint::Chat, &bad_stream).unwrap_err().param(), Some("stream"));
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    assert!(codec.request_fields(Endpoint::Chat, &streamed).unwrap().stream);
    let pointers = codec.prompt_pointers(request);
    assert!(
        pointers.iter().any(|p| request.pointer(&p.pointer) == Some(&json!("hello there")) && p.role == "user"),
        "{pointers:?}"
    );
    assert!(codec.prompt_document(request).to_string().contains("hello there"));

    // Through the hub and back, the conversation survives.
    let hub = codec.request_to_hub(request, "up").unwrap();
    assert_eq!(hub["model"], "up");
    let back = codec.request_from_hub(&hub, "again").unwrap();
    assert_eq!(back["model"], "again");
    assert!(back.to_string().contains("hello there"));

    // Whole answers: the text is where the pointers say, in this format and through the hub.
    let params = MockParams::default();
    let answer = codec.mock_answer(request, &params);
    assert_eq!(answer.text, "Mock answer to: hello there");
    let body = codec.mock_body(&answer, "m");
    assert_eq!(answer_text(codec, &body), answer.text);
    assert_eq!(codec.usage(body.get("usage").unwrap()), answer.usage);
    let hub_answer = codec.response_to_hub(&body);
    assert_eq!(answer_text(ApiFormat::OpenAi.codec(), &hub_answer), answer.text);
    assert_eq!(answer_text(codec, &codec.response_from_hub(&hub_answer)), answer.text);

    // Streams: deltas carry the text; passthrough reads usage and the end; through the hub and back.
    let wire = events(&codec.mock_events(&answer, "m", &params, true));
    assert_eq!(streamed_text(codec, &wire), answer.text);
    let mut passthrough = codec.passthrough(true);
    let passed = run(passthrough.as_mut(), &wire);
    assert_eq!(passed, wire);
    assert!(passthrough.completed());
    assert_eq!(passthrough.usage(), answer.usage);
    let mut to_hub = codec.stream_to_hub("m", true);
    let hub_wire = run(to_hub.as_mut(), &wire);
    assert_eq!(streamed_text(ApiFormat::OpenAi.codec(), &hub_wire), answer.text);
    assert!(to_hub.completed());
    let mut from_hub = codec.stream_from_hub("m");
    assert_eq!(streamed_text(codec, &run(from_hub.as_mut(), &hub_wire)), answer.text);

    // The end of a stream: the codec knows the event its clients read as the end; every stream
    // written to this format, from any upstream format, has it last and once, and has read the
    // upstream's end by the time it writes it (so a client that leaves right after has it all).
    let mock = codec.mock_events(&answer, "m", &params, true);
    assert_eq!(mock.iter().filter(|event| codec.ends_stream(event)).count(), 1);
    assert!(mock.last().is_some_and(|event| codec.ends_stream(event)));
    for upstream in FORMATS {
        let wire = events(&upstream.codec().mock_events(&answer, "m", &params, true));
        let mut transform = stream(upstream, format, "m", true);
        let mut written = Vec::new();
        for event in &wire {
            for bytes in transform.on_event(event) {
                if codec.ends_stream(&bytes) {
                    assert!(transform.completed(), "{upstream:?} -> {format:?}: the end is written before it is read");
                }
                written.push(bytes);
            }
        }
        written.extend(transform.finish());
        let ends: Vec<usize> =
            written.iter().enumerate().filter(|(_, bytes)| codec.ends_stream(bytes)).map(|(i, _)| i).collect();
        assert_eq!(ends, vec![written.len() - 1], "{upstream:?} -> {format:?}: the end, last and once");
        // A stream cut before its end does not end.
        let mut cut = stream(upstream, format, "m", true);
        let partial: Vec<Bytes> = wire[..wire.len() / 2].iter().flat_map(|event| cut.on_event(event)).collect();
        assert!(!partial.iter().any(|event| codec.ends_stream(event)), "{upstream:?} -> {format:?}");
        assert!(!cut.completed());
    }

    // The stream guard's reader: text deltas found, a boundary before the end, and a synthetic
    // event that carries text in this format.
    let mut reader = codec.text_events();
    let mut text = String::new();
    let mut boundaries = 0;
    for event in &wire {
        let value = serde_json::from_str::<Value>(&event.data).ok();
        let role = reader.classify(event, value.as_ref());
        if let (Some(pointer), Some(value)) = (role.text, &value) {
            text.push_str(value.pointer(pointer).and_then(Value::as_str).unwrap());
        }
        boundaries += usize::from(role.boundary);
    }
    assert_eq!(text, answer.text);
    assert!(boundaries >= 1);
    assert_eq!(streamed_text(codec, &events(&[reader.text_event("held back")])), "held back");

    // Tool calls: the arguments of earlier assistant turns and the tool results a client sends
    // back are prompt texts; an answer's arguments are where the codec says, whole and streamed,
    // in this format and through the hub; a synthetic event carries released arguments.
    let arguments = json!({"to": "jane@x.io", "note": "call me later"});
    let history = json!({"model": "m", "max_tokens": 20, "messages": [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "send", "arguments": arguments.to_string()}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sent to jane@x.io"},
    ]});
    let native = codec.request_from_hub(&history, "m").unwrap();
    let pointers = codec.prompt_pointers(&native);
    let as_json = |v: &Value| v.as_str().map_or_else(|| v.clone(), |s| serde_json::from_str(s).unwrap());
    assert!(
        pointers.iter().any(|p| p.kind == TextKind::ToolArguments
            && p.role == "assistant"
            && native.pointer(&p.pointer).map(as_json) == Some(arguments.clone())),
        "{pointers:?} in {native}"
    );
    assert!(
        pointers.iter().any(|p| p.role == "tool" && native.pointer(&p.pointer) == Some(&json!("sent to jane@x.io"))),
        "{pointers:?} in {native}"
    );
    let call = MockAnswer {
        text: String::new(),
        tool_call: Some(("call_1".into(), "send".into(), arguments.to_string())),
        usage: Usage::default(),
    };
    let body = codec.mock_body(&call, "m");
    assert_eq!(tool_arguments(codec, &body), vec![arguments.clone()]);
    assert_eq!(tool_arguments(ApiFormat::OpenAi.codec(), &codec.response_to_hub(&body)), vec![arguments.clone()]);
    let wire = events(&codec.mock_events(&call, "m", &params, false));
    let streamed = streamed_arguments(codec, &wire);
    assert_eq!(streamed.len(), 1, "{streamed:?}");
    let (index, text) = streamed.iter().next().unwrap();
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), arguments);
    let mut to_hub = codec.stream_to_hub("m", true);
    let hub_streamed = streamed_arguments(ApiFormat::OpenAi.codec(), &run(to_hub.as_mut(), &wire));
    assert_eq!(hub_streamed.values().collect::<Vec<_>>(), vec![text]);
    let synthetic = events(&[codec.text_events().tool_arguments_event(*index, "{\"a\":")]);
    assert_eq!(streamed_arguments(codec, &synthetic).get(index).map(String::as_str), Some("{\"a\":"));

    // Errors: a JSON body that names the code, and stream events that carry it.
    let error = ProxyError::GuardrailBlocked { message: "no".into() };
    assert!(codec.error_body(&error).to_string().contains("guardrail_blocked"));
    let framed = events(&codec.error_events(&error));
    assert!(framed.iter().any(|e| e.data.contains("guardrail_blocked")));

    // Listings.
    let names = vec!["a".to_owned(), "b".to_owned()];
    let listing = codec.model_list(&names).to_string();
    assert!(listing.contains("\"a\"") && listing.contains("\"b\""));
}

mod openai {
    use super::*;

    fn request() -> Value {
        json!({"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]})
    }

    #[test]
    fn satisfies_the_codec_contract() {
        contract(ApiFormat::OpenAi, &request());
    }

    #[test]
    fn reads_include_usage_and_the_output_limit() {
        let mut body = request();
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        body["max_completion_tokens"] = json!(77);
        let fields = ApiFormat::OpenAi.codec().request_fields(Endpoint::Chat, &body).unwrap();
        assert!(fields.include_usage);
        assert_eq!(fields.max_output_tokens, Some(77));
    }

    #[test]
    fn checks_n_and_the_openai_ranges_and_roles() {
        let codec = ApiFormat::OpenAi.codec();
        for bad in [json!(0), json!(-1), json!("2"), json!(2.5)] {
            assert_rejected(codec, &with(&request(), "n", bad), "n");
        }
        codec.request_fields(Endpoint::Chat, &with(&request(), "n", json!(3))).unwrap();
        assert_rejected(codec, &with(&request(), "max_completion_tokens", json!(0)), "max_completion_tokens");
        codec.request_fields(Endpoint::Chat, &with(&request(), "temperature", json!(1.7))).unwrap();
        assert_rejected(codec, &with(&request(), "temperature", json!(2.1)), "temperature");
        // An assistant turn that only calls tools has no content.
        let (body, _) = with_message(&request(), json!({"role": "assistant", "content": null, "tool_calls": []}));
        codec.request_fields(Endpoint::Chat, &body).unwrap();
        let (body, _) = with_message(&request(), json!({"role": "assistant", "tool_calls": []}));
        codec.request_fields(Endpoint::Chat, &body).unwrap();
        for role in ["system", "developer", "tool", "function"] {
            let (body, _) = with_message(&request(), json!({"role": role, "content": "x", "tool_call_id": "c"}));
            codec.request_fields(Endpoint::Chat, &body).unwrap();
        }
        let (body, i) = with_message(&request(), json!({"role": "tool", "content": null, "tool_call_id": "c"}));
        assert_rejected(codec, &body, &format!("messages[{i}].content"));
        // Text completions: the sampling fields are checked, there are no messages.
        let error = codec
            .request_fields(Endpoint::Completions, &json!({"model": "m", "prompt": "x", "best_of": 0}))
            .unwrap_err();
        assert_eq!(error.param(), Some("best_of"));
        codec.request_fields(Endpoint::Completions, &json!({"model": "m", "prompt": "x", "n": 2})).unwrap();
    }

    #[test]
    fn chat_and_completions_stream_embeddings_do_not() {
        let codec = ApiFormat::OpenAi.codec();
        let body = json!({"model": "m", "prompt": "x", "stream": true});
        assert!(codec.request_fields(Endpoint::Completions, &body).unwrap().stream);
        let error = codec.request_fields(Endpoint::Embeddings, &json!({"model": "e", "input": "x", "stream": true}));
        assert_eq!(error.unwrap_err().param(), Some("stream"));
        assert!(codec.request_fields(Endpoint::Embeddings, &json!({"model": "e", "input": "x"})).is_ok());
    }

    #[test]
    fn error_shape_and_stream_framing() {
        let codec = ApiFormat::OpenAi.codec();
        let error = ProxyError::ModelNotFound("gpt-9".into());
        let body = codec.error_body(&error);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
        let framed = events(&codec.error_events(&error));
        assert_eq!(framed.last().unwrap().data, crate::translate::openai::DONE);
    }
}

mod anthropic {
    use super::*;

    fn request() -> Value {
        json!({"model": "m", "max_tokens": 50, "system": "be brief", "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]})
    }

    #[test]
    fn satisfies_the_codec_contract() {
        contract(ApiFormat::Anthropic, &request());
    }

    #[test]
    fn passes_the_version_headers_and_reads_max_tokens() {
        let codec = ApiFormat::Anthropic.codec();
        assert_eq!(codec.passthrough_headers(), ["anthropic-version", "anthropic-beta"]);
        assert_eq!(codec.request_fields(Endpoint::Chat, &request()).unwrap().max_output_tokens, Some(50));
    }

    #[test]
    fn max_tokens_is_required_and_the_anthropic_ranges_hold() {
        let codec = ApiFormat::Anthropic.codec();
        let mut body = request();
        body.as_object_mut().unwrap().remove("max_tokens");
        assert_rejected(codec, &body, "max_tokens");
        let rendered = codec.error_body(&codec.request_fields(Endpoint::Chat, &body).unwrap_err());
        assert_eq!(rendered["error"]["type"], "invalid_request_error");
        assert!(rendered["error"]["message"].as_str().unwrap().contains("max_tokens"), "{rendered}");
        assert_rejected(codec, &with(&request(), "max_tokens", Value::Null), "max_tokens");
        assert_rejected(codec, &with(&request(), "temperature", json!(1.5)), "temperature");
        assert_rejected(codec, &with(&request(), "system", json!(3)), "system");
        assert_rejected(codec, &with(&request(), "system", json!([{"text": "untyped"}])), "system[0].type");
        let cached = json!([{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]);
        codec.request_fields(Endpoint::Chat, &with(&request(), "system", cached)).unwrap();
        // A system turn inside `messages` (Claude Code) is accepted; every turn has content.
        let (body, _) = with_message(&request(), json!({"role": "system", "content": "rules"}));
        codec.request_fields(Endpoint::Chat, &body).unwrap();
        let (body, i) = with_message(&request(), json!({"role": "assistant", "content": null}));
        assert_rejected(codec, &body, &format!("messages[{i}].content"));
        let (body, i) = with_message(&request(), json!({"role": "developer", "content": "x"}));
        assert_rejected(codec, &body, &format!("messages[{i}].role"));
    }

    #[test]
    fn a_refused_key_is_named_x_api_key() {
        use crate::error::KeyProblem;
        let codec = ApiFormat::Anthropic.codec();
        for problem in [KeyProblem::Missing, KeyProblem::Invalid, KeyProblem::Revoked, KeyProblem::Expired] {
            let body = codec.error_body(&ProxyError::Unauthorized(problem));
            assert_eq!(body["error"]["type"], "authentication_error");
            assert!(body["error"]["message"].as_str().unwrap().contains("x-api-key"), "{body}");
        }
        let openai = ApiFormat::OpenAi.codec().error_body(&ProxyError::Unauthorized(KeyProblem::Missing));
        assert!(openai["error"]["message"].as_str().unwrap().contains("Authorization: Bearer"), "{openai}");
    }

    #[test]
    fn prompt_pointers_reach_tool_results_and_tool_calls() {
        let body = json!({
            "system": "sys",
            "messages": [
                {"role": "user", "content": "plain"},
                {"role": "user", "content": [{"type": "text", "text": "part"}, {"type": "tool_result", "tool_use_id": "t", "content": "res"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "send", "input": {"to": "x"}}]}
            ]
        });
        let found: Vec<(String, String)> =
            ApiFormat::Anthropic.codec().prompt_pointers(&body).into_iter().map(|p| (p.pointer, p.role)).collect();
        let expected = [
            ("/system", "system"),
            ("/messages/0/content", "user"),
            ("/messages/1/content/0/text", "user"),
            ("/messages/1/content/1/content", "tool"),
            ("/messages/2/content/0/input", "assistant"),
        ];
        assert_eq!(found, expected.map(|(p, r)| (p.to_owned(), r.to_owned())));
    }

    #[test]
    fn error_shape_and_stream_framing() {
        let codec = ApiFormat::Anthropic.codec();
        let body = codec.error_body(&ProxyError::ModelNotFound("claude-9".into()));
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "not_found_error");
        assert_eq!(body["error"]["code"], "model_not_found");
        let framed =
            events(&codec.error_events(&ProxyError::Unavailable { message: "x".into(), retry_after_secs: None }));
        assert_eq!(framed[0].event.as_deref(), Some("error"));
        assert!(framed[0].data.contains("overloaded_error"));
    }
}

/// Two formats neither of which is the hub meet through it: the chain carries text and usage.
#[test]
fn a_chain_through_the_hub_keeps_text_and_usage() {
    let codec = ApiFormat::Anthropic.codec();
    let request = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hello there"}]});
    let answer = codec.mock_answer(&request, &MockParams::default());
    let wire = events(&codec.mock_events(&answer, "m", &MockParams::default(), false));
    let mut chain = Chain::new(codec.stream_to_hub("m", true), codec.stream_from_hub("m"));
    let out = run(&mut chain, &wire);
    assert_eq!(streamed_text(codec, &out), answer.text);
    assert_eq!(chain.usage(), answer.usage);
    assert!(chain.completed());
}

mod responses {
    use super::*;
    use crate::translate::responses::stream::EventReader;

    fn request() -> Value {
        json!({"model": "m", "instructions": "be brief", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello there"}]}]})
    }

    /// A fixture of `fixtures/wire/`, as events.
    fn fixture(name: &str) -> Vec<SseEvent> {
        let path = format!("{}/fixtures/wire/{name}", env!("CARGO_MANIFEST_DIR"));
        events(&[Bytes::from(std::fs::read(path).unwrap())])
    }

    fn by_type(events: &[SseEvent]) -> Vec<String> {
        events.iter().map(|e| e.event.clone().unwrap_or_else(|| "(data)".into())).collect()
    }

    #[test]
    fn satisfies_the_codec_contract() {
        contract(ApiFormat::Responses, &request());
    }

    #[test]
    fn input_is_a_string_or_items_and_the_limits_are_read() {
        let codec = ApiFormat::Responses.codec();
        let plain = json!({"model": "m", "input": "hi", "max_output_tokens": 64, "stream": true});
        let fields = codec.request_fields(Endpoint::Chat, &plain).unwrap();
        assert_eq!(fields.max_output_tokens, Some(64));
        assert!(fields.stream);
        assert_rejected(codec, &with(&plain, "max_output_tokens", json!(0)), "max_output_tokens");
        assert_rejected(codec, &json!({"model": "m"}), "input");
        assert_rejected(codec, &json!({"model": "m", "input": 3}), "input");
        // A continuation may send no new input.
        codec.request_fields(Endpoint::Chat, &json!({"model": "m", "previous_response_id": "resp_1"})).unwrap();
        assert_rejected(codec, &with(&plain, "instructions", json!(["x"])), "instructions");
        assert_rejected(codec, &with(&plain, "tools", json!({})), "tools");
        // Items other than messages pass the shape check; the translation decides.
        let items = json!({"model": "m", "input": [
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
            {"type": "web_search_call", "id": "ws", "status": "completed"},
        ]});
        codec.request_fields(Endpoint::Chat, &items).unwrap();
        let error = crate::translate::request(ApiFormat::Responses, ApiFormat::OpenAi, &items, "up").unwrap_err();
        assert!(error.to_string().contains("web_search_call"), "{error}");
        assert_eq!(error.param(), Some("input[2]"));
        // An upstream that speaks Responses gets it as sent.
        let same = crate::translate::request(ApiFormat::Responses, ApiFormat::Responses, &items, "up").unwrap();
        assert_eq!(same["input"], items["input"]);
        // Through the hub to Anthropic, the same refusal.
        let error = crate::translate::request(ApiFormat::Responses, ApiFormat::Anthropic, &items, "up").unwrap_err();
        assert!(error.to_string().contains("web_search_call"), "{error}");
    }

    #[test]
    fn prompt_pointers_reach_instructions_items_tool_calls_and_outputs() {
        let body = json!({"model": "m", "instructions": "sys", "input": [
            {"role": "developer", "content": "dev"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "part"}, {"type": "input_image", "image_url": "http://x"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"to\":\"x\"}"},
            {"type": "function_call_output", "call_id": "c", "output": "res"},
            {"type": "reasoning", "id": "rs", "summary": []},
        ]});
        let found: Vec<(String, String, TextKind)> = ApiFormat::Responses
            .codec()
            .prompt_pointers(&body)
            .into_iter()
            .map(|p| (p.pointer, p.role, p.kind))
            .collect();
        let expected = [
            ("/instructions", "system", TextKind::Text),
            ("/input/0/content", "system", TextKind::Text),
            ("/input/1/content/0/text", "user", TextKind::Text),
            ("/input/2/arguments", "assistant", TextKind::ToolArguments),
            ("/input/3/output", "tool", TextKind::Text),
        ];
        assert_eq!(found, expected.map(|(p, r, k)| (p.to_owned(), r.to_owned(), k)));
        let plain = json!({"model": "m", "input": "just text"});
        assert_eq!(ApiFormat::Responses.codec().prompt_pointers(&plain)[0].pointer, "/input");
    }

    #[test]
    fn whole_answers_carry_usage_with_reasoning_tokens_both_ways() {
        let path = format!("{}/fixtures/wire/openai-responses-function-call.json", env!("CARGO_MANIFEST_DIR"));
        let answer: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let codec = ApiFormat::Responses.codec();
        assert_eq!(codec.usage(&answer["usage"]), Usage { prompt_tokens: 291, completion_tokens: 23 });
        let chat = codec.response_to_hub(&answer);
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chat["choices"][0]["message"]["tool_calls"][0]["id"], "call_unLAR8MvFNptuiZK6K6HCy5k");
        assert_eq!(chat["choices"][0]["message"]["reasoning_content"], "Looking up the weather.");
        assert_eq!(chat["usage"]["completion_tokens_details"]["reasoning_tokens"], 7);
        assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 256);
        let back = codec.response_from_hub(&chat);
        assert_eq!(back["usage"]["output_tokens_details"]["reasoning_tokens"], 7);
        assert_eq!(back["usage"]["input_tokens_details"]["cached_tokens"], 256);
        let kinds: Vec<&str> = back["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["reasoning", "function_call"]);
        assert_eq!(back["output"][1]["call_id"], "call_unLAR8MvFNptuiZK6K6HCy5k");
        assert!(back["id"].as_str().unwrap().starts_with("resp_"));
        // To an Anthropic client, through the hub.
        let anthropic = crate::translate::response(ApiFormat::Responses, ApiFormat::Anthropic, &answer);
        assert_eq!(anthropic["stop_reason"], "tool_use");
        assert_eq!(anthropic["content"][0]["input"], json!({"location": "Paris, France"}));
        // A length stop is an incomplete response, and back.
        let cut = json!({"id": "c", "model": "m", "choices": [{"message": {"role": "assistant", "content": "ab"}, "finish_reason": "length"}], "usage": {"prompt_tokens": 1, "completion_tokens": 2}});
        let incomplete = codec.response_from_hub(&cut);
        assert_eq!(incomplete["status"], "incomplete");
        assert_eq!(incomplete["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(codec.response_to_hub(&incomplete)["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn a_provider_stream_passes_through_with_its_usage_and_end() {
        let wire = fixture("openai-responses-text.sse");
        let mut passthrough = ApiFormat::Responses.codec().passthrough(false);
        assert_eq!(run(passthrough.as_mut(), &wire), wire);
        assert!(passthrough.completed());
        assert_eq!(passthrough.usage(), Usage { prompt_tokens: 13, completion_tokens: 19 });
    }

    #[test]
    fn a_provider_stream_reaches_chat_and_anthropic_clients() {
        let codec = ApiFormat::Responses.codec();
        let text = fixture("openai-responses-text.sse");
        let mut to_chat = crate::translate::stream(ApiFormat::Responses, ApiFormat::OpenAi, "m", true);
        let chat = run(to_chat.as_mut(), &text);
        assert_eq!(streamed_text(ApiFormat::OpenAi.codec(), &chat), "Double bubble bath, write to jane@example.com");
        assert_eq!(chat.last().unwrap().data, "[DONE]");
        assert!(to_chat.completed());
        assert_eq!(to_chat.usage(), Usage { prompt_tokens: 13, completion_tokens: 19 });
        let usage_chunk: Value = serde_json::from_str(&chat[chat.len() - 2].data).unwrap();
        assert_eq!(usage_chunk["usage"]["total_tokens"], 32);

        let calls = fixture("openai-responses-function-call.sse");
        let mut to_chat = codec.stream_to_hub("m", false);
        let chat = run(to_chat.as_mut(), &calls);
        let arguments = streamed_arguments(ApiFormat::OpenAi.codec(), &chat);
        assert_eq!(arguments.get(&0).map(String::as_str), Some("{\"location\":\"Paris, France\"}"));
        let finish: Vec<Value> = chat
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .filter_map(|v| v.pointer("/choices/0/finish_reason").filter(|f| !f.is_null()).cloned())
            .collect();
        assert_eq!(finish, [json!("tool_calls")]);

        let mut to_anthropic = crate::translate::stream(ApiFormat::Responses, ApiFormat::Anthropic, "m", false);
        let anthropic = run(to_anthropic.as_mut(), &calls);
        let arguments = streamed_arguments(ApiFormat::Anthropic.codec(), &anthropic);
        assert_eq!(arguments.values().next().map(String::as_str), Some("{\"location\":\"Paris, France\"}"));
        assert_eq!(anthropic.last().unwrap().event.as_deref(), Some("message_stop"));
    }

    #[test]
    fn an_anthropic_stream_reaches_a_responses_client_event_by_event() {
        let wire = fixture("anthropic-thinking-tool-use.sse");
        let mut transform = crate::translate::stream(ApiFormat::Anthropic, ApiFormat::Responses, "claude", false);
        let mut per_event = Vec::new();
        for event in &wire {
            per_event.push(events(&transform.on_event(event)));
        }
        let tail = events(&transform.finish());
        assert!(tail.is_empty(), "{tail:?}");
        // Each input_json_delta with JSON in it is one function_call_arguments.delta, as it arrives.
        let deltas: Vec<String> = per_event
            .iter()
            .flatten()
            .filter(|e| e.event.as_deref() == Some("response.function_call_arguments.delta"))
            .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deltas, ["{\"location\":", " \"San Fra", "ncisco, CA\"", "}"]);
        let out: Vec<SseEvent> = per_event.into_iter().flatten().collect();
        let kinds = by_type(&out);
        assert_eq!(kinds.first().map(String::as_str), Some("response.created"));
        assert_eq!(kinds.last().map(String::as_str), Some("response.completed"));
        for kind in [
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.function_call_arguments.done",
            "response.output_item.done",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} missing in {kinds:?}");
        }
        // Sequence numbers count up from 0, one per event.
        let numbers: Vec<u64> = out
            .iter()
            .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (0..out.len() as u64).collect::<Vec<_>>());
        let completed: Value = serde_json::from_str(&out.last().unwrap().data).unwrap();
        let output = completed["response"]["output"].as_array().unwrap();
        // The extended thinking first, as a reasoning item (its signature left out).
        assert_eq!(output[0]["type"], "reasoning");
        assert!(!output[0].to_string().contains("\"signature\""), "{}", output[0]);
        assert_eq!(output[1]["type"], "message");
        assert_eq!(output[1]["content"][0]["text"], "Okay, let's check the weather for San Francisco, CA:");
        assert_eq!(output[2]["type"], "function_call");
        assert_eq!(output[2]["call_id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
        assert_eq!(output[2]["arguments"], "{\"location\": \"San Francisco, CA\"}");
        assert_eq!(completed["response"]["usage"]["input_tokens"], 472);
        assert_eq!(completed["response"]["usage"]["output_tokens"], 89);
        assert!(transform.completed());
    }

    #[test]
    fn an_upstream_error_mid_stream_fails_the_response() {
        let mut transform = ApiFormat::Responses.codec().stream_from_hub("m");
        let chunk = |data: &str| SseEvent { event: None, data: data.to_owned() };
        let mut out = Vec::new();
        out.extend(
            transform.on_event(&chunk(r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"par"}}]}"#)),
        );
        out.extend(transform.on_event(&chunk(r#"{"error":{"message":"overloaded","code":"server_error"}}"#)));
        out.extend(transform.on_event(&chunk("[DONE]")));
        out.extend(transform.finish());
        let out = events(&out);
        let kinds = by_type(&out);
        assert_eq!(&kinds[kinds.len() - 2..], ["error", "response.failed"]);
        assert_eq!(out.iter().filter(|e| e.event.as_deref() == Some("response.failed")).count(), 1);
        let failed: Value = serde_json::from_str(&out.last().unwrap().data).unwrap();
        assert_eq!(failed["response"]["error"]["code"], "server_error");
        // A stream that breaks off before any finish is failed too, never completed.
        let mut cut = ApiFormat::Responses.codec().stream_from_hub("m");
        let mut out =
            cut.on_event(&chunk(r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"par"}}]}"#));
        out.extend(cut.finish());
        assert_eq!(by_type(&events(&out)).last().map(String::as_str), Some("response.failed"));
        assert!(!cut.completed());
    }

    #[test]
    fn the_stream_guard_reader_puts_released_text_into_the_events_that_repeat_it() {
        let wire = fixture("openai-responses-text.sse");
        let mut reader = EventReader::default();
        let mut written = Vec::new();
        for event in &wire {
            let mut value: Value = serde_json::from_str(&event.data).unwrap();
            let role = reader.classify(event, Some(&value));
            if role.text.is_some() {
                // The guard held this delta back, redacted.
                value["delta"] = json!(value["delta"].as_str().unwrap().replace("jane@example.com", "[EMAIL]"));
            }
            reader.rewrite(&mut value);
            written.push(value);
        }
        let whole = "Double bubble bath, write to [EMAIL]";
        let done = written.iter().find(|v| v["type"] == "response.output_text.done").unwrap();
        assert_eq!(done["text"], whole);
        let part = written.iter().find(|v| v["type"] == "response.content_part.done").unwrap();
        assert_eq!(part["part"]["text"], whole);
        let item = written.iter().rfind(|v| v["type"] == "response.output_item.done").unwrap();
        assert_eq!(item["item"]["content"][0]["text"], whole);
        let completed = written.last().unwrap();
        assert_eq!(completed["response"]["output"][1]["content"][0]["text"], whole);
        // Released text goes to the open message item.
        let synthetic = events(&[reader.text_event("tail")]);
        let value: Value = serde_json::from_str(&synthetic[0].data).unwrap();
        assert_eq!(value["item_id"], "msg_68af40310a4c8193aff0e2ad2b3aa98905438e46b5f69a3b");
        assert_eq!(value["output_index"], 1);
    }

    #[test]
    fn error_shape_and_stream_framing() {
        let codec = ApiFormat::Responses.codec();
        let body = codec.error_body(&ProxyError::ModelNotFound("gpt-9".into()));
        assert_eq!(body["error"]["code"], "model_not_found");
        let framed = events(&codec.error_events(&ProxyError::GuardrailBlocked { message: "no".into() }));
        assert_eq!(by_type(&framed), ["error", "response.failed"]);
        let error: Value = serde_json::from_str(&framed[0].data).unwrap();
        assert_eq!(error["code"], "guardrail_blocked");
        assert!(codec.ends_stream(&crate::sse::encode(Some("response.failed"), "{}")));
        assert!(codec.ends_stream(&crate::sse::encode(Some("response.incomplete"), "{}")));
        assert!(!codec.ends_stream(&crate::sse::encode(Some("response.completed_x"), "{}")));
    }

    #[test]
    fn anthropic_thinking_reaches_a_responses_client_as_a_reasoning_item() {
        let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 7},
            "content": [{"type": "thinking", "thinking": "Sky first.", "signature": "sig"}, {"type": "text", "text": "Blue."}]});
        let out = crate::translate::response(ApiFormat::Anthropic, ApiFormat::Responses, &answer);
        let kinds: Vec<&str> = out["output"].as_array().unwrap().iter().filter_map(|i| i["type"].as_str()).collect();
        assert_eq!(kinds, ["reasoning", "message"], "{out}");
        assert!(out["output"][0].to_string().contains("Sky first."), "{out}");
    }
}
