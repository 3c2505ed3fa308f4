//! The data plane end to end: `all` mode in process (`spawn_app`; the real binary for the SIGTERM
//! drain), fake upstreams that are real HTTP servers (the mock upstream, wiremock, and a slow
//! streaming server), and keys from the API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use flowgate_proxy::mock::MockParams;
use flowgate_test_utils::{TestApp, http_client, spawn_app};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::gateway::{BinaryGateway, mock_upstream, sse_events};

const MOCK_ONLY: &str = "model_list:
  - {model_name: chat, litellm_params: {model: mock/chat-model}}
  - {model_name: embed, litellm_params: {model: mock/embed-model}}
  - {model_name: secret-model, litellm_params: {model: mock/secret}}
";

fn openai_completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    })
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello gateway"}]})
}

#[tokio::test]
async fn plain_and_streamed_chat_through_the_mock_provider() {
    let gateway = spawn_app(MOCK_ONLY).await;
    let (_, key) = gateway.create_key(json!({})).await;

    let response = gateway.post("/v1/chat/completions", &key, &chat("chat")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Mock answer to: hello gateway");
    assert_eq!(body["usage"]["completion_tokens"], 5);

    let mut request = chat("chat");
    request["stream"] = json!(true);
    let response = gateway.post("/v1/chat/completions", &key, &request).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(response).await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let text: String = events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Mock answer to: hello gateway");
    assert!(
        events.iter().all(|(_, d)| !d.contains("\"usage\"")),
        "usage chunk hidden when the client did not ask for it"
    );

    request["stream_options"] = json!({"include_usage": true});
    let events = sse_events(gateway.post("/v1/chat/completions", &key, &request).await).await;
    let usage = &events[events.len() - 2].1;
    assert!(usage.contains("\"usage\""), "usage chunk present when asked: {usage}");

    for alias in ["/oai/v1/chat/completions", "/cursor/v1/chat/completions"] {
        assert_eq!(gateway.post(alias, &key, &chat("chat")).await.status(), 200, "{alias}");
    }
    let response = gateway.post("/v1/embeddings", &key, &json!({"model": "embed", "input": ["a", "b"]})).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let response = gateway.post("/v1/completions", &key, &json!({"model": "chat", "prompt": "once upon"})).await;
    assert_eq!(response.json::<Value>().await.unwrap()["object"], "text_completion");
}

#[tokio::test]
async fn errors_come_back_in_the_callers_format() {
    let gateway = TestApp::builder(MOCK_ONLY).env("FLOWGATE__PROXY__MAX_BODY_BYTES", "4096").spawn().await;
    let (_, key) = gateway.create_key(json!({"allowed_models": ["chat"]})).await;
    let (_, open_key) = gateway.create_key(json!({})).await;
    let client = http_client();

    let response = gateway.post("/v1/chat/completions", &open_key, &chat("gpt-nonexistent")).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("gpt-nonexistent"));

    let anthropic = json!({"model": "nope", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]});
    let response = gateway.post("/anthropic/v1/messages", &open_key, &anthropic).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");

    let response = client
        .post(format!("{}/v1/chat/completions", gateway.proxy()))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"model\": \"chat\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");

    let huge = json!({"model": "chat", "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let response = gateway.post("/v1/chat/completions", &key, &huge).await;
    assert_eq!(response.status(), 413);

    let response = gateway.post("/v1/chat/completions", &key, &json!({"model": 7, "messages": []})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["param"], "model");

    // The same key with its last (checksum) character changed.
    let mut tampered = key.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'x' { 'y' } else { 'x' });
    for bad_key in ["", "sk-fg-garbage", "sk-proj-1234567890", &tampered] {
        let response = gateway.post("/v1/chat/completions", bad_key, &chat("chat")).await;
        assert_eq!(response.status(), 401, "{bad_key}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "invalid_api_key");
    }
    let response = client
        .post(format!("{}/anthropic/v1/messages", gateway.proxy()))
        .header("x-api-key", "sk-fg-nope")
        .json(&anthropic)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "authentication_error");

    let response = gateway.post("/v1/chat/completions", &key, &chat("secret-model")).await;
    assert_eq!(response.status(), 403, "model not in allowed_models");

    let models: Value = client
        .get(format!("{}/v1/models", gateway.proxy()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["chat"], "only the models this key may use");
}

#[tokio::test]
async fn retries_a_failed_attempt_then_falls_back_to_another_model() {
    let flaky = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": {"message": "boom"}})))
        .up_to_n_times(1)
        .mount(&flaky)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_completion("second try")))
        .mount(&flaky)
        .await;
    let dead = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "overloaded"}})))
        .mount(&dead)
        .await;
    let config = format!(
        "model_list:
  - {{model_name: flaky, litellm_params: {{model: openai/up, api_base: '{}/v1', api_key: k}}}}
  - {{model_name: dead, litellm_params: {{model: openai/up, api_base: '{}/v1', api_key: k}}}}
  - {{model_name: backup, litellm_params: {{model: mock/backup, mock_response: from backup}}}}
router_settings:
  num_retries: 1
  allowed_fails: 100
  fallbacks: [{{dead: [backup]}}]
",
        flaky.uri(),
        dead.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;

    let response = gateway.post("/v1/chat/completions", &key, &chat("flaky")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "second try");
    assert_eq!(flaky.received_requests().await.unwrap().len(), 2, "one retry");
    let sent: Value = serde_json::from_slice(&flaky.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["model"], "up", "upstream model name sent upstream");

    let response = gateway.post("/v1/chat/completions", &key, &chat("dead")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "from backup");
    assert_eq!(dead.received_requests().await.unwrap().len(), 2, "first try and one retry before the fallback");
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_message() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": {"message": "max_tokens too large", "code": "invalid_value"}})),
        )
        .mount(&upstream)
        .await;
    let config = format!(
        "model_list:\n  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k}}}}\n",
        upstream.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let response = gateway.post("/v1/chat/completions", &key, &chat("m")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "max_tokens too large");
    assert_eq!(body["error"]["code"], "invalid_value");
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1, "client errors are not retried");
}

#[tokio::test]
async fn a_failing_deployment_cools_down_and_traffic_moves_away() {
    let bad = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).mount(&bad).await;
    let good = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_completion("ok")))
        .mount(&good)
        .await;
    let config = format!(
        "model_list:
  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k}}}}
  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k}}}}
router_settings: {{num_retries: 2, allowed_fails: 1, cooldown_time: 60}}
",
        bad.uri(),
        good.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    for _ in 0..30 {
        assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("m")).await.status(), 200);
    }
    assert!(bad.received_requests().await.unwrap().len() <= 1, "cooled down after its first failure");
    let health: Value =
        http_client().get(format!("{}/health", gateway.proxy())).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        health["providers"]["cooling_down"].as_u64().unwrap() + health["providers"]["healthy"].as_u64().unwrap(),
        2
    );
}

#[tokio::test]
async fn weighted_routing_splits_traffic_by_weight() {
    let a = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_completion("a")))
        .mount(&a)
        .await;
    let b = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_completion("b")))
        .mount(&b)
        .await;
    let config = format!(
        "model_list:
  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k, weight: 4}}}}
  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k, weight: 1}}}}
",
        a.uri(),
        b.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let n = 300;
    for _ in 0..n {
        assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("m")).await.status(), 200);
    }
    let to_a = a.received_requests().await.unwrap().len();
    let share = to_a as f64 / f64::from(n);
    // Binomial(300, 0.8): standard deviation ≈ 0.023; 0.70..0.90 is over 4 sigma each side.
    assert!((0.70..0.90).contains(&share), "4:1 weights sent {to_a}/{n} to the heavier deployment");
}

/// A streaming upstream that sends one chunk every 100 ms and notes when its stream is dropped
/// (the connection closed).
async fn slow_stream_upstream(dropped: Arc<AtomicBool>, sent: Arc<AtomicUsize>) -> String {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let dropped = dropped.clone();
            let sent = sent.clone();
            async move {
                let flag = Flag(dropped);
                let stream = futures_util::stream::unfold((0u32, flag), move |(n, flag)| {
                    let sent = sent.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        sent.fetch_add(1, Ordering::SeqCst);
                        let chunk =
                            format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{n} \"}}}}]}}\n\n");
                        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), (n + 1, flag)))
                    }
                });
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(axum::body::Body::from_stream(stream))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let dropped = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let upstream = slow_stream_upstream(dropped.clone(), sent.clone()).await;
    let config = format!(
        "model_list:\n  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{upstream}/v1', api_key: k}}}}\n"
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let mut request = chat("m");
    request["stream"] = json!(true);
    let mut response = gateway.post("/v1/chat/completions", &key, &request).await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("t0"), "first chunk arrives as soon as it is sent");
    drop(response);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !dropped.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "upstream stream still open 5s after the client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_cancel = sent.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sent.load(Ordering::SeqCst), at_cancel, "upstream stopped producing");
}

#[tokio::test]
async fn openai_clients_can_use_anthropic_models_and_back_with_tools_and_streams() {
    let upstream = mock_upstream(MockParams::default()).await;
    let config = format!(
        "model_list:
  - {{model_name: claude, litellm_params: {{model: anthropic/claude-test, api_base: '{upstream}', api_key: k}}}}
  - {{model_name: gpt, litellm_params: {{model: openai/gpt-test, api_base: '{upstream}/v1', api_key: k}}}}
"
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let tools = json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);

    // OpenAI client, Anthropic upstream, streamed tool call.
    let request = json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "weather?"}], "tools": tools});
    let events = sse_events(gateway.post("/v1/chat/completions", &key, &request).await).await;
    let chunks: Vec<Value> =
        events.iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "mock"}));
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(chunks.last().unwrap()["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // Anthropic client, OpenAI upstream, plain text.
    let request = json!({"model": "gpt", "max_tokens": 50, "messages": [{"role": "user", "content": "hi there"}]});
    let response = gateway.post("/anthropic/v1/messages", &key, &request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "Mock answer to: hi there");
    assert_eq!(body["stop_reason"], "end_turn");

    // Anthropic client, OpenAI upstream, streamed tool call.
    let request = json!({"model": "gpt", "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]});
    let events = sse_events(gateway.post("/anthropic/v1/messages", &key, &request).await).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap_or("")).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let json_parts: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| e["delta"]["partial_json"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&json_parts).unwrap(), json!({"city": "mock"}));
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish() {
    let config = "model_list:\n  - {model_name: slow, litellm_params: {model: mock/slow, mock_chunk_delay_ms: 150, mock_chunks: 8}}\n";
    let mut gateway = BinaryGateway::start(config, &[]).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let mut request = chat("slow");
    request["stream"] = json!(true);
    let response = gateway.post("/v1/chat/completions", &key, &request).await;
    gateway.process.sigterm();
    let events = sse_events(response).await;
    assert_eq!(events.last().unwrap().1, "[DONE]", "the stream completed during the drain");
    assert_eq!(gateway.process.wait(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test]
async fn legacy_completions_stream_and_are_charged_from_the_usage_the_gateway_asked_for() {
    let upstream = mock_upstream(MockParams { chunks: Some(3), ..MockParams::default() }).await;
    let config = format!(
        "model_list:
  - {{model_name: text, litellm_params: {{model: openai/davinci, api_base: '{upstream}/v1', api_key: k, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}}}
  - {{model_name: claude, litellm_params: {{model: anthropic/claude-x, api_base: '{upstream}', api_key: k}}}}
"
    );
    let gateway = spawn_app(&config).await;
    let (key_id, key) = gateway.create_key(json!({})).await;
    let request = json!({"model": "text", "prompt": "once upon", "stream": true});
    let response = gateway.post("/v1/completions", &key, &request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(response).await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events.iter().filter_map(|(_, d)| serde_json::from_str(d).ok()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, "Mock completion of: once upon");
    assert!(
        chunks.iter().all(|c| c["object"] == "text_completion" && c.get("usage").is_none()),
        "usage not asked: hidden"
    );
    // Asked for, the usage chunk comes last, with no choices.
    let asked =
        json!({"model": "text", "prompt": "once upon", "stream": true, "stream_options": {"include_usage": true}});
    let events = sse_events(gateway.post("/v1/completions", &key, &asked).await).await;
    let usage: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(
        (usage["choices"].as_array().map(Vec::len), usage["usage"]["completion_tokens"].as_u64()),
        (Some(0), Some(5))
    );

    // Both streams were charged the provider's count, not an estimate.
    let mut records = Vec::new();
    for _ in 0..100 {
        let (_, page) = gateway.admin(reqwest::Method::GET, &format!("/api/audit?key_id={key_id}"), None).await;
        records = page["items"].as_array().cloned().unwrap_or_default();
        if records.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(records.len(), 2, "{records:?}");
    for record in &records {
        assert_eq!((record["route"].as_str(), record["stream"].as_bool()), (Some("/v1/completions"), Some(true)));
        assert_eq!((record["completion_tokens"].as_i64(), record["usage_estimated"].as_bool()), (Some(5), Some(false)));
        assert!(record["cost_nanos"].as_i64().unwrap() > 0, "{record}");
    }

    // A model whose provider has no completions API: a 400 that says so.
    let response =
        gateway.post("/v1/completions", &key, &json!({"model": "claude", "prompt": "x", "stream": true})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("no text completions API"), "{body}");
    // Embeddings are never streamed.
    let response = gateway.post("/v1/embeddings", &key, &json!({"model": "text", "input": "x", "stream": true})).await;
    assert_eq!(response.status(), 400);
}

/// A wildcard Azure deployment (`azure/*`) sends each request to the deployment named by the model
/// asked for, and refuses a model name that is not a deployment name (it would be a path).
#[tokio::test]
async fn a_wildcard_azure_deployment_calls_the_deployment_of_the_model_asked() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/gpt-4o-mini/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "from azure"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})))
        .mount(&upstream)
        .await;
    let config = format!(
        "model_list:
  - {{model_name: 'azure/*', litellm_params: {{model: 'azure/*', api_base: '{}', api_version: '2024-10-21', api_key: k, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}}}
",
        upstream.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let response = gateway.post("/v1/chat/completions", &key, &chat("azure/gpt-4o-mini")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "from azure");
    let asked = upstream.received_requests().await.unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].url.query(), Some("api-version=2024-10-21"));
    for bad in ["azure/..", "azure/a/../../b", "azure/.hidden"] {
        let response = gateway.post("/v1/chat/completions", &key, &chat(bad)).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1, "nothing else reached Azure");
}
