//! A deployment's `rpm` / `tpm` with several proxy replicas: with Redis, every replica counts
//! against one shared minute window, so what one replica used holds the other back; with Redis
//! unreachable, each replica keeps enforcing its own window (fail open, counted in the metrics).

use std::time::Duration;

use flowgate_test_utils::{TestApp, http_client, require_redis};
use serde_json::{Value, json};

const CONFIG: &str = "model_list:
  - {model_name: by-requests, rpm: 3, litellm_params: {model: mock/a, mock_response: fine}}
  - {model_name: by-tokens, litellm_params: {model: mock/b, tpm: 20, mock_response: 'an answer that is long enough to use up more than twenty tokens of the minute window in one go'}}
  - {model_name: unlimited, litellm_params: {model: mock/c, mock_response: free}}
";

/// Waits for the next minute when fewer than 15 seconds are left of this one, so a test's
/// requests fall in one window.
async fn early_in_a_minute() {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() % 60.0;
    if secs > 45.0 {
        tokio::time::sleep(Duration::from_secs_f64(60.5 - secs)).await;
    }
}

fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test-dl-{nanos:x}:")
}

async fn status(app: &TestApp, key: &str, model: &str) -> u16 {
    app.chat(key, model, "hi").await.status().as_u16()
}

#[tokio::test]
async fn replicas_sharing_redis_count_a_deployments_rpm_and_tpm_together() {
    if !require_redis().await {
        return;
    }
    let prefix = unique_prefix();
    let first = TestApp::builder(CONFIG).redis(&prefix).spawn().await;
    let second = TestApp::builder(CONFIG).redis(&prefix).spawn().await;
    let (_, key_first) = first.create_key(json!({})).await;
    let (_, key_second) = second.create_key(json!({})).await;
    early_in_a_minute().await;

    for _ in 0..3 {
        assert_eq!(status(&first, &key_first, "by-requests").await, 200);
    }
    // The second replica has served nothing of this deployment itself: only the shared window
    // can hold it back.
    let response = second.chat(&key_second, "by-requests", "hi").await;
    assert_eq!(response.status(), 429, "the first replica's three requests used the shared rpm of 3");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("by-requests"), "{body}");
    assert_eq!(status(&first, &key_first, "by-requests").await, 429);
    assert_eq!(status(&second, &key_second, "unlimited").await, 200, "a deployment without limits is not held back");

    // Tokens are counted when an answer is settled; the settlement reaches Redis right after.
    assert_eq!(status(&first, &key_first, "by-tokens").await, 200);
    let mut seen = 0;
    for _ in 0..40 {
        seen = status(&second, &key_second, "by-tokens").await;
        if seen == 429 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 429, "the second replica sees the tokens the first one used");

    // Only deployments with limits have shared counters; the others never touch Redis.
    let keys = redis_keys(&format!("{prefix}dl:*"));
    assert!(keys.iter().any(|k| k.starts_with(&format!("{prefix}dl:by-requests/0:")) && k.ends_with(":r")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with(&format!("{prefix}dl:by-tokens/1:")) && k.ends_with(":t")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("unlimited")), "{keys:?}");
}

/// The keys of the test Redis matching `pattern`.
fn redis_keys(pattern: &str) -> Vec<String> {
    let url = flowgate_test_utils::redis_url();
    let output = std::process::Command::new("redis-cli")
        .args(["-u", &url, "--scan", "--pattern", pattern])
        .output()
        .expect("redis-cli is installed beside the test Redis");
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn without_shared_state_each_replica_counts_its_own_traffic() {
    let first = TestApp::builder(CONFIG).spawn().await;
    let second = TestApp::builder(CONFIG).spawn().await;
    let (_, key_first) = first.create_key(json!({})).await;
    let (_, key_second) = second.create_key(json!({})).await;
    early_in_a_minute().await;
    for _ in 0..3 {
        assert_eq!(status(&first, &key_first, "by-requests").await, 200);
    }
    assert_eq!(status(&first, &key_first, "by-requests").await, 429);
    assert_eq!(status(&second, &key_second, "by-requests").await, 200, "embedded: per process");
}

#[tokio::test]
async fn with_redis_unreachable_the_limits_fail_open_to_the_processs_own_window() {
    // Nothing listens on port 1: every Redis call fails at once.
    let app = TestApp::builder(CONFIG)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("FLOWGATE__REDIS__PREFIX", &unique_prefix())
        .spawn()
        .await;
    let (_, key) = app.create_key(json!({})).await;
    early_in_a_minute().await;
    for _ in 0..3 {
        assert_eq!(status(&app, &key, "by-requests").await, 200, "admitted while Redis is down");
    }
    assert_eq!(status(&app, &key, "by-requests").await, 429, "the process's own window still holds");
    let metrics = http_client().get(format!("{}/metrics", app.proxy())).send().await.unwrap().text().await.unwrap();
    let fallbacks = metrics.lines().find(|l| l.starts_with("flowgate_shared_state_fallbacks_total")).unwrap();
    let count: f64 = fallbacks.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{fallbacks}");
    assert!(app.log_text().contains("Redis unreachable"), "a warning is logged");
}
