//! Exactly one audit record per request on every way a request can end: success, each kind of
//! rejection, an upstream failure, and a client that leaves before or during the answer.

use std::time::{Duration, Instant};

use flowgate_db::sqlx::{self, Row};
use flowgate_test_utils::{http_client, spawn_app};
use serde_json::json;

const CONFIG: &str = "model_list:
  - {model_name: m, litellm_params: {model: mock/m}}
  - {model_name: slow, litellm_params: {model: mock/slow, mock_latency_ms: 3000}}
  - {model_name: dribble, litellm_params: {model: mock/dribble, mock_chunk_delay_ms: 300, mock_chunks: 20}}
  - {model_name: down, litellm_params: {model: openai/down, api_base: 'http://127.0.0.1:9', api_key: x, max_retries: 0}}
  - {model_name: other, litellm_params: {model: mock/other}}
proxy:
  max_body_bytes: 4096
";

/// (status, error code) of every record, keyed by request id, once `expected` are written.
async fn records(dir: &std::path::Path, expected: usize) -> Vec<(String, i64, Option<String>)> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", dir.join("flowgate.db").display());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let rows = sqlx::query("SELECT request_id, status, error_code FROM audit_records").fetch_all(&mut conn).await;
        let rows: Vec<(String, i64, Option<String>)> = rows
            .unwrap_or_default()
            .iter()
            .map(|r| (r.get("request_id"), r.get("status"), r.get("error_code")))
            .collect();
        if rows.len() >= expected || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_exit_path_writes_exactly_one_record() {
    let gateway = spawn_app(CONFIG).await;
    let (_, key) = gateway.create_key(json!({"allowed_models": ["m", "slow", "dribble", "down", "nope"]})).await;
    let url = format!("{}/v1/chat/completions", gateway.proxy());
    let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]});
    let client = http_client();
    let mut expected: Vec<(Option<String>, i64, Option<&str>)> = Vec::new();
    let send = async |body: reqwest::Body, key: &str| {
        let response = client
            .post(&url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let _ = response.bytes().await;
        (id, i64::from(status))
    };
    let cases: Vec<(reqwest::Body, &str, i64, Option<&str>)> = vec![
        (chat("m", false).to_string().into(), key.as_str(), 200, None),
        (chat("m", true).to_string().into(), key.as_str(), 200, None),
        (chat("m", false).to_string().into(), "sk-fg-not-a-key", 401, Some("invalid_api_key")),
        ("{not json".into(), key.as_str(), 400, Some("invalid_request")),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(8192)}]}).to_string().into(),
            key.as_str(),
            413,
            Some("request_too_large"),
        ),
        (chat("other", false).to_string().into(), key.as_str(), 403, Some("forbidden")),
        (chat("nope", false).to_string().into(), key.as_str(), 404, Some("model_not_found")),
        (chat("down", false).to_string().into(), key.as_str(), 503, Some("upstream_unavailable")),
    ];
    for (body, key, status, code) in cases {
        let (id, got) = send(body, key).await;
        assert_eq!(got, status, "{code:?}");
        assert!(id.is_some(), "every answer carries x-request-id");
        expected.push((id, status, code));
    }

    // The client gives up before the answer's head: the request is cancelled, and recorded.
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let gone = impatient.post(&url).bearer_auth(&key).json(&chat("slow", false)).send().await;
    assert!(gone.unwrap_err().is_timeout());
    expected.push((None, 499, Some("client_disconnected")));

    // The client leaves in the middle of a stream: recorded as an incomplete answer.
    let mut response = client.post(&url).bearer_auth(&key).json(&chat("dribble", true)).send().await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    expected.push((Some(id), 200, Some("incomplete")));

    let rows = records(gateway.data_dir(), expected.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = records(gateway.data_dir(), expected.len()).await;
    assert_eq!(rows.len(), expected.len(), "one record per request: {rows:?}");
    assert_eq!(again.len(), expected.len(), "and no more");
    for (id, status, code) in &expected {
        let found = match id {
            Some(id) => rows.iter().find(|(rid, ..)| rid == id).cloned(),
            None => rows.iter().find(|(_, s, _)| s == status).cloned(),
        };
        let (_, got_status, got_code) = found.unwrap_or_else(|| panic!("no record for {id:?} {status}"));
        assert_eq!((got_status, got_code.as_deref()), (*status, *code), "{id:?}");
    }
}
