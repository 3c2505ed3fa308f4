//! The client's answer: a whole upstream body translated (or passed through) in one piece, or a
//! stream translated event by event as it arrives, ending in the finish stage exactly once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;
use serde_json::Value;

use super::finish::{Finish, Summary};
use crate::error::ProxyError;
use crate::routing::InFlight;
use crate::sse::SseParser;
use crate::translate::{self, ApiFormat, Codec, StreamTransform, Usage};

/// Most answer text kept for the audit trail.
pub(crate) const ANSWER_CAP: usize = 1 << 20;

/// Appends `text` to `answer`, keeping it within [`ANSWER_CAP`] bytes (cut at a char boundary).
fn push_capped(answer: &mut String, text: &str) {
    let room = ANSWER_CAP.saturating_sub(answer.len());
    if text.len() <= room {
        answer.push_str(text);
    } else {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        answer.push_str(&text[..end]);
    }
}

/// The text of an answer in `format` (see [`Codec::answer_pointers`]).
fn answer_text(codec: &dyn Codec, body: &[u8]) -> String {
    let mut answer = String::new();
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return answer };
    for pointer in codec.answer_pointers(&value) {
        if let Some(text) = value.pointer(&pointer).and_then(Value::as_str) {
            push_capped(&mut answer, text);
        }
    }
    answer
}

/// Appends the text delta of one upstream stream event, if it carries one.
fn collect_delta(answer: &mut String, codec: &dyn Codec, data: &str) {
    if answer.len() >= ANSWER_CAP {
        return;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else { return };
    if let Some(text) = codec.delta_pointer(&value).and_then(|p| value.pointer(p)).and_then(Value::as_str) {
        push_capped(answer, text);
    }
}

/// Bytes of generated text in one stream event's data: the lengths (as written, escapes
/// included) of the string values of `members` (`"name":`, see
/// [`Codec::generated_text_members`]). A scan for a few short patterns, no parsing: it runs on
/// every event of every stream, for the estimate of a stream that reports no usage.
fn generated_bytes(data: &str, members: &[&str]) -> u64 {
    // One pass over the event's colons (a vectorised search). A colon after a closing quote ends
    // a member name; only a name of a member's length is compared, so most colons cost a few
    // byte reads and no comparison at all.
    let bytes = data.as_bytes();
    let mut total = 0;
    let mut from = 0;
    while let Some(colon) = bytes.get(from..).and_then(|rest| memchr::memchr(b':', rest)).map(|at| from + at) {
        from = colon + 1;
        if colon == 0 || bytes.get(colon - 1) != Some(&b'"') {
            continue;
        }
        // `"name":` is a member's `"name":`: the same length, and the same text.
        let named = members.iter().any(|member| {
            colon + 1 >= member.len()
                && bytes.get(colon + 1 - member.len()..=colon).is_some_and(|head| head == member.as_bytes())
        });
        if !named {
            continue;
        }
        let mut at = colon + 1;
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        if bytes.get(at) != Some(&b'"') {
            continue;
        }
        let start = at + 1;
        let mut end = start;
        while let Some(&byte) = bytes.get(end) {
            match byte {
                b'\\' => end += 2,
                b'"' => break,
                _ => end += 1,
            }
        }
        let end = end.min(bytes.len());
        total += (end - start) as u64;
        from = end;
    }
    total
}

/// A whole answer as the client's JSON response.
pub(crate) fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// How a streamed answer is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamPlan<'a> {
    /// The client's format.
    pub(crate) client: ApiFormat,
    /// The upstream's format.
    pub(crate) upstream: ApiFormat,
    /// The answering model's name, for translated events.
    pub(crate) model: &'a str,
    /// The client asked for a final usage event.
    pub(crate) include_usage: bool,
    /// Longest the stream may last.
    pub(crate) timeout: Duration,
}

/// A stream translated event by event into the client's format; `finish` runs once when it ends,
/// breaks, or the client leaves.
pub(crate) fn stream_response(
    plan: StreamPlan<'_>,
    upstream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    in_flight: InFlight,
    finish: Finish,
) -> Response {
    let stream = TranslatedStream {
        upstream,
        parser: SseParser::default(),
        transform: translate::stream(plan.upstream, plan.client, plan.model, plan.include_usage),
        pending: VecDeque::new(),
        done: false,
        terminated: false,
        client: plan.client.codec(),
        started: Instant::now(),
        first_byte: None,
        deadline: Box::pin(tokio::time::sleep(plan.timeout)),
        answer: finish.collects_answer().then(String::new),
        generated: 0,
        upstream_codec: plan.upstream.codec(),
        finish: Some(finish),
        _in_flight: in_flight,
    };
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    *response.status_mut() = StatusCode::OK;
    response
}

/// A whole upstream body in the client's format, and its usage. Within one format the body is
/// passed through untouched and only its usage is read.
pub(crate) fn full_body(client: ApiFormat, upstream: ApiFormat, bytes: Bytes) -> Result<(Bytes, Usage), ProxyError> {
    let parsed = || {
        serde_json::from_slice::<Value>(&bytes).map_err(|_| ProxyError::Upstream {
            status: 502,
            message: "upstream returned a body that is not JSON".to_owned(),
            code: Some("bad_upstream_response".to_owned()),
            headers: crate::rate_headers::ProviderHeaders::default(),
        })
    };
    if client == upstream {
        // Only read usage, without building the whole document.
        #[derive(serde::Deserialize)]
        struct UsageOnly {
            #[serde(default)]
            usage: Option<Value>,
        }
        let usage = match serde_json::from_slice::<UsageOnly>(&bytes) {
            Ok(UsageOnly { usage: Some(usage) }) => upstream.codec().usage(&usage),
            Ok(UsageOnly { usage: None }) => Usage::default(),
            // Not an object (still passed through if it is JSON at all).
            Err(_) => {
                parsed()?;
                Usage::default()
            }
        };
        return Ok((bytes, usage));
    }
    if upstream.is_hub()
        && let Some(translated) = client.codec().response_from_hub_bytes(&bytes)
    {
        return Ok(translated);
    }
    let translated = translate::response(upstream, client, &parsed()?);
    let usage = client.codec().usage(translated.get("usage").unwrap_or(&Value::Null));
    Ok((Bytes::from(translated.to_string()), usage))
}

/// The answer's text, when it is to be stored.
pub(crate) fn collected_text(client: ApiFormat, body: &[u8], collect: bool) -> Option<String> {
    collect.then(|| answer_text(client.codec(), body))
}

/// The client-facing stream: upstream chunks → SSE events → translated bytes, one at a time.
struct TranslatedStream {
    upstream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    parser: SseParser,
    transform: Box<dyn StreamTransform>,
    pending: VecDeque<Bytes>,
    done: bool,
    /// The client's codec said an event sent to the client ended its stream ([`Codec::ends_stream`]).
    terminated: bool,
    client: &'static dyn Codec,
    started: Instant,
    first_byte: Option<Duration>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The answer's text so far, when collected.
    answer: Option<String>,
    /// Bytes of generated text seen in the upstream's events (for a stream without usage).
    generated: u64,
    upstream_codec: &'static dyn Codec,
    finish: Option<Finish>,
    _in_flight: InFlight,
}

impl TranslatedStream {
    fn end(&mut self, completed: bool) {
        if let Some(finish) = self.finish.take() {
            finish.done(Summary {
                usage: self.transform.usage(),
                completed,
                ttft: self.first_byte,
                answer: self.answer.take(),
                streamed_text_bytes: Some(self.generated),
            });
        }
    }

    fn fail(&mut self, code: &'static str, message: String) {
        tracing::warn!(code, message, "stream ended early");
        self.pending.extend(self.client.error_events(&ProxyError::StreamFailed { code, message }));
        self.done = true;
    }
}

impl Stream for TranslatedStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.pending.pop_front() {
                if this.first_byte.is_none() {
                    this.first_byte = Some(this.started.elapsed());
                }
                if !this.terminated && this.client.ends_stream(&bytes) {
                    this.terminated = true;
                }
                return Poll::Ready(Some(Ok(bytes)));
            }
            if this.done {
                let completed = this.transform.completed();
                this.end(completed);
                return Poll::Ready(None);
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                this.fail("stream_timeout", "stream exceeded DISPATCH_STREAM_TIMEOUT_S".to_owned());
                continue;
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => match this.parser.push(&chunk) {
                    Ok(events) => {
                        let members = this.upstream_codec.generated_text_members();
                        for event in &events {
                            this.generated += generated_bytes(&event.data, members);
                            if let Some(answer) = this.answer.as_mut() {
                                collect_delta(answer, this.upstream_codec, &event.data);
                            }
                            let out = this.transform.on_event(event);
                            this.pending.extend(out);
                        }
                    }
                    Err(error) => this.fail("bad_upstream_stream", error.to_string()),
                },
                Poll::Ready(Some(Err(error))) => this.fail("upstream_disconnected", error.to_string()),
                Poll::Ready(None) => {
                    if let Some(event) = this.parser.finish() {
                        this.generated += generated_bytes(&event.data, this.upstream_codec.generated_text_members());
                        if let Some(answer) = this.answer.as_mut() {
                            collect_delta(answer, this.upstream_codec, &event.data);
                        }
                        let out = this.transform.on_event(&event);
                        this.pending.extend(out);
                    }
                    let out = this.transform.finish();
                    this.pending.extend(out);
                    this.done = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for TranslatedStream {
    fn drop(&mut self) {
        // Dropped before the upstream's body ended: the client went away. Dropping `upstream`
        // closes the upstream connection, which cancels the generation there, if any is left.
        if self.finish.is_some() {
            // A client that read the stream's end (OpenAI `[DONE]`, Anthropic `message_stop`)
            // has its whole answer: the official SDKs close the connection right there, often
            // before the provider's body has ended. The stream is complete if the upstream's end
            // was read too (an end the gateway wrote after an error does not count).
            let completed = self.terminated && self.transform.completed();
            if completed {
                tracing::debug!("client closed the connection after the end of the stream");
            } else {
                tracing::info!("client disconnected mid-stream; upstream request cancelled");
            }
            self.end(completed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_text_is_counted_in_the_members_that_carry_it() {
        let openai = ApiFormat::OpenAi.codec().generated_text_members();
        let chunk = r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"héllo \"x\""},"finish_reason":null}]}"#;
        assert_eq!(generated_bytes(chunk, openai), "héllo \\\"x\\\"".len() as u64);
        let tool =
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{\"a\": 1}"}}]}}]}"#;
        assert_eq!(generated_bytes(tool, openai), r#"{\"a\": 1}"#.len() as u64);
        assert_eq!(generated_bytes(r#"{"choices":[{"delta":{"content":null}}]}"#, openai), 0);
        assert_eq!(generated_bytes(r#"{"choices":[{"delta":{"content": "ab"}}],"x":{"content":"cd"}}"#, openai), 4);
        assert_eq!(generated_bytes("[DONE]", openai), 0);
        // Cut short (no closing quote), or ending in a lone backslash: counted to the end, no panic.
        assert_eq!(generated_bytes(r#"{"content":"abc"#, openai), 3);
        assert_eq!(generated_bytes("{\"content\":\"ab\\", openai), 3);
        let anthropic = ApiFormat::Anthropic.codec().generated_text_members();
        let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#;
        assert_eq!(generated_bytes(delta, anthropic), 5);
        let json =
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"q\":"}}"#;
        assert_eq!(generated_bytes(json, anthropic), 7);
    }
}
