//! The parts of a hub (OpenAI chat) stream chunk that the Responses translation reads, read
//! without building a `serde_json::Value` for every chunk: text is borrowed from the event where it
//! needs no unescaping, and everything else is skipped. A chunk whose members have unexpected
//! types (a number for `content`, a string for `delta`) is read through `Value` instead, with the
//! same meaning as before: a member of the wrong type counts as absent.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What the translation takes from one chunk.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ChunkParts<'a> {
    pub(super) model: Option<Cow<'a, str>>,
    pub(super) error: Option<Value>,
    pub(super) usage: Option<Value>,
    /// Whether the chunk has a first choice at all.
    pub(super) has_choice: bool,
    pub(super) content: Option<Cow<'a, str>>,
    pub(super) reasoning: Option<Cow<'a, str>>,
    pub(super) tool_calls: Option<Value>,
    pub(super) finish_reason: Option<Cow<'a, str>>,
}

impl<'a> ChunkParts<'a> {
    /// The parts of the chunk `data`; `None` when it is not JSON.
    pub(super) fn read(data: &'a str) -> Option<Self> {
        if let Ok(MapOnly(chunk)) = serde_json::from_str::<MapOnly<Chunk<'a>>>(data) {
            let choice = chunk.choices.and_then(|c| c.0).map(|c| c.0);
            let has_choice = choice.is_some();
            let (delta, finish_reason) = choice.map(|c| (c.delta, c.finish_reason)).unwrap_or_default();
            let delta = delta.map(|d| d.0).unwrap_or_default();
            return Some(Self {
                model: chunk.model,
                error: chunk.error.filter(|e| !e.is_null()),
                usage: chunk.usage,
                has_choice,
                content: delta.content,
                reasoning: delta.reasoning_content,
                tool_calls: delta.tool_calls.filter(|c| !c.is_null()),
                finish_reason,
            });
        }
        let value = serde_json::from_str::<Value>(data).ok()?;
        Some(Self::from_value(&value))
    }

    /// The same parts read from a parsed chunk (the lenient path).
    fn from_value(value: &Value) -> ChunkParts<'static> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(|s| Cow::Owned(s.to_owned()));
        let choice = value.pointer("/choices/0");
        let delta = choice.and_then(|c| c.get("delta"));
        ChunkParts {
            model: text(value.get("model")),
            error: value.get("error").filter(|e| !e.is_null()).cloned(),
            usage: value.get("usage").filter(|u| !u.is_null()).cloned(),
            has_choice: choice.is_some(),
            content: text(delta.and_then(|d| d.get("content"))),
            reasoning: text(delta.and_then(|d| d.get("reasoning_content"))),
            tool_calls: delta.and_then(|d| d.get("tool_calls")).filter(|c| !c.is_null()).cloned(),
            finish_reason: text(choice.and_then(|c| c.get("finish_reason"))),
        }
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(borrow, default)]
    choices: Option<First<MapOnly<Choice<'a>>>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<MapOnly<Delta<'a>>>,
    #[serde(borrow, default, deserialize_with = "text")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Value>,
}

/// An optional string, borrowed from the input when it has no escapes (serde's own `Cow` reading
/// always copies inside an `Option`).
pub(super) fn text<'de: 'a, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_str(self)
        }
        fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(text)))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(text.to_owned())))
        }
        fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(text)))
        }
    }
    deserializer.deserialize_option(Text)
}

/// A struct read only from a JSON object (serde's derived structs also accept a list of their
/// members in order, which the `Value` reading does not).
pub(super) struct MapOnly<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for MapVisitor<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// The first element of `choices` (the rest skipped).
pub(super) struct First<T>(pub(super) Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FirstVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for FirstVisitor<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
            fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::invalid_type(de::Unexpected::Map, &self))
            }
        }
        deserializer.deserialize_seq(FirstVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn typed_and_lenient_readings_agree() {
        let chunks = [
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "he said \"hi\"\n"}, "finish_reason": null}]}),
            json!({"choices": [{"delta": {"reasoning_content": "hmm", "role": "assistant"}}, {"delta": {"content": "second"}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
            json!({"error": {"message": "boom", "code": "x"}}),
            json!({"choices": [{"delta": null, "finish_reason": "stop"}]}),
            // Odd types: read as absent, through the lenient path.
            json!({"model": 5, "choices": [{"delta": {"content": 7, "reasoning_content": ["x"]}, "finish_reason": 1}]}),
            json!({"choices": {"not": "a list"}}),
            json!({"choices": [{"delta": "text"}]}),
            // Lists where objects belong (serde would read a struct from its members in order).
            json!(["m"]),
            json!({"choices": [[null, "stop"]]}),
            json!({"choices": [{"delta": ["text"]}]}),
            json!({}),
        ];
        for chunk in chunks {
            let data = chunk.to_string();
            let read = ChunkParts::read(&data).unwrap();
            assert_eq!(read, ChunkParts::from_value(&chunk), "{data}");
        }
        assert_eq!(ChunkParts::read("not json"), None);
        assert!(matches!(
            ChunkParts::read(r#"{"choices":[{"delta":{"content":"plain"}}]}"#).unwrap().content,
            Some(Cow::Borrowed("plain"))
        ));
    }
}
