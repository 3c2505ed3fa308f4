//! Gemini and Bedrock upstreams, from both ingress formats, streamed and not, with tools: fake
//! providers on real sockets speak each wire format as the provider documents it (fixtures in
//! `tests/fixtures/gemini` and `tests/fixtures/bedrock`) and check what the gateway sends them:
//! the fake Gemini its URL, key header and request shape, the fake Bedrock the SigV4 signature
//! (computed again with the same algorithm) and the Converse shape.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use flowgate_proxy::aws::{eventstream, sigv4};
use flowgate_test_utils::{TestApp, spawn_app};
use serde_json::{Value, json};

use flowgate_test_utils::sse_events;

pub(super) fn fixture(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)).unwrap()
}

pub(super) fn json_fixture(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).unwrap()
}

/// What a fake provider received: (path and query, body).
pub(super) type Seen = Arc<Mutex<Vec<(String, Value)>>>;

pub(super) const GEMINI_KEY: &str = "gemini-test-key";

pub(super) fn gemini_error(status: StatusCode, message: &str, code: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": code}});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A fake Gemini API: `POST /v1beta/models/{model}:{method}` with `x-goog-api-key`.
pub(super) async fn fake_gemini(seen: Seen) -> String {
    let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        async move {
            let path = uri.path_and_query().map(ToString::to_string).unwrap_or_default();
            if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(GEMINI_KEY) {
                return gemini_error(
                    StatusCode::BAD_REQUEST,
                    "API key not valid. Please pass a valid API key.",
                    "INVALID_ARGUMENT",
                );
            }
            let Ok(request) = serde_json::from_slice::<Value>(&body) else {
                return gemini_error(StatusCode::BAD_REQUEST, "Invalid JSON payload received.", "INVALID_ARGUMENT");
            };
            seen.lock().unwrap().push((path.clone(), request.clone()));
            let method = path.split(':').nth(1).unwrap_or_default();
            if method == "batchEmbedContents" || method == "embedContent" {
                return crate::provider_embeddings::gemini_embeddings(method, &path, &request);
            }
            // Gemini refuses members it does not know.
            for unknown in ["messages", "model", "max_tokens", "stream"] {
                if request.get(unknown).is_some() {
                    return gemini_error(
                        StatusCode::BAD_REQUEST,
                        &format!("Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."),
                        "INVALID_ARGUMENT",
                    );
                }
            }
            let contents = request["contents"].as_array().cloned().unwrap_or_default();
            if contents.is_empty() || contents.iter().any(|c| !matches!(c["role"].as_str(), Some("user" | "model"))) {
                return gemini_error(StatusCode::BAD_REQUEST, "contents is not specified", "INVALID_ARGUMENT");
            }
            let asked = request.to_string();
            let kind = if asked.contains("forbidden topic") {
                "blocked"
            } else if request.get("tools").is_some() && !asked.contains("functionResponse") {
                "function_call"
            } else {
                "text"
            };
            match method {
                "streamGenerateContent?alt=sse" => {
                    let file = match kind {
                        "blocked" => "gemini/stream_blocked.sse",
                        "function_call" => "gemini/stream_function_call.sse",
                        _ => "gemini/stream_text.sse",
                    };
                    // One event per chunk, as the API sends them.
                    let events: Vec<Result<Bytes, std::io::Error>> = fixture(file)
                        .split_inclusive("\r\n\r\n")
                        .map(|event| Ok(Bytes::from(event.to_owned())))
                        .collect();
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from_stream(futures_util::stream::iter(events)))
                        .unwrap()
                }
                "generateContent" => {
                    let file = match kind {
                        "blocked" => "gemini/blocked_prompt.json",
                        "function_call" => "gemini/generate_function_call.json",
                        _ => "gemini/generate_text.json",
                    };
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(fixture(file)))
                        .unwrap()
                }
                _ => gemini_error(StatusCode::NOT_FOUND, "method not found", "NOT_FOUND"),
            }
        }
    };
    let app = axum::Router::new().route("/v1beta/models/{*rest}", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn gemini_app(seen: &Seen) -> TestApp {
    let base = fake_gemini(seen.clone()).await;
    spawn_app(&format!(
        "model_list:
  - model_name: flash
    litellm_params:
      model: gemini/gemini-2.0-flash
      api_base: {base}
      api_key: {GEMINI_KEY}
      temperature: 0.1
  - model_name: flash-bad-key
    litellm_params: {{model: gemini/gemini-2.0-flash, api_base: '{base}', api_key: wrong}}
  - model_name: embed
    litellm_params: {{model: gemini/text-embedding-004, api_base: '{base}', api_key: {GEMINI_KEY}}}
  - model_name: careful
    litellm_params: {{model: mock/careful, mock_response: 'I can help with something else.'}}
router_settings:
  num_retries: 0
  content_policy_fallbacks: [{{flash: [careful]}}]
"
    ))
    .await
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}})
}

#[tokio::test]
async fn gemini_answers_openai_clients_whole_and_streamed_with_usage() {
    let seen = Seen::default();
    let app = gemini_app(&seen).await;
    let (_, key) = app.create_key(json!({})).await;
    let body = json!({"model": "flash", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]});
    let response = app.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Paris is the capital of France.");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["prompt_tokens"], 11);
    assert_eq!(answer["usage"]["completion_tokens"], 7);
    {
        let seen = seen.lock().unwrap();
        let (path, request) = seen.last().unwrap();
        assert_eq!(path, "/v1beta/models/gemini-2.0-flash:generateContent");
        assert_eq!(request["systemInstruction"]["parts"][0]["text"], "Be brief.");
        assert_eq!(request["generationConfig"]["temperature"], 0.1, "the deployment's default");
    }

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    streamed["temperature"] = json!(0.9);
    let response = app.post("/v1/chat/completions", &key, &streamed).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(response).await;
    let chunks: Vec<Value> =
        events.iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let text: String =
        chunks.iter().filter_map(|c| c.pointer("/choices/0/delta/content").and_then(Value::as_str)).collect();
    assert_eq!(text, "Paris is the capital of France.");
    let usage = chunks.iter().find_map(|c| c.get("usage").filter(|u| !u.is_null())).unwrap();
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(11), Some(7)));
    assert_eq!(events.last().unwrap().1, "[DONE]");
    {
        let seen = seen.lock().unwrap();
        let (path, request) = seen.last().unwrap();
        assert_eq!(path, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
        assert_eq!(request["generationConfig"]["temperature"], 0.9, "the client's value wins over the default");
    }

    // A client that did not ask for usage gets no usage chunk (the spend is counted all the same).
    let mut quiet = body.clone();
    quiet["stream"] = json!(true);
    let events = sse_events(app.post("/v1/chat/completions", &key, &quiet).await).await;
    assert!(events.iter().all(|(_, data)| !data.contains("\"usage\"")), "{events:?}");
    assert_eq!(events.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn gemini_function_calls_reach_anthropic_clients_streamed_and_whole() {
    let seen = Seen::default();
    let app = gemini_app(&seen).await;
    let (_, key) = app.create_key(json!({})).await;
    let body = json!({
        "model": "flash", "max_tokens": 200,
        "tools": [{"name": "get_weather", "description": "Current weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "messages": [{"role": "user", "content": "Weather in Paris?"}]
    });
    let response = app.post("/anthropic/v1/messages", &key, &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let tool_use = answer["content"].as_array().unwrap().iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(tool_use["name"], "get_weather");
    assert_eq!(tool_use["input"], json!({"city": "Paris", "unit": "celsius"}));
    assert_eq!(answer["stop_reason"], "tool_use");
    assert_eq!(answer["usage"]["input_tokens"], 52);
    {
        let seen = seen.lock().unwrap();
        let declaration = &seen.last().unwrap().1["tools"][0]["functionDeclarations"][0];
        assert_eq!(declaration["name"], "get_weather");
    }

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let response = app.post("/anthropic/v1/messages", &key, &streamed).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(response).await;
    let names: Vec<&str> = events.iter().filter_map(|(name, _)| name.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let start = events
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("content_block_start"))
        .map(|(_, data)| serde_json::from_str::<Value>(data).unwrap())
        .find(|v| v["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(start["content_block"]["name"], "get_weather");
    let arguments: String = events
        .iter()
        .filter(|(name, _)| name.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
        .filter_map(|v| v.pointer("/delta/partial_json").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "Paris", "unit": "celsius"}));
    let delta = events.iter().find(|(name, _)| name.as_deref() == Some("message_delta")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&delta.1).unwrap()["delta"]["stop_reason"], "tool_use");

    // The tool's result goes back as a functionResponse named after the call.
    let follow_up = json!({
        "model": "flash", "max_tokens": 200,
        "tools": body["tools"],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_0", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_0", "content": "21 degrees, sunny"}]}
        ]
    });
    let response = app.post("/anthropic/v1/messages", &key, &follow_up).await;
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap();
    let contents = &seen.last().unwrap().1["contents"];
    assert_eq!(contents[1]["parts"][0]["functionCall"]["name"], "get_weather");
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"content": "21 degrees, sunny"}})
    );
}

#[tokio::test]
async fn a_gemini_safety_block_is_a_clear_error_or_goes_to_the_content_policy_fallback() {
    let seen = Seen::default();
    let app = gemini_app(&seen).await;
    let (_, key) = app.create_key(json!({})).await;
    // Without a fallback: the client is told why, in its format.
    let body =
        json!({"model": "flash", "messages": [{"role": "user", "content": "Tell me about the forbidden topic"}]});
    let app_without_fallback = spawn_app(&format!(
        "model_list:\n  - {{model_name: flash, litellm_params: {{model: gemini/gemini-2.0-flash, api_base: '{}', api_key: {GEMINI_KEY}}}}}\nrouter_settings: {{num_retries: 0}}\n",
        fake_gemini(seen.clone()).await
    ))
    .await;
    let (_, other_key) = app_without_fallback.create_key(json!({})).await;
    for stream in [false, true] {
        let mut asked = body.clone();
        asked["stream"] = json!(stream);
        let response = app_without_fallback.post("/v1/chat/completions", &other_key, &asked).await;
        assert_eq!(response.status(), 400, "stream {stream}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "content_policy_violation", "stream {stream}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("blocked the prompt") && message.contains("SAFETY"), "{message}");
    }
    let response = app_without_fallback
        .post(
            "/anthropic/v1/messages",
            &other_key,
            &json!({"model": "flash", "max_tokens": 10, "messages": body["messages"]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert!(error["error"]["message"].as_str().unwrap().contains("SAFETY"), "{error}");

    // With content_policy_fallbacks: the fallback answers.
    for stream in [false, true] {
        let mut asked = body.clone();
        asked["stream"] = json!(stream);
        let response = app.post("/v1/chat/completions", &key, &asked).await;
        assert_eq!(response.status(), 200, "stream {stream}");
        let text = if stream {
            sse_events(response)
                .await
                .iter()
                .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
                .filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_owned))
                .collect::<String>()
        } else {
            response.json::<Value>().await.unwrap()["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
        };
        assert_eq!(text, "I can help with something else.", "stream {stream}");
    }
}

#[tokio::test]
async fn gemini_embeddings_and_a_rejected_key() {
    let seen = Seen::default();
    let app = gemini_app(&seen).await;
    let (_, key) = app.create_key(json!({})).await;
    let response = app.post("/v1/embeddings", &key, &json!({"model": "embed", "input": ["a", "b"]})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer["data"][0]["embedding"][0], 0.013168523);
    assert_eq!(seen.lock().unwrap().last().unwrap().0, "/v1beta/models/text-embedding-004:batchEmbedContents");

    let response = app.chat(&key, "flash-bad-key", "hi").await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_auth_failed", "{error}");
    assert!(!error.to_string().contains("wrong"), "the key never shows: {error}");
}

pub(super) const AWS_KEY_ID: &str = "AKIDEXAMPLE";
pub(super) const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub(super) const AWS_TOKEN: &str = "session-token-example";

pub(super) fn bedrock_error(status: StatusCode, kind: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
        .body(Body::from(json!({"message": message}).to_string()))
        .unwrap()
}

/// Checks the request's SigV4 signature the way AWS does: the signed headers named in
/// `Authorization`, the path as sent, the body; region `us-west-2`, service `bedrock`.
fn signature_ok(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("no Authorization")?;
    let rest = authorization.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not SigV4")?;
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for part in rest.split(", ") {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = v;
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = v;
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = v;
        }
    }
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[0] != AWS_KEY_ID || scope[2] != "us-west-2" || scope[3] != "bedrock" {
        return Err(format!("bad credential scope {credential}"));
    }
    if headers.get("x-amz-security-token").and_then(|v| v.to_str().ok()) != Some(AWS_TOKEN) {
        return Err("no session token".into());
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or("no x-amz-date")?;
    let values: Vec<(String, String)> = signed_headers
        .split(';')
        .map(|name| (name.to_owned(), headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()))
        .collect();
    if !values.iter().any(|(n, _)| n == "host") || !values.iter().any(|(n, _)| n == "x-amz-security-token") {
        return Err("host and the session token must be signed".into());
    }
    let pairs: Vec<(&str, &str)> = values.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let request =
        sigv4::Request { method: "POST", path: uri.path(), query: uri.query().unwrap_or(""), headers: &pairs, body };
    let signer = sigv4::Signer {
        access_key_id: AWS_KEY_ID,
        secret_access_key: AWS_SECRET,
        region: "us-west-2",
        service: "bedrock",
    };
    let (_, expected) = sigv4::authorization(&signer, &request, amz_date);
    if expected == signature {
        Ok(())
    } else {
        Err("The request signature we calculated does not match the signature you provided.".into())
    }
}

/// A fake Bedrock runtime: `POST /model/{id}/converse` and `/converse-stream`, SigV4 checked.
pub(super) async fn fake_bedrock(seen: Seen) -> String {
    let seen_invoke = seen.clone();
    let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        async move {
            if let Err(message) = signature_ok(&uri, &headers, &body) {
                return bedrock_error(StatusCode::FORBIDDEN, "InvalidSignatureException", &message);
            }
            let Ok(request) = serde_json::from_slice::<Value>(&body) else {
                return bedrock_error(StatusCode::BAD_REQUEST, "ValidationException", "Malformed input request");
            };
            seen.lock().unwrap().push((uri.path().to_owned(), request.clone()));
            let messages = request["messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() || request.get("model").is_some() {
                return bedrock_error(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    "Malformed input request, please reformat your input and try again.",
                );
            }
            let asked = request.to_string();
            if asked.contains("slow down") {
                return bedrock_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ThrottlingException",
                    "Too many requests, please wait before trying again.",
                );
            }
            let tools = request.get("toolConfig").is_some();
            if uri.path().ends_with("/converse-stream") {
                let events: Vec<(String, Value)> = serde_json::from_value(json_fixture(if tools {
                    "bedrock/stream_tool_use.json"
                } else {
                    "bedrock/stream_text.json"
                }))
                .unwrap();
                let mut wire = Vec::new();
                for (kind, payload) in events {
                    wire.extend_from_slice(&eventstream::encode(
                        &[(":event-type", &kind), (":content-type", "application/json"), (":message-type", "event")],
                        payload.to_string().as_bytes(),
                    ));
                }
                // Small pieces: frames arrive split across reads.
                let pieces: Vec<Result<Bytes, std::io::Error>> =
                    wire.chunks(37).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                return Response::builder()
                    .header("content-type", "application/vnd.amazon.eventstream")
                    .body(Body::from_stream(futures_util::stream::iter(pieces)))
                    .unwrap();
            }
            let file = if tools { "bedrock/converse_tool_use.json" } else { "bedrock/converse_text.json" };
            Response::builder().header("content-type", "application/json").body(Body::from(fixture(file))).unwrap()
        }
    };
    let invoke = {
        let seen = seen_invoke;
        move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                if let Err(message) = signature_ok(&uri, &headers, &body) {
                    return bedrock_error(StatusCode::FORBIDDEN, "InvalidSignatureException", &message);
                }
                crate::provider_embeddings::bedrock_invoke(&seen, uri.path(), &body)
            }
        }
    };
    let app = axum::Router::new()
        .route("/model/{model}/converse", axum::routing::post(handler.clone()))
        .route("/model/{model}/converse-stream", axum::routing::post(handler))
        .route("/model/{model}/invoke", axum::routing::post(invoke));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn bedrock_app(seen: &Seen) -> TestApp {
    let base = fake_bedrock(seen.clone()).await;
    TestApp::builder(format!(
        "model_list:
  - model_name: claude
    litellm_params:
      model: bedrock/anthropic.claude-3-haiku-20240307-v1:0
      aws_bedrock_runtime_endpoint: {base}
      aws_region_name: us-west-2
      aws_access_key_id: os.environ/AWS_ACCESS_KEY_ID
      aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY
      aws_session_token: os.environ/AWS_SESSION_TOKEN
  - model_name: claude-wrong-secret
    litellm_params:
      model: bedrock/anthropic.claude-3-haiku-20240307-v1:0
      aws_bedrock_runtime_endpoint: {base}
      aws_region_name: us-west-2
      aws_access_key_id: {AWS_KEY_ID}
      aws_secret_access_key: not-the-secret
      aws_session_token: {AWS_TOKEN}
router_settings: {{num_retries: 1}}
"
    ))
    .env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    .env("AWS_SESSION_TOKEN", AWS_TOKEN)
    .spawn()
    .await
}

#[tokio::test]
async fn bedrock_answers_signed_requests_whole_and_streamed_from_both_formats() {
    let seen = Seen::default();
    let app = bedrock_app(&seen).await;
    let (_, key) = app.create_key(json!({})).await;
    let body =
        json!({"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "Capital of France?"}]});
    let response = app.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Paris is the capital of France.");
    assert_eq!(answer["usage"]["prompt_tokens"], 14);
    {
        let seen = seen.lock().unwrap();
        let (path, request) = seen.last().unwrap();
        assert_eq!(path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
        assert_eq!(request["inferenceConfig"]["maxTokens"], 100);
    }

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let response = app.post("/anthropic/v1/messages", &key, &streamed).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(response).await;
    let text: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v.pointer("/delta/text").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(text, "Paris is the capital of France.");
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
    let delta = events.iter().find(|(name, _)| name.as_deref() == Some("message_delta")).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&delta.1).unwrap()["usage"]["output_tokens"], 8);
}

#[tokio::test]
async fn bedrock_tool_use_streams_to_openai_clients_as_tool_call_deltas() {
    let seen = Seen::default();
    let app = bedrock_app(&seen).await;
    let (_, key) = app.create_key(json!({})).await;
    let body = json!({
        "model": "claude", "stream": true, "stream_options": {"include_usage": true}, "tools": [weather_tool()],
        "messages": [{"role": "user", "content": "Weather in Paris?"}]
    });
    let response = app.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let events = sse_events(response).await;
    let chunks: Vec<Value> = events.iter().filter_map(|(_, d)| serde_json::from_str(d).ok()).collect();
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str))
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "Paris", "unit": "celsius"}));
    assert!(
        chunks
            .iter()
            .any(|c| c.pointer("/choices/0/delta/tool_calls/0/id") == Some(&json!("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q")))
    );
    assert!(chunks.iter().any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
    let usage = chunks.iter().find_map(|c| c.get("usage").filter(|u| !u.is_null())).unwrap();
    assert_eq!(usage["prompt_tokens"], 390);
    {
        let seen = seen.lock().unwrap();
        let (path, request) = seen.last().unwrap();
        assert!(path.ends_with("/converse-stream"));
        assert_eq!(request["toolConfig"]["tools"][0]["toolSpec"]["name"], "get_weather");
    }
    let whole = json!({"model": "claude", "tools": [weather_tool()], "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let answer: Value = app.post("/v1/chat/completions", &key, &whole).await.json().await.unwrap();
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn bedrock_errors_are_mapped_throttling_429_bad_signature_502() {
    let seen = Seen::default();
    let app = bedrock_app(&seen).await;
    let (_, key) = app.create_key(json!({})).await;
    let response = app.chat(&key, "claude", "please slow down").await;
    assert_eq!(response.status(), 429);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "ThrottlingException", "{error}");
    assert_eq!(seen.lock().unwrap().len(), 2, "throttling is retried (num_retries: 1)");

    let response = app.chat(&key, "claude-wrong-secret", "hi").await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_auth_failed", "{error}");
}

/// A fake Vertex AI: a token endpoint that checks the JWT bearer grant (RS256 with the service
/// account's key, its claims), and the model endpoints, which check the token.
pub(super) async fn fake_vertex(seen: Seen, tokens_minted: Arc<std::sync::atomic::AtomicUsize>) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    let account = json_fixture("vertex/service_account.json");
    let pem = account["private_key"].as_str().unwrap();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&STANDARD.decode(der).unwrap()).unwrap();
    let public = Arc::new(key.public().as_ref().to_vec());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let token_uri = format!("{base}/token");

    let token = {
        let token_uri = token_uri.clone();
        move |body: String| {
            let (public, token_uri, minted) = (public.clone(), token_uri.clone(), tokens_minted.clone());
            async move {
                let refuse = |why: &str| {
                    Response::builder()
                        .status(400)
                        .body(Body::from(json!({"error": "invalid_grant", "error_description": why}).to_string()))
                        .unwrap()
                };
                let form: Vec<(&str, &str)> = body.split('&').filter_map(|p| p.split_once('=')).collect();
                if form.iter().find(|(k, _)| *k == "grant_type").map(|(_, v)| *v)
                    != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
                {
                    return refuse("unsupported grant_type");
                }
                let Some((_, jwt)) = form.iter().find(|(k, _)| *k == "assertion") else {
                    return refuse("no assertion");
                };
                let parts: Vec<&str> = jwt.split('.').collect();
                if parts.len() != 3 {
                    return refuse("not a JWT");
                }
                let header: Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap_or_default()).unwrap_or_default();
                let claims: Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap_or_default()).unwrap_or_default();
                let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
                let verifier = ring::signature::UnparsedPublicKey::new(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    public.as_slice(),
                );
                if header["alg"] != "RS256"
                    || verifier.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature).is_err()
                {
                    return refuse("Invalid JWT Signature.");
                }
                let lifetime = claims["exp"].as_u64().unwrap_or(0).saturating_sub(claims["iat"].as_u64().unwrap_or(0));
                if claims["iss"] != "flowgate-test@flowgate-test.iam.gserviceaccount.com"
                    || claims["aud"] != token_uri.as_str()
                    || claims["scope"] != "https://www.googleapis.com/auth/cloud-platform"
                    || lifetime != 3600
                {
                    return refuse("bad claims");
                }
                minted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(
                        json!({"access_token": "ya29.test-token", "expires_in": 3599, "token_type": "Bearer"})
                            .to_string(),
                    ))
                    .unwrap()
            }
        }
    };
    let model = move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer ya29.test-token") {
                return gemini_error(
                    StatusCode::UNAUTHORIZED,
                    "Request had invalid authentication credentials.",
                    "UNAUTHENTICATED",
                );
            }
            let path = uri.path_and_query().map(ToString::to_string).unwrap_or_default();
            let request: Value = serde_json::from_slice(&body).unwrap_or_default();
            seen.lock().unwrap().push((path.clone(), request.clone()));
            let sse = |text: String| {
                Response::builder().header("content-type", "text/event-stream").body(Body::from(text)).unwrap()
            };
            if path.contains("/publishers/anthropic/") {
                if request["anthropic_version"] != "vertex-2023-10-16" || request.get("model").is_some() {
                    return gemini_error(
                        StatusCode::BAD_REQUEST,
                        "anthropic_version: vertex-2023-10-16 is required; model is in the URL",
                        "INVALID_ARGUMENT",
                    );
                }
                if path.ends_with(":streamRawPredict") {
                    let events = [
                        (
                            "message_start",
                            json!({"type": "message_start", "message": {"id": "msg_vrtx_01", "type": "message", "role": "assistant", "model": "claude-3-5-haiku@20241022", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 15, "output_tokens": 1}}}),
                        ),
                        (
                            "content_block_start",
                            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                        ),
                        (
                            "content_block_delta",
                            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Paris is"}}),
                        ),
                        (
                            "content_block_delta",
                            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " the capital of France."}}),
                        ),
                        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                        (
                            "message_delta",
                            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
                        ),
                        ("message_stop", json!({"type": "message_stop"})),
                    ];
                    return sse(events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect());
                }
                return Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(fixture("vertex/claude_message.json")))
                    .unwrap();
            }
            if path.ends_with(":streamGenerateContent?alt=sse") {
                return sse(fixture("gemini/stream_text.sse"));
            }
            if path.ends_with(":predict") {
                return crate::provider_embeddings::vertex_predict(&request);
            }
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(fixture("gemini/generate_text.json")))
                .unwrap()
        }
    };
    let app = axum::Router::new().route("/token", axum::routing::post(token)).route(
        "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}",
        axum::routing::post(model),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn vertex_ai_mints_a_token_from_the_service_account_and_serves_gemini_and_claude() {
    let seen = Seen::default();
    let minted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let base = fake_vertex(seen.clone(), minted.clone()).await;
    let mut account = json_fixture("vertex/service_account.json");
    account["token_uri"] = json!(format!("{base}/token"));
    let app = TestApp::builder(format!(
        "model_list:
  - model_name: vertex-gemini
    litellm_params:
      model: vertex_ai/gemini-2.0-flash
      vertex_project: flowgate-test
      vertex_location: us-central1
      vertex_credentials: os.environ/VERTEX_SERVICE_ACCOUNT
      api_base: {base}
  - model_name: vertex-claude
    litellm_params:
      model: vertex_ai/claude-3-5-haiku@20241022
      vertex_project: flowgate-test
      vertex_location: us-east5
      vertex_credentials: os.environ/VERTEX_SERVICE_ACCOUNT
      api_base: {base}
"
    ))
    .env("VERTEX_SERVICE_ACCOUNT", &account.to_string())
    .spawn()
    .await;
    let (_, key) = app.create_key(json!({})).await;

    let response = app.chat(&key, "vertex-gemini", "Capital of France?").await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Paris is the capital of France.");
    assert_eq!(
        seen.lock().unwrap().last().unwrap().0,
        "/v1/projects/flowgate-test/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent"
    );

    let body = json!({"model": "vertex-claude", "max_tokens": 50, "messages": [{"role": "user", "content": "Capital of France?"}]});
    let answer: Value = app.post("/anthropic/v1/messages", &key, &body).await.json().await.unwrap();
    assert_eq!(answer["content"][0]["text"], "Paris is the capital of France.", "{answer}");
    assert_eq!(answer["usage"]["input_tokens"], 15);
    let mut streamed = json!({"model": "vertex-claude", "stream": true, "messages": [{"role": "user", "content": "Capital of France?"}]});
    let response = app.post("/v1/chat/completions", &key, &streamed).await;
    assert_eq!(response.status(), 200);
    let text: String = sse_events(response)
        .await
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(text, "Paris is the capital of France.");
    assert!(
        seen.lock()
            .unwrap()
            .last()
            .unwrap()
            .0
            .ends_with("/publishers/anthropic/models/claude-3-5-haiku@20241022:streamRawPredict")
    );
    streamed["model"] = json!("vertex-gemini");
    let response = app.post("/v1/chat/completions", &key, &streamed).await;
    assert_eq!(response.status(), 200);
    assert!(sse_events(response).await.iter().any(|(_, d)| d.contains("capital")));

    // Five requests, one token per deployment: a token is kept until it nears expiry.
    assert_eq!(minted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_vertex_service_account_the_token_endpoint_refuses_is_upstream_auth_failed() {
    let seen = Seen::default();
    let base = fake_vertex(seen.clone(), Arc::default()).await;
    let mut account = json_fixture("vertex/service_account.json");
    account["token_uri"] = json!(format!("{base}/token"));
    account["client_email"] = json!("someone-else@flowgate-test.iam.gserviceaccount.com");
    let app = TestApp::builder(format!(
        "model_list:
  - model_name: vertex-gemini
    litellm_params: {{model: vertex_ai/gemini-2.0-flash, vertex_project: p, vertex_location: us-central1, vertex_credentials: os.environ/VERTEX_SERVICE_ACCOUNT, api_base: '{base}'}}
"
    ))
    .env("VERTEX_SERVICE_ACCOUNT", &account.to_string())
    .spawn()
    .await;
    let (_, key) = app.create_key(json!({})).await;
    let response = app.chat(&key, "vertex-gemini", "hi").await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_auth_failed", "{error}");
    assert!(seen.lock().unwrap().is_empty(), "no model call without a token");
}
