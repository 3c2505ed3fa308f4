//! Input and errors, in the caller's format every time: requests checked before anything is
//! forwarded (types and ranges, roles, content shapes; unknown fields passed through), a system
//! turn inside Anthropic `messages`, a provider refusing the gateway's own key, the provider's
//! `retry-after` on the way back, and unknown routes and wrong methods.

use flowgate_test_utils::{http_client, spawn_app};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn openai_completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    })
}

/// An OpenAI-format upstream that answers every chat request with `text`.
async fn openai_upstream(text: &str) -> MockServer {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(openai_completion(text)))
        .mount(&upstream)
        .await;
    upstream
}

async fn sent_bodies(upstream: &MockServer) -> Vec<Value> {
    upstream.received_requests().await.unwrap().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

#[tokio::test]
async fn requests_are_checked_before_forwarding_and_unknown_fields_pass_unchanged() {
    let upstream = openai_upstream("ok").await;
    let config = format!(
        "model_list:\n  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k}}}}\n",
        upstream.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let user = json!([{"role": "user", "content": "hi"}]);

    let refused = [
        (json!({"model": "m", "messages": user, "max_tokens": 0}), "max_tokens"),
        (json!({"model": "m", "messages": user, "max_tokens": "100"}), "max_tokens"),
        (json!({"model": "m", "messages": user, "n": -2}), "n"),
        (json!({"model": "m", "messages": user, "temperature": 9}), "temperature"),
        (json!({"model": "m", "messages": user, "top_p": "high"}), "top_p"),
        (json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role"),
        (json!({"model": "m", "messages": [{"role": "user", "content": {"text": "x"}}]}), "messages[0].content"),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
            "messages[0].content[0].type",
        ),
    ];
    for (body, param) in refused {
        let response = gateway.post("/v1/chat/completions", &key, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }

    let anthropic = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let response = gateway.post("/anthropic/v1/messages", &key, &anthropic).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("max_tokens"), "{error}");
    assert!(upstream.received_requests().await.unwrap().is_empty(), "nothing refused was forwarded");

    // Fields the gateway does not know reach the provider unchanged.
    let body = json!({
        "model": "m", "messages": user, "n": 2, "temperature": 0, "max_completion_tokens": 5,
        "reasoning_effort": "low", "a_field_from_next_month": {"nested": [1, null, {"deep": true}]},
    });
    let response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let sent = sent_bodies(&upstream).await;
    assert_eq!(sent[0]["a_field_from_next_month"], body["a_field_from_next_month"]);
    assert_eq!(sent[0]["reasoning_effort"], "low");
    assert_eq!(sent[0]["n"], 2);
}

#[tokio::test]
async fn a_system_turn_inside_anthropic_messages_reaches_an_openai_model_as_a_system_message() {
    let upstream = openai_upstream("done").await;
    let config = format!(
        "model_list:\n  - {{model_name: gpt, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k}}}}\n",
        upstream.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    // What Claude Code sends.
    let body = json!({
        "model": "gpt", "max_tokens": 100,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "system", "content": "Follow the repository rules."},
            {"role": "user", "content": [{"type": "text", "text": "fix it"}]}
        ]
    });
    let response = gateway.post("/anthropic/v1/messages", &key, &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["content"][0]["text"], "done");
    let sent = sent_bodies(&upstream).await;
    assert_eq!(
        sent[0]["messages"],
        json!([
            {"role": "system", "content": "You are Claude Code."},
            {"role": "system", "content": "Follow the repository rules."},
            {"role": "user", "content": "fix it"}
        ])
    );
}

#[tokio::test]
async fn a_provider_refusing_the_gateways_key_is_a_502_and_the_deployment_cools_down() {
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": "Incorrect API key provided: sk-live-****1234", "type": "invalid_request_error", "code": "invalid_api_key"
        }})))
        .mount(&refusing)
        .await;
    let forbidding = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"type": "error", "error": {
            "type": "permission_error", "message": "Your API key does not have permission"
        }})))
        .mount(&forbidding)
        .await;
    let good = openai_upstream("from the good deployment").await;
    let config = format!(
        "model_list:
  - {{model_name: bad, litellm_params: {{model: openai/x, api_base: '{refusing}/v1', api_key: k}}}}
  - {{model_name: claude, litellm_params: {{model: anthropic/c, api_base: '{forbidding}', api_key: k}}}}
  - {{model_name: mixed, litellm_params: {{model: openai/x, api_base: '{refusing}/v1', api_key: k}}}}
  - {{model_name: mixed, litellm_params: {{model: openai/x, api_base: '{good}/v1', api_key: k}}}}
router_settings: {{num_retries: 2, allowed_fails: 5, cooldown_time: 60}}
",
        refusing = refusing.uri(),
        forbidding = forbidding.uri(),
        good = good.uri(),
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let chat = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    let response = gateway.post("/v1/chat/completions", &key, &chat("bad")).await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "upstream_auth_failed");
    assert_eq!(error["error"]["type"], "api_error");
    assert!(!error.to_string().contains("sk-live"), "the provider's message is not shown: {error}");
    assert_eq!(refusing.received_requests().await.unwrap().len(), 1, "a refused key is not retried on itself");
    let log = gateway.log_text();
    assert!(
        log.lines().any(|line| line.contains("upstream_auth_failed") && line.contains("bad/0")),
        "logged with the deployment"
    );
    // Cooled down at once (allowed_fails does not apply): the provider is not asked again.
    let response = gateway.post("/v1/chat/completions", &key, &chat("bad")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(refusing.received_requests().await.unwrap().len(), 1);

    let anthropic = json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let response = gateway.post("/anthropic/v1/messages", &key, &anthropic).await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    assert_eq!(error["error"]["code"], "upstream_auth_failed");

    // Another deployment of the model serves the request.
    for _ in 0..4 {
        let response = gateway.post("/v1/chat/completions", &key, &chat("mixed")).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "from the good deployment");
    }
}

#[tokio::test]
async fn the_providers_retry_after_and_rate_limit_headers_reach_the_client() {
    let limited = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "17")
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", "17s")
                .set_body_json(json!({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})),
        )
        .mount(&limited)
        .await;
    let overloaded = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(529)
                .insert_header("retry-after", "9")
                .insert_header("anthropic-ratelimit-requests-remaining", "0")
                .set_body_json(
                    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                ),
        )
        .mount(&overloaded)
        .await;
    let config = format!(
        "model_list:
  - {{model_name: gpt, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k}}}}
  - {{model_name: claude, litellm_params: {{model: anthropic/c, api_base: '{}', api_key: k}}}}
router_settings: {{num_retries: 0, allowed_fails: 100}}
",
        limited.uri(),
        overloaded.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;

    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    let response = gateway.post("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "17");
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(response.headers()["x-ratelimit-reset-requests"], "17s");

    let body = json!({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let response = gateway.post("/anthropic/v1/messages", &key, &body).await;
    assert_eq!(response.status(), 529);
    assert_eq!(response.headers()["retry-after"], "9");
    assert_eq!(response.headers()["anthropic-ratelimit-requests-remaining"], "0");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_prefixes_format() {
    let gateway = spawn_app("model_list:\n  - {model_name: chat, litellm_params: {model: mock/chat}}\n").await;
    let (_, key) = gateway.create_key(json!({})).await;
    let client = http_client();
    let url = |path: &str| format!("{}{path}", gateway.proxy());

    let response = client.get(url("/anthropic/v1/messages")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.headers()["allow"].to_str().unwrap().contains("POST"));
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "method_not_allowed");

    let response = client.post(url("/anthropic/v1/complete")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "not_found_error");

    for path in ["/v1/chat/completions", "/oai/v1/chat/completions", "/chat/completions"] {
        let response = client.get(url(path)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), 405, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "method_not_allowed", "{path}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let response = client.delete(url("/v1/models")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 405);
    for path in ["/v1/images/generations", "/cursor/v1/nope"] {
        let response = client.post(url(path)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "not_found", "{path}");
        assert!(error["error"]["message"].as_str().unwrap().contains(path));
    }

    // A refused key, told in each API's own terms.
    let anthropic = json!({"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    for bad_key in [None, Some("sk-fg-nope")] {
        let mut request = client.post(url("/anthropic/v1/messages")).json(&anthropic);
        if let Some(bad_key) = bad_key {
            request = request.header("x-api-key", bad_key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "authentication_error");
        assert!(error["error"]["message"].as_str().unwrap().contains("x-api-key"), "{error}");
    }
}
