//! Bedrock Converse translation, against the shapes of the Bedrock API reference.

use serde_json::json;

use super::*;
use crate::sse::SseParser;

#[test]
fn a_hub_request_becomes_a_converse_request() {
    let hub = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "max_tokens": 50, "temperature": 0.5, "stop": ["END"], "top_k": 40
    });
    let request = request_from_hub(&hub).unwrap();
    assert_eq!(request["system"], json!([{"text": "Be brief."}]));
    assert_eq!(request["messages"][0], json!({"role": "user", "content": [{"text": "Weather in Paris?"}]}));
    assert_eq!(
        request["messages"][1]["content"][1],
        json!({"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}})
    );
    assert_eq!(
        request["messages"][2],
        json!({"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny"}]}}]})
    );
    assert_eq!(request["inferenceConfig"], json!({"maxTokens": 50, "temperature": 0.5, "stopSequences": ["END"]}));
    assert_eq!(request["additionalModelRequestFields"], json!({"top_k": 40}));
    assert_eq!(request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"], "object");
    assert_eq!(request["toolConfig"]["toolChoice"], json!({"auto": {}}));
}

#[test]
fn a_converse_answer_becomes_a_hub_answer() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Let me look."},
            {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather", "input": {"city": "Paris"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42},
        "metrics": {"latencyMs": 512}
    });
    let hub = response_to_hub(&answer, "anthropic.claude-3-haiku-20240307-v1:0");
    assert_eq!(hub["choices"][0]["message"]["content"], "Let me look.");
    assert_eq!(hub["choices"][0]["message"]["tool_calls"][0]["id"], "tooluse_abc");
    assert_eq!(hub["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(hub["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(hub["usage"]["prompt_tokens"], 30);
    assert_eq!(hub["usage"]["completion_tokens"], 12);
    let filtered = json!({"output": {"message": {"role": "assistant", "content": [{"text": "Sorry."}]}}, "stopReason": "guardrail_intervened"});
    assert_eq!(response_to_hub(&filtered, "m")["choices"][0]["finish_reason"], "content_filter");
}

#[test]
fn a_converse_stream_with_a_tool_call_becomes_hub_chunks() {
    let events = [
        ("messageStart", json!({"role": "assistant"})),
        ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Checking"}})),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}),
        ),
        ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}})),
        ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}})),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 25, "outputTokens": 9, "totalTokens": 34}, "metrics": {"latencyMs": 300}}),
        ),
    ];
    let mut transform = BedrockToHub::new("m");
    let mut parser = SseParser::default();
    let mut values = Vec::new();
    for (name, payload) in events {
        for bytes in transform.on_message(name, &payload) {
            for event in parser.push(&bytes).unwrap() {
                values.push(if event.data == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str::<Value>(&event.data).unwrap()
                });
            }
        }
    }
    assert!(transform.finish().is_empty(), "metadata ended the stream");
    let text: String =
        values.iter().filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(text, "Checking");
    let arguments: String = values
        .iter()
        .filter_map(|v| v.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str))
        .collect();
    assert_eq!(arguments, "{\"city\":\"Paris\"}");
    assert!(values.iter().any(|v| v.pointer("/choices/0/delta/tool_calls/0/id") == Some(&json!("tooluse_1"))));
    assert!(values.iter().any(|v| v.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
    assert_eq!(values.iter().find_map(|v| v.get("usage")).unwrap()["prompt_tokens"], 25);
    assert_eq!(values.last().unwrap(), "[DONE]");
    assert_eq!(transform.usage(), Usage { prompt_tokens: 25, completion_tokens: 9 });
}

#[test]
fn exceptions_map_to_the_documented_statuses() {
    assert_eq!(exception_status("ThrottlingException"), (429, "rate_limit_exceeded"));
    assert_eq!(exception_status("throttlingException"), (429, "rate_limit_exceeded"));
    assert_eq!(
        exception_status("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        (400, "invalid_request")
    );
    assert_eq!(exception_status("AccessDeniedException").0, 403);
}

#[test]
fn titan_embeds_one_text_per_invoke_model_call_and_reports_its_tokens() {
    let request =
        embeddings_request(&json!({"input": "hello world", "dimensions": 512}), "amazon.titan-embed-text-v2:0")
            .unwrap();
    assert_eq!(request, json!({"inputText": "hello world", "dimensions": 512}));
    let refused = embeddings_request(&json!({"input": ["a", "b"]}), "amazon.titan-embed-text-v2:0").unwrap_err();
    assert!(refused.to_string().contains("one text per request"), "{refused}");
    let answer = embeddings_response(
        &json!({"embedding": [0.25, -0.5], "inputTextTokenCount": 3, "embeddingsByType": {"float": [0.25, -0.5]}}),
        "amazon.titan-embed-text-v2:0",
        Some(99),
        42,
    );
    assert_eq!(answer["data"], json!([{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}]));
    assert_eq!(answer["usage"]["prompt_tokens"], 3, "the body's count first");
}

#[test]
fn cohere_embeds_a_batch_with_its_input_type_and_the_header_count() {
    let request = embeddings_request(&json!({"input": ["a", "b"]}), "cohere.embed-english-v3").unwrap();
    assert_eq!(request, json!({"texts": ["a", "b"], "input_type": "search_document"}));
    let request =
        embeddings_request(&json!({"input": "q", "input_type": "search_query"}), "cohere.embed-english-v3").unwrap();
    assert_eq!(request["input_type"], "search_query");
    let plain = embeddings_response(
        &json!({"embeddings": [[0.1], [0.2]], "id": "x", "response_type": "embeddings_floats", "texts": ["a", "b"]}),
        "cohere.embed-english-v3",
        Some(4),
        42,
    );
    assert_eq!(plain["data"][1]["embedding"], json!([0.2]));
    assert_eq!(plain["usage"]["prompt_tokens"], 4);
    let by_type = embeddings_response(
        &json!({"embeddings": {"float": [[0.3]]}, "response_type": "embeddings_by_type"}),
        "cohere.embed-english-v3",
        None,
        42,
    );
    assert_eq!(by_type["data"][0]["embedding"], json!([0.3]));
    assert_eq!(by_type["usage"]["prompt_tokens"], 42, "no count anywhere: the estimate");
}
