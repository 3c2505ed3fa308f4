//! The `mock` provider: deterministic answers with configurable latency and token timing, for
//! demos, tests and benchmarks. The same generator backs the in-process `mock/...` deployments and
//! the `flowgate mock-upstream` HTTP server (which speaks both the OpenAI and the Anthropic format,
//! so it can stand in for either provider).
//!
//! Answers: `mock_response` if configured, else `Mock answer to: <last user message>`. When the
//! request offers tools (and `tool_choice` is not `none`), the answer is a call to the first tool
//! with arguments built from its JSON schema (`"mock"` for strings, `1` for numbers, ...).

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::{Value, json};

use crate::sse::encode;
use crate::translate::{Usage, unix_now};

/// Timing and content knobs of a mock deployment.
#[derive(Debug, Clone, Default)]
pub struct MockParams {
    /// Fixed answer text.
    pub response: Option<String>,
    /// Delay before the first byte.
    pub latency: Duration,
    /// Delay between streamed chunks.
    pub chunk_delay: Duration,
    /// Number of streamed content chunks (default: one per word).
    pub chunks: Option<u32>,
}

/// A generated answer, independent of format.
#[derive(Debug, Clone, PartialEq)]
pub struct MockAnswer {
    /// Text content (empty for a pure tool call).
    pub text: String,
    /// A tool call: (id, name, arguments as JSON text).
    pub tool_call: Option<(String, String, String)>,
    /// Token counts (approximated: 4 characters per prompt token, one per word of answer).
    pub usage: Usage,
}

fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| match m.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        })
        .unwrap_or_default()
}

fn example_for(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut object = serde_json::Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    object.insert(name.clone(), example_for(property));
                }
            }
            Value::Object(object)
        }
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([example_for(schema.get("items").unwrap_or(&Value::Null))]),
        _ => match schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            Some(first) => first.clone(),
            None => json!("mock"),
        },
    }
}

fn approx_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// The answer to an OpenAI-format chat request (`body`).
pub fn answer_openai(body: &Value, params: &MockParams) -> MockAnswer {
    let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let prompt_tokens = approx_tokens(&body.get("messages").map(Value::to_string).unwrap_or_default());
    let tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .filter(|_| body.get("tool_choice").and_then(Value::as_str) != Some("none"))
        .and_then(|tool| tool.get("function"));
    answer(messages, tool.map(|f| (f.get("name"), f.get("parameters"))), prompt_tokens, params)
}

/// The answer to an Anthropic-format messages request (`body`).
pub fn answer_anthropic(body: &Value, params: &MockParams) -> MockAnswer {
    let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let prompt_tokens = approx_tokens(&body.get("messages").map(Value::to_string).unwrap_or_default());
    let tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.first())
        .filter(|_| body.pointer("/tool_choice/type").and_then(Value::as_str) != Some("none"));
    answer(messages, tool.map(|t| (t.get("name"), t.get("input_schema"))), prompt_tokens, params)
}

fn answer(
    messages: &[Value],
    tool: Option<(Option<&Value>, Option<&Value>)>,
    prompt_tokens: u64,
    params: &MockParams,
) -> MockAnswer {
    // After a tool result, answer in text so tool loops end.
    let after_tool = messages.last().is_some_and(|m| {
        m.get("role").and_then(Value::as_str) == Some("tool")
            || m.get("content").and_then(Value::as_array).is_some_and(|blocks| {
                blocks.iter().any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            })
    });
    if let Some((Some(name), schema)) = tool
        && !after_tool
    {
        let arguments = example_for(schema.unwrap_or(&json!({"type": "object"}))).to_string();
        let name = name.as_str().unwrap_or("tool").to_owned();
        return MockAnswer {
            text: String::new(),
            tool_call: Some(("call_mock_1".to_owned(), name, arguments.clone())),
            usage: Usage { prompt_tokens, completion_tokens: approx_tokens(&arguments) },
        };
    }
    let text = params.response.clone().unwrap_or_else(|| {
        let asked: String = last_user_text(messages).chars().take(200).collect();
        format!("Mock answer to: {asked}")
    });
    let completion_tokens = text.split_whitespace().count().max(1) as u64;
    MockAnswer { text, tool_call: None, usage: Usage { prompt_tokens, completion_tokens } }
}

/// Splits `text` into `count` pieces (or one per word), keeping the spaces.
fn pieces(text: &str, count: Option<u32>) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let count = count.map_or(words.len(), |c| c.max(1) as usize);
    if words.is_empty() {
        return vec![String::new(); count.max(1)];
    }
    let per = words.len().div_ceil(count).max(1);
    let mut out: Vec<String> = words.chunks(per).map(|c| c.concat()).collect();
    while out.len() < count {
        out.push(String::new());
    }
    out
}

/// An OpenAI chat completion.
pub fn openai_json(answer: &MockAnswer, model: &str) -> Value {
    let mut message =
        json!({"role": "assistant", "content": if answer.text.is_empty() { Value::Null } else { json!(answer.text) }});
    let finish = if let Some((id, name, arguments)) = &answer.tool_call {
        message["tool_calls"] =
            json!([{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]);
        "tool_calls"
    } else {
        "stop"
    };
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": answer.usage.to_openai(),
    })
}

/// An Anthropic message.
pub fn anthropic_json(answer: &MockAnswer, model: &str) -> Value {
    let (content, stop) = match &answer.tool_call {
        Some((id, name, arguments)) => {
            let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
            (
                json!([{"type": "tool_use", "id": id.replace("call_", "toolu_"), "name": name, "input": input}]),
                "tool_use",
            )
        }
        None => (json!([{"type": "text", "text": answer.text}]), "end_turn"),
    };
    json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": answer.usage.to_anthropic(),
    })
}

/// Events of an OpenAI stream for `answer` (without timing).
pub fn openai_events(answer: &MockAnswer, model: &str, params: &MockParams, include_usage: bool) -> Vec<Bytes> {
    let created = unix_now();
    let chunk = |delta: Value, finish: Option<&str>| {
        let chunk = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        });
        encode(None, &chunk.to_string())
    };
    let mut out = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let finish = if let Some((id, name, arguments)) = &answer.tool_call {
        out.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            None,
        ));
        for piece in pieces(arguments, params.chunks.or(Some(3))) {
            out.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), None));
        }
        "tool_calls"
    } else {
        for piece in pieces(&answer.text, params.chunks) {
            out.push(chunk(json!({"content": piece}), None));
        }
        "stop"
    };
    out.push(chunk(json!({}), Some(finish)));
    if include_usage {
        let usage = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": answer.usage.to_openai(),
        });
        out.push(encode(None, &usage.to_string()));
    }
    out.push(encode(None, "[DONE]"));
    out
}

/// Events of an Anthropic stream for `answer` (without timing).
pub fn anthropic_events(answer: &MockAnswer, model: &str, params: &MockParams) -> Vec<Bytes> {
    let event = |name: &str, data: Value| encode(Some(name), &data.to_string());
    let mut out = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": answer.usage.prompt_tokens, "output_tokens": 1},
        }}),
    )];
    let stop = if let Some((id, name, arguments)) = &answer.tool_call {
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": id.replace("call_", "toolu_"), "name": name, "input": {}}}),
        ));
        for piece in pieces(arguments, params.chunks.or(Some(3))) {
            out.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        "tool_use"
    } else {
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ));
        for piece in pieces(&answer.text, params.chunks) {
            out.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        "end_turn"
    };
    out.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    out.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": answer.usage.completion_tokens}}),
    ));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

/// Plays `events` with the configured timing: `latency` before the first, `chunk_delay` between.
pub fn timed(events: Vec<Bytes>, params: &MockParams) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    let latency = params.latency;
    let delay = params.chunk_delay;
    futures_util::stream::iter(events.into_iter().enumerate())
        .then(move |(index, bytes)| async move {
            let wait = if index == 0 { latency } else { delay };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok(bytes)
        })
        .boxed()
}

/// Deterministic embedding vectors (16 dimensions, unit length) for each input.
pub fn embeddings(body: &Value, model: &str) -> Value {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect()
        }
        _ => vec![String::new()],
    };
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            tokens += approx_tokens(text);
            let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
            let raw: Vec<f64> = digest.as_ref()[..16].iter().map(|b| f64::from(*b) / 255.0 - 0.5).collect();
            let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::EPSILON);
            let vector: Vec<f64> = raw.iter().map(|x| x / norm).collect();
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

/// A legacy text completion.
pub fn completion(body: &Value, model: &str, params: &MockParams) -> Value {
    let prompt = match body.get("prompt") {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let text = params
        .response
        .clone()
        .unwrap_or_else(|| format!("Mock completion of: {}", prompt.chars().take(200).collect::<String>()));
    let completion_tokens = text.split_whitespace().count() as u64;
    let prompt_tokens = approx_tokens(&prompt);
    json!({
        "id": "cmpl-mock", "object": "text_completion", "created": unix_now(), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": null}],
        "usage": Usage { prompt_tokens, completion_tokens }.to_openai(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_last_user_message_deterministically() {
        let body = json!({"messages": [{"role": "user", "content": "hello there"}]});
        let first = answer_openai(&body, &MockParams::default());
        assert_eq!(first.text, "Mock answer to: hello there");
        assert_eq!(first, answer_openai(&body, &MockParams::default()));
    }

    #[test]
    fn calls_the_first_tool_with_schema_shaped_arguments() {
        let body = json!({
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]
        });
        let answer = answer_openai(&body, &MockParams::default());
        let (_, name, arguments) = answer.tool_call.unwrap();
        assert_eq!(name, "weather");
        assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "mock", "days": 1}));
    }

    #[test]
    fn pieces_cover_the_text_exactly() {
        assert_eq!(pieces("a b c d", None).concat(), "a b c d");
        assert_eq!(pieces("a b c d", Some(2)).len(), 2);
        assert_eq!(pieces("a b", Some(5)).len(), 5);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let out = embeddings(&json!({"input": ["x", "y"]}), "m");
        let v: Vec<f64> = serde_json::from_value(out["data"][0]["embedding"].clone()).unwrap();
        assert_eq!(v.len(), 16);
        assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(out, embeddings(&json!({"input": ["x", "y"]}), "m"));
    }
}
