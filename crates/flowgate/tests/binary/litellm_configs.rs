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
