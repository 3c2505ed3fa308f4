//! Gemini translation, against the shapes of the Gemini API reference.

use serde_json::json;

use super::*;
use crate::sse::{SseEvent, SseParser};
use crate::translate::StreamTransform;

#[test]
fn a_hub_request_becomes_contents_system_instruction_tools_and_generation_config() {
    let hub = json!({
        "model": "gemini-2.0-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 21}"},
            {"role": "user", "content": [{"type": "text", "text": "And this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false
        }}}],
        "tool_choice": "required",
        "temperature": 0.3, "max_tokens": 100, "stop": "END", "top_p": 0.9
    });
    let request = request_from_hub(&hub).unwrap();
    assert_eq!(request["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
    let contents = request["contents"].as_array().unwrap();
    assert_eq!(contents[0], json!({"role": "user", "parts": [{"text": "Weather in Paris?"}]}));
    assert_eq!(
        contents[1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]})
    );
    // The tool result and the next user turn share one user content.
    assert_eq!(contents[2]["role"], "user");
    assert_eq!(
        contents[2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}})
    );
    assert_eq!(contents[2]["parts"][2], json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}));
    let declaration = &request["tools"][0]["functionDeclarations"][0];
    assert_eq!(declaration["name"], "get_weather");
    assert!(declaration["parameters"].get("additionalProperties").is_none(), "Gemini refuses it");
    assert_eq!(request["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    assert_eq!(
        request["generationConfig"],
        json!({"temperature": 0.3, "maxOutputTokens": 100, "stopSequences": ["END"], "topP": 0.9})
    );
    assert!(request.get("model").is_none() && request.get("messages").is_none());
}

#[test]
fn an_answer_with_text_and_a_function_call_becomes_a_hub_answer_with_usage() {
    // The shape of a `generateContent` response in the API reference.
    let answer = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
            ]},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 8, "thoughtsTokenCount": 4, "totalTokenCount": 24},
        "modelVersion": "gemini-2.0-flash",
        "responseId": "abc123"
    });
    let hub = response_to_hub(&answer, "gemini-2.0-flash").unwrap();
    assert_eq!(hub["choices"][0]["message"]["content"], "Let me check.");
    let call = &hub["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(hub["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(hub["usage"], json!({"prompt_tokens": 12, "completion_tokens": 12, "total_tokens": 24}));
    assert_eq!(hub["id"], "chatcmpl-abc123");
}

#[test]
fn safety_blocks_are_errors_that_say_why() {
    let blocked_prompt = json!({
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}
    });
    let error = response_to_hub(&blocked_prompt, "m").unwrap_err();
    assert!(error.0.contains("blocked the prompt") && error.0.contains("SAFETY"), "{error}");
    let withheld = json!({"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": []}]});
    let error = response_to_hub(&withheld, "m").unwrap_err();
    assert!(error.0.contains("withheld") && error.0.contains("SAFETY"), "{error}");
    // Text that was written before a filter stopped it is kept, marked content_filter.
    let partial = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Once"}]}, "finishReason": "RECITATION"}]});
    assert_eq!(response_to_hub(&partial, "m").unwrap()["choices"][0]["finish_reason"], "content_filter");
}

fn run(transform: &mut GeminiToHub, wire: &str) -> Vec<Value> {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    for event in parser.push(wire.as_bytes()).unwrap() {
        out.extend(transform.on_event(&event));
    }
    out.extend(transform.finish());
    let mut hub = SseParser::default();
    let mut values = Vec::new();
    for bytes in out {
        for SseEvent { data, .. } in hub.push(&bytes).unwrap() {
            values.push(if data == "[DONE]" { json!("[DONE]") } else { serde_json::from_str(&data).unwrap() });
        }
    }
    values
}

#[test]
fn a_stream_of_text_then_usage_becomes_hub_chunks_with_usage_and_done() {
    let wire = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The sky\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 9},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" is blue.\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 5,\"totalTokenCount\": 14},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
    );
    let mut transform = GeminiToHub::new("gemini-2.0-flash");
    let values = run(&mut transform, wire);
    let text: String =
        values.iter().filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(text, "The sky is blue.");
    let finish: Vec<&str> =
        values.iter().filter_map(|v| v.pointer("/choices/0/finish_reason").and_then(Value::as_str)).collect();
    assert_eq!(finish, vec!["stop"]);
    let usage = values.iter().find_map(|v| v.get("usage")).unwrap();
    assert_eq!(usage["prompt_tokens"], 9);
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(values.last().unwrap(), "[DONE]");
    assert!(transform.completed());
    assert_eq!(transform.usage(), Usage { prompt_tokens: 9, completion_tokens: 5 });
}

#[test]
fn a_streamed_function_call_becomes_one_tool_call_delta() {
    let wire = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"get_weather\",\"args\": {\"city\": \"Paris\"}}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 20,\"candidatesTokenCount\": 6,\"totalTokenCount\": 26}}\r\n\r\n";
    let values = run(&mut GeminiToHub::new("m"), wire);
    let call = values.iter().find_map(|v| v.pointer("/choices/0/delta/tool_calls/0")).unwrap();
    assert_eq!(call["index"], 0);
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert!(values.iter().any(|v| v.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
}

#[test]
fn a_stream_cut_before_its_last_event_ends_with_an_error() {
    let wire = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Half\"}],\"role\": \"model\"},\"index\": 0}]}\r\n\r\n";
    let values = run(&mut GeminiToHub::new("m"), wire);
    assert_eq!(values.last().unwrap()["error"]["code"], "upstream_disconnected");
}

#[test]
fn embeddings_go_through_batch_embed_contents() {
    let request =
        embeddings_request(&json!({"model": "e", "input": ["a", "b"], "dimensions": 8}), "text-embedding-004").unwrap();
    assert_eq!(
        request["requests"][1],
        json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8})
    );
    assert_eq!(embeddings_method(&request), "batchEmbedContents");
    let answer = embeddings_response(
        &json!({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3]}]}),
        "text-embedding-004",
        9,
    );
    assert_eq!(answer["data"][1], json!({"object": "embedding", "index": 1, "embedding": [0.3]}));
    assert_eq!(answer["usage"]["prompt_tokens"], 9, "Gemini reports no tokens: the estimate is charged");
}

#[test]
fn one_input_goes_through_embed_content() {
    let request = embeddings_request(&json!({"model": "e", "input": "just one"}), "gemini-embedding-001").unwrap();
    assert_eq!(embeddings_method(&request), "embedContent");
    assert_eq!(request, json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "just one"}]}}));
    let answer = embeddings_response(&json!({"embedding": {"values": [0.5, -0.5]}}), "gemini-embedding-001", 2);
    assert_eq!(answer["data"], json!([{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}]));
    assert!(embeddings_request(&json!({"input": [1, 2, 3]}), "m").is_err(), "token arrays are refused");
}

#[test]
fn vertex_text_embeddings_use_predict_and_report_tokens_per_input() {
    let request = vertex_embeddings_request(&json!({"input": ["a", "b"], "dimensions": 256})).unwrap();
    assert_eq!(
        request,
        json!({"instances": [{"content": "a"}, {"content": "b"}], "parameters": {"outputDimensionality": 256}})
    );
    let answer = vertex_embeddings_response(
        &json!({"predictions": [
            {"embeddings": {"values": [0.1], "statistics": {"token_count": 3, "truncated": false}}},
            {"embeddings": {"values": [0.2], "statistics": {"token_count": 4.0, "truncated": false}}}
        ]}),
        "text-embedding-005",
        99,
    );
    assert_eq!(answer["data"][1]["embedding"], json!([0.2]));
    assert_eq!(answer["usage"]["prompt_tokens"], 7);
}

#[test]
fn a_thought_signature_rides_in_the_tool_call_id_and_goes_back_with_the_call() {
    // Gemini 3 attaches a signature to a function call and wants it back in the next turn.
    let answer = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQB+/x9Zz=="}
    ]}, "finishReason": "STOP"}]});
    let hub = response_to_hub(&answer, "gemini-3-pro").unwrap();
    let id = hub["choices"][0]["message"]["tool_calls"][0]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("call_0__thought__") && !id.contains('+') && !id.contains('/') && !id.contains('='), "{id}");
    let next = json!({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": id, "content": "sunny"}
    ]});
    let request = request_from_hub(&next).unwrap();
    assert_eq!(request["contents"][1]["parts"][0]["thoughtSignature"], "CiQB+/x9Zz==");
    assert_eq!(request["contents"][2]["parts"][0]["functionResponse"]["name"], "get_weather");
}
