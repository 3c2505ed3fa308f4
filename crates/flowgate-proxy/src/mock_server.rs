//! `flowgate mock-upstream`: an HTTP server that speaks the OpenAI API (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/models`, `/v1/responses`) and the Anthropic API
//! (`/v1/messages`) with the `mock` provider's deterministic answers. It stands in for a real
//! provider in demos, integration tests and the benchmark (as the "direct to upstream" target).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::mock::{self, MockParams};
use crate::translate::{ApiFormat, Codec};

fn sse(events: Vec<Bytes>, params: &MockParams) -> Response {
    let mut response = Response::new(axum::body::Body::from_stream(mock::timed(events, params)));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn bad_request(message: &str) -> Response {
    (axum::http::StatusCode::BAD_REQUEST, Json(json!({"error": {"message": message, "type": "invalid_request_error"}})))
        .into_response()
}

fn parse(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice::<Value>(body).map_err(|e| Box::new(bad_request(&format!("invalid JSON: {e}"))))
}

fn model_of(body: &Value) -> String {
    body.get("model").and_then(Value::as_str).unwrap_or("mock").to_owned()
}

async fn wait(params: &MockParams) {
    if !params.latency.is_zero() {
        tokio::time::sleep(params.latency).await;
    }
}

/// The mock answer to a chat request in `codec`'s format, whole or streamed.
async fn answer(codec: &dyn Codec, body: &Value, params: &MockParams) -> Response {
    let answer = codec.mock_answer(body, params);
    let model = model_of(body);
    if body.get("stream") == Some(&Value::Bool(true)) {
        let include_usage = body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
        return sse(codec.mock_events(&answer, &model, params, include_usage), params);
    }
    wait(params).await;
    Json(codec.mock_body(&answer, &model)).into_response()
}

async fn chat(State(params): State<Arc<MockParams>>, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    answer(ApiFormat::OpenAi.codec(), &body, &params).await
}

async fn messages(State(params): State<Arc<MockParams>>, body: Bytes) -> Response {
    let body = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        let error = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}});
        return (axum::http::StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    answer(ApiFormat::Anthropic.codec(), &body, &params).await
}

/// The Responses endpoint's state: the timing knobs, and the conversations it keeps.
#[derive(Clone)]
struct ResponsesState {
    params: Arc<MockParams>,
    /// Kept responses by id: the whole conversation (input items and output), as OpenAI keeps a
    /// response with `store` so that `previous_response_id` can continue it.
    kept: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<Value>>>>,
}

/// The most conversations the mock keeps (the oldest are not evicted: past this, none is kept).
const MAX_KEPT: usize = 10_000;

/// `input` as a list of items (a string is one user message).
fn input_items(input: Option<&Value>) -> Vec<Value> {
    match input {
        Some(Value::String(text)) => vec![json!({"type": "message", "role": "user", "content": text})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// The final response object of a streamed Responses answer.
fn completed_response(events: &[Bytes]) -> Option<Value> {
    events.iter().rev().find_map(|event| {
        let text = std::str::from_utf8(event).ok()?;
        let data = text.lines().find_map(|line| line.strip_prefix("data: "))?;
        let mut value: Value = serde_json::from_str(data).ok()?;
        if value.get("type").and_then(Value::as_str) != Some("response.completed") {
            return None;
        }
        value.get_mut("response").map(Value::take)
    })
}

async fn responses(State(state): State<ResponsesState>, body: Bytes) -> Response {
    let mut body = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    // A continuation: the kept conversation, then the new input (OpenAI's behaviour).
    let mut conversation = Vec::new();
    if let Some(previous) = body.get("previous_response_id").and_then(Value::as_str) {
        let kept = state.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(previous).cloned();
        let Some(kept) = kept else {
            let error = json!({"error": {"message": format!("Previous response with id '{previous}' not found."),
                "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}});
            return (axum::http::StatusCode::BAD_REQUEST, Json(error)).into_response();
        };
        conversation = kept;
    }
    conversation.extend(input_items(body.get("input")));
    if let Some(object) = body.as_object_mut() {
        object.remove("previous_response_id");
        object.insert("input".to_owned(), Value::Array(conversation.clone()));
    }
    let store = body.get("store").and_then(Value::as_bool).unwrap_or(true);
    let keep = |response: &Value| {
        let (Some(id), Some(output)) = (response.get("id").and_then(Value::as_str), response.get("output")) else {
            return;
        };
        let mut kept = state.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if store && kept.len() < MAX_KEPT {
            let mut whole = conversation.clone();
            whole.extend(output.as_array().into_iter().flatten().cloned());
            kept.insert(id.to_owned(), whole);
        }
    };
    let codec = ApiFormat::Responses.codec();
    let answer = codec.mock_answer(&body, &state.params);
    let model = model_of(&body);
    if body.get("stream") == Some(&Value::Bool(true)) {
        let events = codec.mock_events(&answer, &model, &state.params, true);
        if let Some(response) = completed_response(&events) {
            keep(&response);
        }
        return sse(events, &state.params);
    }
    wait(&state.params).await;
    let response = codec.mock_body(&answer, &model);
    keep(&response);
    Json(response).into_response()
}

/// Anthropic's token count: a quarter of the bytes of the conversation (marked as the mock's by
/// an odd number, so a test can tell it from the gateway's estimate).
async fn count_tokens(body: Bytes) -> Response {
    match parse(&body) {
        Ok(body) => {
            let bytes = body.get("messages").map_or(0, |m| m.to_string().len());
            Json(json!({"input_tokens": (bytes / 4) | 1})).into_response()
        }
        Err(response) => *response,
    }
}

async fn embeddings(State(params): State<Arc<MockParams>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(body) => {
            wait(&params).await;
            Json(mock::embeddings(&body, &model_of(&body))).into_response()
        }
        Err(response) => *response,
    }
}

async fn completions(State(params): State<Arc<MockParams>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(body) if body.get("stream") == Some(&Value::Bool(true)) => {
            sse(mock::completion_events(&body, &model_of(&body), &params), &params)
        }
        Ok(body) => {
            wait(&params).await;
            Json(mock::completion(&body, &model_of(&body), &params)).into_response()
        }
        Err(response) => *response,
    }
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "mock", "object": "model", "created": 0, "owned_by": "flowgate"}]}))
}

/// The mock upstream's routes.
pub fn router(params: MockParams) -> Router {
    let params = Arc::new(params);
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .with_state(Arc::clone(&params))
        .merge(
            Router::new()
                .route("/v1/responses", post(responses))
                .route("/responses", post(responses))
                .with_state(ResponsesState { params, kept: Arc::default() }),
        )
}
