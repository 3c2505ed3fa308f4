//! The `mock` provider: deterministic answers with configurable latency and token timing, for
//! demos, tests and benchmarks. The same generator backs the in-process `mock/...` deployments and
//! the `flowgate mock-upstream` HTTP server (which speaks both the OpenAI and the Anthropic format,
//! so it can stand in for either provider).
//!
//! Answers: `mock_response` if configured, else `Mock answer to: <last user message>` (JSON shaped
//! by the schema when the request asks for structured output). When the
//! request offers tools (and `tool_choice` is not `none`), the answer is a call to the first tool
//! with arguments built from its JSON schema (`"mock"` for strings, `1` for numbers, ...).
//!
//! A scripted call: when the last user text holds `mock_tool:NAME {json arguments}` and a tool
//! `NAME` is offered, the answer calls that tool with exactly those arguments, and the answer after
//! its result is `Tool output: <the result's text>`, so a test can drive an agent client (Codex,
//! Claude Code) through a real tool round trip and see the tool's output come back.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::{Value, json};

use crate::wire::{Usage, unix_now};

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

/// The text of the last user turn that has text (an Anthropic turn that only carries tool
/// results has none).
fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| match m.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        })
        .find(|text| !text.is_empty())
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

/// An offered tool as a codec reads it from its format: its name and its JSON schema.
pub(crate) type OfferedTool<'a> = (Option<&'a Value>, Option<&'a Value>);

/// The marker of a scripted tool call in the user's text.
const SCRIPTED: &str = "mock_tool:";

/// The `mock_tool:NAME {arguments}` directive in `text`, if any: the tool's name and its arguments.
fn scripted_call(text: &str) -> Option<(&str, Value)> {
    let start = text.find(SCRIPTED)? + SCRIPTED.len();
    let rest = text.get(start..)?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))).unwrap_or(rest.len());
    let name = rest.get(..end)?;
    let arguments =
        serde_json::Deserializer::from_str(rest.get(end..)?.trim_start()).into_iter::<Value>().next()?.ok()?;
    (!name.is_empty()).then_some((name, arguments))
}

/// The text of the last tool result in `messages` (an OpenAI `tool` message or Anthropic
/// `tool_result` blocks).
fn last_tool_output(messages: &[Value]) -> Option<String> {
    let last = messages.last()?;
    let text_of = |content: Option<&Value>| match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    if last.get("role").and_then(Value::as_str) == Some("tool") {
        return Some(text_of(last.get("content")));
    }
    let blocks = last.get("content").and_then(Value::as_array)?;
    let results: Vec<String> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| text_of(b.get("content")))
        .collect();
    (!results.is_empty()).then(|| results.join(" "))
}

/// The answer to a chat request whose conversation is `messages` and whose offered tools
/// (name, JSON schema) are `tools`, in order; codecs read those from their format (and pass none
/// when `tool_choice` is `none`).
pub(crate) fn answer(body: &Value, messages: &[Value], tools: &[OfferedTool<'_>], params: &MockParams) -> MockAnswer {
    let prompt_tokens = approx_tokens(&body.get("messages").map(Value::to_string).unwrap_or_default());
    // After a tool result, answer in text so tool loops end.
    let tool_output = last_tool_output(messages);
    let user_text = last_user_text(messages);
    let scripted = scripted_call(&user_text);
    if let Some((name, arguments)) = &scripted
        && tool_output.is_none()
        && tools.iter().any(|(offered, _)| offered.and_then(Value::as_str) == Some(*name))
    {
        let arguments = arguments.to_string();
        return MockAnswer {
            text: String::new(),
            tool_call: Some(("call_mock_1".to_owned(), (*name).to_owned(), arguments.clone())),
            usage: Usage { prompt_tokens, completion_tokens: approx_tokens(&arguments) },
        };
    }
    if let (Some(_), Some(output)) = (&scripted, &tool_output) {
        let text = format!("Tool output: {}", output.chars().take(500).collect::<String>());
        let completion_tokens = text.split_whitespace().count().max(1) as u64;
        return MockAnswer { text, tool_call: None, usage: Usage { prompt_tokens, completion_tokens } };
    }
    if let Some((Some(name), schema)) = tools.first().copied()
        && tool_output.is_none()
    {
        let arguments = example_for(schema.unwrap_or(&json!({"type": "object"}))).to_string();
        let name = name.as_str().unwrap_or("tool").to_owned();
        return MockAnswer {
            text: String::new(),
            tool_call: Some(("call_mock_1".to_owned(), name, arguments.clone())),
            usage: Usage { prompt_tokens, completion_tokens: approx_tokens(&arguments) },
        };
    }
    // Structured output: an answer shaped by the schema asked for.
    let schema = body.pointer("/response_format/json_schema/schema").filter(|_| params.response.is_none());
    let text = match schema {
        Some(schema) => example_for(schema).to_string(),
        None => params.response.clone().unwrap_or_else(|| {
            let asked: String = user_text.chars().take(200).collect();
            format!("Mock answer to: {asked}")
        }),
    };
    let completion_tokens = text.split_whitespace().count().max(1) as u64;
    MockAnswer { text, tool_call: None, usage: Usage { prompt_tokens, completion_tokens } }
}

/// Splits `text` into `count` pieces (or one per word), keeping the spaces.
pub(crate) fn pieces(text: &str, count: Option<u32>) -> Vec<String> {
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

/// The text of a legacy completion and its usage.
fn completion_text(body: &Value, params: &MockParams) -> (String, Usage) {
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
    (text, Usage { prompt_tokens: approx_tokens(&prompt), completion_tokens })
}

/// A legacy text completion.
pub fn completion(body: &Value, model: &str, params: &MockParams) -> Value {
    let (text, usage) = completion_text(body, params);
    json!({
        "id": "cmpl-mock", "object": "text_completion", "created": unix_now(), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": null}],
        "usage": usage.to_openai(),
    })
}

/// A legacy text completion streamed as OpenAI streams it: `text_completion` chunks with the
/// text in `choices[0].text`, the last with `finish_reason`, a usage chunk with no choices when
/// `stream_options.include_usage` asks for it, then `[DONE]`.
pub fn completion_events(body: &Value, model: &str, params: &MockParams) -> Vec<Bytes> {
    let (text, usage) = completion_text(body, params);
    let created = unix_now();
    let chunk = |choices: Value| {
        let chunk = json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model, "choices": choices});
        crate::sse::encode_json(None, &chunk)
    };
    let mut out: Vec<Bytes> = pieces(&text, params.chunks)
        .into_iter()
        .map(|piece| chunk(json!([{"index": 0, "text": piece, "finish_reason": null, "logprobs": null}])))
        .collect();
    out.push(chunk(json!([{"index": 0, "text": "", "finish_reason": "stop", "logprobs": null}])));
    if body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        let chunk = json!({"id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
            "choices": [], "usage": usage.to_openai()});
        out.push(crate::sse::encode_json(None, &chunk));
    }
    out.push(crate::sse::encode(None, "[DONE]"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::Codec;
    use crate::translate::openai::OpenAi;

    #[test]
    fn echoes_the_last_user_message_deterministically() {
        let body = json!({"messages": [{"role": "user", "content": "hello there"}]});
        let first = OpenAi.mock_answer(&body, &MockParams::default());
        assert_eq!(first.text, "Mock answer to: hello there");
        assert_eq!(first, OpenAi.mock_answer(&body, &MockParams::default()));
    }

    #[test]
    fn calls_the_first_tool_with_schema_shaped_arguments() {
        let body = json!({
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]
        });
        let answer = OpenAi.mock_answer(&body, &MockParams::default());
        let (_, name, arguments) = answer.tool_call.unwrap();
        assert_eq!(name, "weather");
        assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "mock", "days": 1}));
    }

    #[test]
    fn a_scripted_call_picks_its_tool_and_echoes_the_result() {
        let tools = json!([
            {"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "exec_command", "parameters": {"type": "object"}}}
        ]);
        let asked = "run it: mock_tool:exec_command {\"cmd\": \"echo ok\"} please";
        let body = json!({"messages": [{"role": "user", "content": asked}], "tools": tools});
        let (_, name, arguments) = OpenAi.mock_answer(&body, &MockParams::default()).tool_call.unwrap();
        assert_eq!(
            (name.as_str(), serde_json::from_str::<Value>(&arguments).unwrap()),
            ("exec_command", json!({"cmd": "echo ok"}))
        );

        let after = json!({"messages": [
            {"role": "user", "content": asked},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "exec_command", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": "c", "content": "ok\n"}
        ], "tools": tools});
        let answer = OpenAi.mock_answer(&after, &MockParams::default());
        assert_eq!((answer.text.as_str(), answer.tool_call), ("Tool output: ok\n", None));

        // A tool that is not offered is not called: the first one is, as without a script.
        let unknown = json!({"messages": [{"role": "user", "content": "mock_tool:nope {}"}], "tools": tools});
        assert_eq!(OpenAi.mock_answer(&unknown, &MockParams::default()).tool_call.unwrap().1, "read");
        assert_eq!(scripted_call("mock_tool: {}"), None);
        assert_eq!(scripted_call("mock_tool:x {broken"), None);
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
