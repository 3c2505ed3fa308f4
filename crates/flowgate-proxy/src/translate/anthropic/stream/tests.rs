use super::*;
use crate::sse::SseParser;

fn events(wire: &str) -> Vec<SseEvent> {
    SseParser::default().push(wire.as_bytes()).unwrap()
}

fn run(transform: &mut dyn StreamTransform, wire: &str) -> Vec<SseEvent> {
    let mut bytes = Vec::new();
    for event in events(wire) {
        for chunk in transform.on_event(&event) {
            bytes.extend_from_slice(&chunk);
        }
    }
    for chunk in transform.finish() {
        bytes.extend_from_slice(&chunk);
    }
    SseParser::default().push(&bytes).unwrap()
}

const ANTHROPIC_TOOL_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"ci\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ty\\\": \\\"Paris\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":20}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

#[test]
fn anthropic_tool_stream_becomes_openai_chunks_with_whole_arguments() {
    let mut transform = AnthropicToOpenAi::new("claude-haiku", true);
    let out = run(&mut transform, ANTHROPIC_TOOL_STREAM);
    let chunks: Vec<Value> =
        out.iter().filter(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert_eq!(out.last().unwrap().data, "[DONE]");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["id"], "chatcmpl-msg_1");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Let me check");
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "Paris"}));
    let finish: Vec<&str> = chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str()).collect();
    assert_eq!(finish, vec!["tool_calls"]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 12);
    assert_eq!(usage["usage"]["completion_tokens"], 20);
    assert!(transform.completed());
}

const OPENAI_TOOL_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-7\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    "data: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
    "data: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"weather\",\"arguments\":\"\"}}]}}]}\n\n",
    "data: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
    "data: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]}}]}\n\n",
    "data: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"time\",\"arguments\":\"{}\"}}]}}]}\n\n",
    "data: {\"id\":\"chatcmpl-7\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-7\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":14,\"total_tokens\":23}}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn openai_tool_stream_becomes_well_formed_anthropic_events() {
    let mut transform = OpenAiToAnthropic::new("gpt-4o-mini");
    let out = run(&mut transform, OPENAI_TOOL_STREAM);
    let names: Vec<&str> = out.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        vec![
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let data: Vec<Value> = out.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert_eq!(data[4]["content_block"]["name"], "weather");
    let arguments: String = data[5..7].iter().map(|d| d["delta"]["partial_json"].as_str().unwrap()).collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "Oslo"}));
    assert_eq!(data[8]["index"], 2);
    assert_eq!(data[11]["delta"]["stop_reason"], "tool_use");
    assert_eq!(data[11]["usage"], json!({"input_tokens": 9, "output_tokens": 14}));
}

#[test]
fn openai_stream_without_done_still_ends_well_formed() {
    let mut transform = OpenAiToAnthropic::new("m");
    let out = run(&mut transform, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
    assert_eq!(out.last().unwrap().event.as_deref(), Some("message_stop"));
}

#[test]
fn passthrough_drops_the_usage_chunk_only_when_not_asked_for() {
    let wire = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
    let mut quiet = crate::translate::openai::Passthrough::new(false);
    assert_eq!(run(&mut quiet, wire).len(), 2);
    assert_eq!(quiet.usage(), Usage { prompt_tokens: 3, completion_tokens: 1 });
    assert!(quiet.completed());
    let mut asked = crate::translate::openai::Passthrough::new(true);
    assert_eq!(run(&mut asked, wire).len(), 3);
}

#[test]
fn anthropic_passthrough_keeps_events_and_reads_usage() {
    let mut transform = Passthrough::default();
    let out = run(&mut transform, ANTHROPIC_TOOL_STREAM);
    assert_eq!(out, events(ANTHROPIC_TOOL_STREAM));
    assert_eq!(transform.usage(), Usage { prompt_tokens: 12, completion_tokens: 20 });
}

#[test]
fn thinking_deltas_become_reasoning_content_and_signatures_stay_out() {
    let wire = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"First, \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"the sky.\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Blue.\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let out = run(&mut AnthropicToOpenAi::new("claude", true), wire);
    let chunks: Vec<Value> =
        out.iter().filter(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    let field = |name: &str| -> String {
        chunks.iter().filter_map(|c| c.pointer(&format!("/choices/0/delta/{name}")).and_then(Value::as_str)).collect()
    };
    assert_eq!(field("reasoning_content"), "First, the sky.");
    assert_eq!(field("content"), "Blue.");
    assert!(out.iter().all(|e| !e.data.contains("EqQBCgIYAhIM")), "the signature is Anthropic's only");
}
