//! LiteLLM proxy configs load unchanged: each example config (`tests/fixtures/litellm`, written from
//! LiteLLM's documented fields) passes `flowgate config check` and starts `all` mode; the check
//! says what it understood and lists every ignored field; a config that cannot load fails the check.
//! And the deployment limits of such a config hold: a deployment at its rpm is skipped, and a model
//! whose deployments are all at their limit answers 429.

use flowgate_test_utils::{FlowgateProcess, TempDir, TestApp};
use serde_json::{Value, json};

const FIXTURES: &[&str] = &["quickstart.yaml", "load_balancing.yaml", "providers.yaml", "all_settings.yaml"];

fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litellm").join(name)
}

/// The variables the fixtures read through `os.environ/`.
fn fixture_env(data_dir: &std::path::Path) -> Vec<(String, String)> {
    [
        ("OPENAI_API_KEY", "sk-openai-test".to_owned()),
        ("OPENAI_API_BASE", "http://127.0.0.1:9/v1".to_owned()),
        ("ANTHROPIC_API_KEY", "sk-ant-test".to_owned()),
        ("ANTHROPIC_API_KEY_BACKUP", "sk-ant-test-2".to_owned()),
        ("GROQ_API_KEY", "gsk-test".to_owned()),
        ("TOGETHERAI_API_KEY", "together-test".to_owned()),
        ("GEMINI_API_KEY", "gemini-test".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-test".to_owned()),
        ("AWS_SESSION_TOKEN", "aws-token-test".to_owned()),
        ("AWS_REGION_NAME", "eu-central-1".to_owned()),
        ("OPENROUTER_API_KEY", "or-test".to_owned()),
        ("MISTRAL_API_KEY", "mistral-test".to_owned()),
        ("DEEPSEEK_API_KEY", "deepseek-test".to_owned()),
        ("COMPANY_KEY", "company-test".to_owned()),
        ("LITELLM_MASTER_KEY", "sk-litellm-master-test".to_owned()),
        ("DATABASE_URL", format!("sqlite://{}/litellm.db?mode=rwc", data_dir.display())),
        ("REDIS_HOST", "127.0.0.1".to_owned()),
        ("REDIS_PORT", "6379".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::test]
async fn config_check_accepts_every_example_and_says_what_it_understood_and_ignored() {
    let dir = TempDir::new();
    let env = fixture_env(dir.path());
    for name in FIXTURES {
        let path = fixture_path(name);
        let output =
            FlowgateProcess::command(&["config", "check", path.to_str().unwrap()], &env).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{name}: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
        assert!(
            stdout.contains("loads") && stdout.contains("models:") && stdout.contains("routing:"),
            "{name}: {stdout}"
        );
        for secret in ["sk-openai-test", "sk-ant-test", "aws-secret-test", "sk-litellm-master-test"] {
            assert!(!stdout.contains(secret), "{name} shows a secret: {stdout}");
        }
    }
    let path = fixture_path("all_settings.yaml");
    let output = FlowgateProcess::command(&["config", "check", path.to_str().unwrap()], &env).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "general_settings.master_key -> security.admin_api_key",
        "litellm_settings.callbacks[0] -> always on: Prometheus metrics at GET /metrics",
        "litellm_settings.callbacks[1] (langfuse)",
        "general_settings.alerting",
        "guardrails",
    ] {
        assert!(stdout.contains(line), "`{line}` missing:\n{stdout}");
    }
    let path = fixture_path("load_balancing.yaml");
    let output = FlowgateProcess::command(&["config", "check", path.to_str().unwrap()], &env).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "deployment claude-primary: anthropic `claude-3-5-haiku-latest` at https://api.anthropic.com",
        "rpm 50; tpm 100000",
        "strategy usage-based-routing",
        "alias hidden-small -> small (hidden)",
        "context window fallbacks: small -> big",
        "router_settings.routing_strategy_args",
    ] {
        assert!(stdout.contains(line), "`{line}` missing:\n{stdout}");
    }
}

#[tokio::test]
async fn config_check_fails_naming_the_field_of_a_config_that_does_not_load() {
    let dir = TempDir::new();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/SURELY_NOT_SET\n").unwrap();
    let output = FlowgateProcess::command(&["config", "check", path.to_str().unwrap()], &[]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model_list[0].litellm_params.api_key") && stderr.contains("SURELY_NOT_SET"), "{stderr}");
}

#[tokio::test]
async fn every_example_starts_all_mode() {
    for name in FIXTURES {
        let dir = TempDir::new();
        let mut builder = TestApp::builder(std::fs::read_to_string(fixture_path(name)).unwrap());
        for (key, value) in fixture_env(dir.path()) {
            builder = builder.env(&key, &value);
        }
        // Fixtures that name a Redis get their own key prefix.
        let prefix = format!("flowgate-test-litellm-{}:", uuid_like());
        let app = builder.env("FLOWGATE__REDIS__PREFIX", &prefix).spawn().await;
        let health = app.client.get(format!("{}/health", app.proxy())).send().await.unwrap();
        assert_eq!(health.status(), 200, "{name}");
        let (_, key) = app.create_key(json!({})).await;
        let models: Value = app
            .client
            .get(format!("{}/v1/models", app.proxy()))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(!models["data"].as_array().unwrap().is_empty(), "{name}: {models}");
        if *name == "load_balancing.yaml" {
            let ids: Vec<&str> = models["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
            assert!(ids.contains(&"claude-3-haiku") && !ids.contains(&"hidden-small"), "{ids:?}");
        }
        let logs = app.log_text();
        assert!(logs.contains("not supported, ignored"), "{name}: each example has a field Flowgate ignores");
    }
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

#[tokio::test]
async fn a_deployment_at_its_rpm_is_skipped_and_a_model_whose_deployments_all_are_answers_429() {
    let app = flowgate_test_utils::spawn_app(
        "model_list:
  - {model_name: m, rpm: 2, litellm_params: {model: mock/a, mock_response: from-a}}
  - {model_name: m, litellm_params: {model: mock/b, mock_response: from-b, rpm: 1}}
",
    )
    .await;
    let (_, key) = app.create_key(json!({})).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        let response = app.chat(&key, "m", "hi").await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        answers.push(body["choices"][0]["message"]["content"].as_str().unwrap().to_owned());
    }
    answers.sort();
    assert_eq!(answers, vec!["from-a", "from-a", "from-b"], "each deployment up to its rpm");
    let response = app.chat(&key, "m", "hi").await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("rpm"), "{body}");
}

/// An OpenAI-compatible upstream that answers every request 429, counting them.
async fn always_throttled(calls: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn retry_policy_and_allowed_fails_policy_apply_per_kind_of_failure() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let base = always_throttled(calls.clone()).await;
    let app = flowgate_test_utils::spawn_app(&format!(
        "model_list:
  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{base}', api_key: k}}}}
router_settings:
  num_retries: 0
  allowed_fails: 1
  retry_policy: {{RateLimitErrorRetries: 2}}
  allowed_fails_policy: {{RateLimitErrorAllowedFails: 100}}
"
    ))
    .await;
    let (_, key) = app.create_key(json!({})).await;
    for round in 1..=2 {
        let response = app.chat(&key, "m", "hi").await;
        assert_eq!(response.status(), 429, "round {round}");
        // Three attempts a request (RateLimitErrorRetries: 2 over num_retries: 0), and no
        // cooldown after them (RateLimitErrorAllowedFails: 100 over allowed_fails: 1).
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3 * round, "round {round}");
    }
}

/// An OpenAI-compatible upstream that records each request's headers and body and answers.
async fn recording_upstream(seen: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Value)>>>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((headers, body));
                axum::Json(json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "x",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn litellm_params_reach_the_provider_defaults_under_the_clients_values() {
    let seen = std::sync::Arc::default();
    let base = recording_upstream(std::sync::Arc::clone(&seen)).await;
    let app = TestApp::builder(format!(
        "model_list:
  - model_name: company
    litellm_params:
      model: company-model
      custom_llm_provider: openai
      api_base: {base}
      api_key: os.environ/COMPANY_KEY
      organization: org-example
      extra_headers: {{X-Team: os.environ/TEAM}}
      temperature: 0.2
      max_tokens: 64
      stop: [END]
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000001
environment_variables:
  TEAM: platform
"
    ))
    .env("COMPANY_KEY", "sk-company")
    .spawn()
    .await;
    let (_, key) = app.create_key(json!({})).await;
    let body = json!({"model": "company", "temperature": 0.9, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(app.post("/v1/chat/completions", &key, &body).await.status(), 200);
    let anthropic_body = json!({"model": "company", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(app.post("/anthropic/v1/messages", &key, &anthropic_body).await.status(), 200);
    let seen = seen.lock().unwrap();
    let (headers, request) = &seen[0];
    assert_eq!(headers["authorization"], "Bearer sk-company");
    assert_eq!(headers["openai-organization"], "org-example");
    assert_eq!(headers["x-team"], "platform", "environment_variables feed os.environ/");
    assert_eq!(request["model"], "company-model");
    assert_eq!(request["temperature"], 0.9, "the client's value wins");
    assert_eq!(request["max_tokens"], 64, "the deployment's default");
    assert_eq!(request["stop"], json!(["END"]));
    let (_, request) = &seen[1];
    assert_eq!(request["max_tokens"], 10, "an Anthropic client's own limit wins too");
    assert_eq!(request["temperature"], 0.2);
}
