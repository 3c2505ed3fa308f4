//! Whole Responses answers to and from hub (OpenAI chat completion) answers.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::chunk::{First, MapOnly, text};
use super::write::{Json, OutItem, ResponseObject, TokenCounts, status_of};
use super::{new_id, usage_to_chat};
use crate::wire::unix_now;

/// The output items of a chat answer's message, in output order (reasoning, text, refusal, tool
/// calls), each with a fresh id.
struct Output<'a> {
    ids: Vec<String>,
    parts: Vec<Part<'a>>,
}

/// One output item of a chat answer, before its id is made.
enum Part<'a> {
    Reasoning(&'a str),
    Text(&'a str),
    Refusal(&'a str),
    Call { call_id: Json<'a>, name: Json<'a>, arguments: &'a str },
}

impl<'a> Output<'a> {
    fn new(reasoning: Option<&'a str>, text: Option<&'a str>, refusal: Option<&'a str>) -> Self {
        let mut parts = Vec::new();
        let present = |t: Option<&'a str>| t.filter(|t| !t.is_empty());
        parts.extend(present(reasoning).map(Part::Reasoning));
        parts.extend(present(text).map(Part::Text));
        parts.extend(present(refusal).map(Part::Refusal));
        Self { ids: Vec::new(), parts }
    }

    /// Writes the response around these items.
    fn write(mut self, model: &str, finish_reason: Option<&str>, usage: TokenCounts) -> Vec<u8> {
        self.ids = self
            .parts
            .iter()
            .map(|part| {
                new_id(match part {
                    Part::Reasoning(_) => "rs",
                    Part::Text(_) | Part::Refusal(_) => "msg",
                    Part::Call { .. } => "fc",
                })
            })
            .collect();
        let items: Vec<OutItem<'_>> = self
            .parts
            .iter()
            .zip(&self.ids)
            .map(|(part, id)| match *part {
                Part::Reasoning(text) => OutItem::Reasoning { id, text: Some(text) },
                Part::Text(text) => OutItem::Message { id, text: Some(text), status: "completed" },
                Part::Refusal(refusal) => OutItem::Refusal { id, refusal },
                Part::Call { call_id, name, arguments } => {
                    OutItem::Call { id, call_id, name, arguments, status: "completed" }
                }
            })
            .collect();
        let (status, incomplete) = status_of(finish_reason);
        let id = new_id("resp");
        let response = ResponseObject {
            id: &id,
            model,
            created_at: unix_now(),
            status,
            incomplete,
            error: None,
            output: &items,
            usage: Some(usage),
        };
        response.bytes()
    }
}

/// OpenAI chat completion → Responses `response` object (a fresh id: the conversation state
/// keys on it).
pub(crate) fn chat_to_responses(answer: &Value) -> Value {
    let choice = answer.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let text = |member: &str| message.get(member).and_then(Value::as_str);
    let mut output = Output::new(text("reasoning_content"), text("content"), text("refusal"));
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        output.parts.push(Part::Call {
            call_id: call.get("id").map_or(Json::Null, Json::Value),
            name: call.pointer("/function/name").map_or(Json::Null, Json::Value),
            arguments: call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}"),
        });
    }
    let model = answer.get("model").and_then(Value::as_str).unwrap_or_default();
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str);
    let bytes = output.write(model, finish_reason, TokenCounts::from_chat(answer.get("usage")));
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// A whole chat completion's bytes → a Responses `response` object's bytes and its usage, read
/// through a borrowed, typed view (no `Value`). `None` when the answer is not JSON or has a member
/// of an unexpected type: [`chat_to_responses`] reads it then, with the same meaning.
pub(crate) fn chat_bytes_to_responses(answer: &[u8]) -> Option<(Vec<u8>, crate::wire::Usage)> {
    let MapOnly(answer) = serde_json::from_slice::<MapOnly<ChatAnswer<'_>>>(answer).ok()?;
    let choice = answer.choices.and_then(|c| c.0).map(|c| c.0).unwrap_or_default();
    let message = choice.message.map(|m| m.0).unwrap_or_default();
    let mut output =
        Output::new(message.reasoning_content.as_deref(), message.content.as_deref(), message.refusal.as_deref());
    for MapOnly(call) in message.tool_calls.iter().flatten() {
        let function = call.function.as_ref().map(|f| &f.0);
        output.parts.push(Part::Call {
            call_id: call.id.as_deref().map_or(Json::Null, Json::Text),
            name: function.and_then(|f| f.name.as_deref()).map_or(Json::Null, Json::Text),
            arguments: function.and_then(|f| f.arguments.as_deref()).unwrap_or("{}"),
        });
    }
    let usage = answer.usage.map(|u| u.0).unwrap_or_default().counts();
    let bytes = output.write(answer.model.as_deref().unwrap_or_default(), choice.finish_reason.as_deref(), usage);
    Some((bytes, usage.usage()))
}

/// The parts of a chat completion the Responses object takes.
#[derive(Deserialize)]
struct ChatAnswer<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<MapOnly<ChatUsage>>,
    #[serde(borrow, default)]
    choices: Option<First<MapOnly<AnswerChoice<'a>>>>,
}

#[derive(Deserialize, Default)]
struct AnswerChoice<'a> {
    #[serde(borrow, default)]
    message: Option<MapOnly<AnswerMessage<'a>>>,
    #[serde(borrow, default, deserialize_with = "text")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct AnswerMessage<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<MapOnly<AnswerCall<'a>>>>,
}

#[derive(Deserialize)]
struct AnswerCall<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<MapOnly<AnswerFunction<'a>>>,
}

#[derive(Deserialize)]
struct AnswerFunction<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    arguments: Option<Cow<'a, str>>,
}

/// A chat `usage` object; a count that is not a whole number makes the typed reading fail (the
/// `Value` reading counts it 0).
#[derive(Deserialize, Default)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<MapOnly<Details>>,
    #[serde(default)]
    completion_tokens_details: Option<MapOnly<Details>>,
}

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl ChatUsage {
    fn counts(&self) -> TokenCounts {
        TokenCounts {
            input: self.prompt_tokens.unwrap_or(0),
            cached: self.prompt_tokens_details.as_ref().and_then(|d| d.0.cached_tokens).unwrap_or(0),
            output: self.completion_tokens.unwrap_or(0),
            reasoning: self.completion_tokens_details.as_ref().and_then(|d| d.0.reasoning_tokens).unwrap_or(0),
        }
    }
}

/// Responses `response` object → OpenAI chat completion. Items the hub has no place for
/// (hosted tools' calls, which the provider ran itself) are left out; the answer's text and its
/// function calls are kept.
pub(crate) fn responses_to_chat(answer: &Value) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in answer.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(piece) = part.get("text").and_then(Value::as_str) {
                        text.push_str(piece);
                    }
                }
            }
            Some("function_call") => calls.push(json!({
                "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": item.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": item.get("arguments").cloned().unwrap_or_else(|| json!("{}")),
                },
            })),
            Some("reasoning") => {
                let parts = item.get("content").or_else(|| item.get("summary")).and_then(Value::as_array);
                for part in parts.into_iter().flatten() {
                    if let Some(piece) = part.get("text").and_then(Value::as_str) {
                        reasoning.push_str(piece);
                    }
                }
            }
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let empty = text.is_empty() && !calls.is_empty();
    message.insert("content".into(), if empty { Value::Null } else { Value::String(text) });
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let finish = if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
        "tool_calls"
    } else {
        match answer.pointer("/incomplete_details/reason").and_then(Value::as_str) {
            Some("max_output_tokens") => "length",
            Some("content_filter") => "content_filter",
            _ => "stop",
        }
    };
    let id = answer.get("id").and_then(Value::as_str).unwrap_or("resp");
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": answer.get("created_at").cloned().unwrap_or_else(|| json!(unix_now())),
        "model": answer.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": usage_to_chat(answer.get("usage").unwrap_or(&Value::Null)),
    })
}

/// The typed reading of a chat answer's bytes and the `Value` reading agree (ids and times aside),
/// when the typed one reads it at all.
#[cfg(test)]
pub(crate) fn assert_readings_agree(answer: &[u8]) {
    let Some((typed, usage)) = chat_bytes_to_responses(answer) else { return };
    let normalised = |mut response: Value| {
        response["id"] = json!("resp");
        response["created_at"] = json!(0);
        for item in response["output"].as_array_mut().into_iter().flatten() {
            item["id"] = json!("item");
        }
        response
    };
    let lenient = chat_to_responses(&serde_json::from_slice(answer).unwrap_or(Value::Null));
    let typed: Value = serde_json::from_slice(&typed).unwrap_or(Value::Null);
    assert_eq!(super::usage_of(&lenient["usage"]), Some(usage));
    assert_eq!(normalised(typed), normalised(lenient), "{}", String::from_utf8_lossy(answer));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_value_readings_of_chat_answers_agree() {
        let answers = [
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "He said \"hi\"\n"}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
                             "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 1}}}),
            json!({"model": "m", "choices": [{"message": {"content": null, "reasoning_content": "think",
                   "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"a\":1}"}},
                                  {"id": "call_2", "function": {"name": "put"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [{"message": {"refusal": "no"}, "finish_reason": "content_filter"}], "usage": null}),
            json!({"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}, {"message": {"content": "second"}}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 2, "prompt_tokens_details": null}}),
            json!({"choices": []}),
            json!({}),
        ];
        for answer in answers {
            let bytes = answer.to_string();
            assert!(chat_bytes_to_responses(bytes.as_bytes()).is_some(), "{bytes}");
            assert_readings_agree(bytes.as_bytes());
        }
        // Members of unexpected types: left to the `Value` reading.
        for odd in [
            json!({"model": 5, "choices": [{"message": {"content": "x"}}]}),
            json!({"choices": [{"message": {"content": [{"type": "text", "text": "x"}]}}]}),
            json!({"choices": [{"message": {"tool_calls": [{"id": 7, "function": {"name": "f"}}]}}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 1.5}}),
            json!([1, 2]),
            json!(["m"]),
            json!({"choices": [[{"content": "x"}, "stop"]]}),
            json!({"choices": [{"message": ["x"]}]}),
            json!({"usage": [1, 2]}),
        ] {
            assert!(chat_bytes_to_responses(odd.to_string().as_bytes()).is_none(), "{odd}");
        }
        assert!(chat_bytes_to_responses(b"not json").is_none());
    }
}
