//! Turns an upstream answer into the client's response: JSON translated (or passed through) in
//! one piece, or a stream translated event by event as it arrives.

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
use serde_json::{Value, json};

use crate::dispatch::Dispatched;
use crate::error::{ApiFormat, ProxyError};
use crate::routing::InFlight;
use crate::sse::{SseParser, encode};
use crate::translate::stream::{AnthropicToOpenAi, OpenAiToAnthropic, Passthrough, StreamTransform};
use crate::translate::{self, Usage};
use crate::upstream::{Endpoint, UpstreamBody};

/// How a response ended, for spend, metrics and audit.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Tokens used, as reported by the upstream.
    pub usage: Usage,
    /// False when the stream broke, timed out or the client went away.
    pub completed: bool,
    /// Time to the first byte sent to the client (streams).
    pub ttft: Option<Duration>,
    /// The answer's text, when it was asked for (tenants that store prompts): the text of every
    /// choice or content block, or of every streamed delta, up to [`ANSWER_CAP`] bytes.
    pub answer: Option<String>,
}

/// Most answer text kept for the audit trail.
pub const ANSWER_CAP: usize = 1 << 20;

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

/// JSON pointers to the texts of a whole answer in `format`: each choice's message content and
/// completion text, or each content block's text (pointers to absent fields resolve to nothing).
pub(crate) fn answer_pointers(format: ApiFormat, value: &Value) -> Vec<String> {
    match format {
        ApiFormat::OpenAi => value
            .get("choices")
            .and_then(Value::as_array)
            .map(|choices| {
                (0..choices.len())
                    .flat_map(|i| [format!("/choices/{i}/message/content"), format!("/choices/{i}/text")])
                    .collect()
            })
            .unwrap_or_default(),
        ApiFormat::Anthropic => value
            .get("content")
            .and_then(Value::as_array)
            .map(|blocks| (0..blocks.len()).map(|i| format!("/content/{i}/text")).collect())
            .unwrap_or_default(),
    }
}

/// The pointer to the text delta of one stream event in `format`, when it carries one: the first
/// choice's `delta.content`, or a `text_delta`'s `delta.text`.
pub(crate) fn delta_pointer(format: ApiFormat, value: &Value) -> Option<&'static str> {
    let pointer = match format {
        ApiFormat::OpenAi => "/choices/0/delta/content",
        ApiFormat::Anthropic if value.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta") => {
            "/delta/text"
        }
        ApiFormat::Anthropic => return None,
    };
    value.pointer(pointer).is_some_and(Value::is_string).then_some(pointer)
}

/// The text of an answer in `format` (see [`answer_pointers`]).
fn answer_text(format: ApiFormat, body: &[u8]) -> String {
    let mut answer = String::new();
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return answer };
    for pointer in answer_pointers(format, &value) {
        if let Some(text) = value.pointer(&pointer).and_then(Value::as_str) {
            push_capped(&mut answer, text);
        }
    }
    answer
}

/// Appends the text delta of one upstream stream event in `format`, if it carries one.
fn collect_delta(answer: &mut String, format: ApiFormat, data: &str) {
    if answer.len() >= ANSWER_CAP || data == "[DONE]" {
        return;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else { return };
    if let Some(text) = delta_pointer(format, &value).and_then(|p| value.pointer(p)).and_then(Value::as_str) {
        push_capped(answer, text);
    }
}

/// Called exactly once when a response is finished (or abandoned).
pub type OnEnd = Box<dyn FnOnce(Summary) + Send>;

/// How the client response is built.
#[derive(Debug, Clone, Copy)]
pub struct Respond {
    /// The client's API format.
    pub format: ApiFormat,
    /// The route asked.
    pub endpoint: Endpoint,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Longest a stream may last.
    pub stream_timeout: Duration,
    /// Collect the answer's text for [`Summary::answer`].
    pub collect_answer: bool,
}

/// Builds the client response.
pub fn respond(how: Respond, dispatched: Dispatched, on_end: OnEnd) -> Response {
    let Respond { format, endpoint, include_usage, stream_timeout, collect_answer } = how;
    let Dispatched { response, deployment, in_flight, .. } = dispatched;
    let upstream_format = response.format;
    match response.body {
        UpstreamBody::Full(bytes) => {
            let (body, usage) = match full_body(format, upstream_format, endpoint, bytes) {
                Ok(result) => result,
                Err(error) => {
                    tracing::warn!(deployment = %deployment.id, "upstream sent an unparseable body");
                    on_end(Summary::default());
                    return error.into_response_for(format);
                }
            };
            drop(in_flight);
            let answer = collect_answer.then(|| answer_text(format, &body));
            on_end(Summary { usage, completed: true, ttft: None, answer });
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
        }
        UpstreamBody::Stream(upstream) => {
            let transform: Box<dyn StreamTransform> = match (upstream_format, format) {
                (ApiFormat::OpenAi, ApiFormat::OpenAi) => Box::new(Passthrough::openai(include_usage)),
                (ApiFormat::Anthropic, ApiFormat::Anthropic) => Box::new(Passthrough::anthropic()),
                (ApiFormat::Anthropic, ApiFormat::OpenAi) => {
                    Box::new(AnthropicToOpenAi::new(&deployment.model_name, include_usage))
                }
                (ApiFormat::OpenAi, ApiFormat::Anthropic) => Box::new(OpenAiToAnthropic::new(&deployment.model_name)),
            };
            let stream = TranslatedStream {
                upstream,
                parser: SseParser::default(),
                transform,
                pending: VecDeque::new(),
                done: false,
                format,
                started: Instant::now(),
                first_byte: None,
                deadline: Box::pin(tokio::time::sleep(stream_timeout)),
                answer: collect_answer.then(String::new),
                upstream_format,
                on_end: Some(on_end),
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
    }
}

/// A whole upstream body in the client's format, and its usage.
pub(crate) fn full_body(
    format: ApiFormat,
    upstream: ApiFormat,
    endpoint: Endpoint,
    bytes: Bytes,
) -> Result<(Bytes, Usage), ProxyError> {
    let parsed = || {
        serde_json::from_slice::<Value>(&bytes).map_err(|_| ProxyError::Upstream {
            status: 502,
            message: "upstream returned a body that is not JSON".to_owned(),
            code: Some("bad_upstream_response".to_owned()),
        })
    };
    if format == upstream {
        // Pass through untouched; only read usage, without building the whole document.
        #[derive(serde::Deserialize)]
        struct UsageOnly {
            #[serde(default)]
            usage: Option<Value>,
        }
        let usage = match serde_json::from_slice::<UsageOnly>(&bytes) {
            Ok(UsageOnly { usage: Some(usage) }) => match upstream {
                ApiFormat::OpenAi => Usage::from_openai(&usage).unwrap_or_default(),
                ApiFormat::Anthropic => Usage::from_anthropic(&usage),
            },
            Ok(UsageOnly { usage: None }) => Usage::default(),
            // Not an object (still passed through if it is JSON at all).
            Err(_) => {
                parsed()?;
                Usage::default()
            }
        };
        return Ok((bytes, usage));
    }
    let value = parsed()?;
    let translated = match (upstream, format, endpoint) {
        (ApiFormat::Anthropic, ApiFormat::OpenAi, _) => translate::response::anthropic_to_openai(&value),
        (ApiFormat::OpenAi, ApiFormat::Anthropic, _) => translate::response::openai_to_anthropic(&value),
        _ => value,
    };
    let usage = match format {
        ApiFormat::OpenAi => translated.get("usage").and_then(Usage::from_openai).unwrap_or_default(),
        ApiFormat::Anthropic => Usage::from_anthropic(translated.get("usage").unwrap_or(&Value::Null)),
    };
    Ok((Bytes::from(translated.to_string()), usage))
}

/// An error event in the client's stream format.
fn stream_error(format: ApiFormat, kind: &str, message: &str) -> Vec<Bytes> {
    match format {
        ApiFormat::OpenAi => vec![
            encode(
                None,
                &json!({"error": {"message": message, "type": "api_error", "param": null, "code": kind}}).to_string(),
            ),
            encode(None, "[DONE]"),
        ],
        ApiFormat::Anthropic => vec![encode(
            Some("error"),
            &json!({"type": "error", "error": {"type": "api_error", "message": message, "code": kind}}).to_string(),
        )],
    }
}

/// The client-facing stream: upstream chunks → SSE events → translated bytes, one at a time.
struct TranslatedStream {
    upstream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    parser: SseParser,
    transform: Box<dyn StreamTransform>,
    pending: VecDeque<Bytes>,
    done: bool,
    format: ApiFormat,
    started: Instant,
    first_byte: Option<Duration>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The answer's text so far, when collected.
    answer: Option<String>,
    upstream_format: ApiFormat,
    on_end: Option<OnEnd>,
    _in_flight: InFlight,
}

impl TranslatedStream {
    fn end(&mut self, completed: bool) {
        if let Some(on_end) = self.on_end.take() {
            on_end(Summary {
                usage: self.transform.usage(),
                completed,
                ttft: self.first_byte,
                answer: self.answer.take(),
            });
        }
    }

    fn fail(&mut self, kind: &str, message: &str) {
        tracing::warn!(kind, message, "stream ended early");
        self.pending.extend(stream_error(self.format, kind, message));
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
                return Poll::Ready(Some(Ok(bytes)));
            }
            if this.done {
                let completed = this.transform.completed();
                this.end(completed);
                return Poll::Ready(None);
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                this.fail("stream_timeout", "stream exceeded DISPATCH_STREAM_TIMEOUT_S");
                continue;
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => match this.parser.push(&chunk) {
                    Ok(events) => {
                        for event in &events {
                            if let Some(answer) = this.answer.as_mut() {
                                collect_delta(answer, this.upstream_format, &event.data);
                            }
                            let out = this.transform.on_event(event);
                            this.pending.extend(out);
                        }
                    }
                    Err(error) => this.fail("bad_upstream_stream", &error.to_string()),
                },
                Poll::Ready(Some(Err(error))) => this.fail("upstream_disconnected", &error.to_string()),
                Poll::Ready(None) => {
                    if let Some(event) = this.parser.finish() {
                        if let Some(answer) = this.answer.as_mut() {
                            collect_delta(answer, this.upstream_format, &event.data);
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
        // Dropped before the end: the client went away. Dropping `upstream` closes the upstream
        // connection, which cancels the generation there.
        if self.on_end.is_some() {
            tracing::info!("client disconnected mid-stream; upstream request cancelled");
            self.end(false);
        }
    }
}
