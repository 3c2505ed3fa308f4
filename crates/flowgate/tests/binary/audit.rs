//! The audit trail: exactly one row per request, through a database outage and a SIGTERM, with no
//! prompts stored unless the tenant asks, and then redacted. The gateway runs in process
//! (`spawn_app`), except for the SIGTERM test, which needs the real binary.

use std::time::{Duration, Instant};

use flowgate_db::sqlx::{self, Row};
use flowgate_test_utils::{TcpGate, TestApp, ThrowawayDb, http_client, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};

use crate::gateway::BinaryGateway;

const CONFIG: &str = "model_list:
  - {model_name: m, litellm_params: {model: mock/m, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}
  - {model_name: slow, litellm_params: {model: mock/slow, mock_latency_ms: 1500}}
";

const SECRET_PROMPT: &str = "my secret plan is written here";

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": SECRET_PROMPT}]})
}

async fn sqlite_rows(dir: &std::path::Path) -> Vec<sqlx::sqlite::SqliteRow> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", dir.join("flowgate.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT * FROM audit_records ORDER BY ts, request_id").fetch_all(&mut conn).await.unwrap()
}

async fn wait_for_rows(dir: &std::path::Path, expected: usize) -> Vec<sqlx::sqlite::SqliteRow> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = sqlite_rows(dir).await;
        if rows.len() >= expected || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_request_gets_exactly_one_record_with_its_details_and_no_prompt() {
    let gateway = spawn_app(CONFIG).await;
    let (key_id, key) = gateway.create_key(json!({"requests_per_hour": 3})).await;
    let mut request_ids = Vec::new();
    for request in [chat("m", false), chat("m", true), chat("nope", false), chat("m", false), chat("m", false)] {
        let response = gateway.post("/v1/chat/completions", &key, &request).await;
        request_ids.push(response.headers()["x-request-id"].to_str().unwrap().to_owned());
        let _ = response.bytes().await;
    }
    let response = gateway.post("/v1/chat/completions", "sk-fg-invalid", &chat("m", false)).await;
    assert_eq!(response.status(), 401);
    let rows = wait_for_rows(gateway.data_dir(), 6).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows_after = sqlite_rows(gateway.data_dir()).await;
    assert_eq!(rows.len(), 6, "one row per request");
    assert_eq!(rows_after.len(), 6, "and no more");

    let by_id = |id: &str| rows.iter().find(|r| r.get::<String, _>("request_id") == id).unwrap();
    let plain = by_id(&request_ids[0]);
    assert_eq!(plain.get::<i64, _>("status"), 200);
    assert_eq!(plain.get::<String, _>("key_id"), key_id);
    assert_eq!(plain.get::<String, _>("model_requested"), "m");
    assert_eq!(plain.get::<String, _>("deployment"), "m/0");
    assert_eq!(plain.get::<String, _>("provider"), "mock");
    assert_eq!(plain.get::<String, _>("route"), "/v1/chat/completions");
    assert_eq!(plain.get::<String, _>("client_ip"), "127.0.0.1");
    assert!(plain.get::<i64, _>("prompt_tokens") > 0 && plain.get::<i64, _>("completion_tokens") > 0);
    assert!(plain.get::<i64, _>("cost_nanos") > 0);
    assert!(plain.get::<f64, _>("latency_ms") > 0.0);
    let streamed = by_id(&request_ids[1]);
    assert_eq!(streamed.get::<i64, _>("stream"), 1);
    assert!(streamed.get::<Option<f64>, _>("ttft_ms").is_some());
    assert!(streamed.get::<i64, _>("completion_tokens") > 0, "stream usage recorded");
    let missing = by_id(&request_ids[2]);
    assert_eq!(missing.get::<i64, _>("status"), 404);
    assert_eq!(missing.get::<String, _>("error_code"), "model_not_found");
    let limited = by_id(&request_ids[4]);
    assert_eq!(limited.get::<i64, _>("status"), 429);
    assert_eq!(limited.get::<String, _>("error_code"), "rate_limit_exceeded");
    let unauthenticated = rows.iter().find(|r| r.get::<i64, _>("status") == 401).unwrap();
    assert!(unauthenticated.get::<Option<String>, _>("key_id").is_none());

    for row in &rows {
        assert!(row.get::<Option<String>, _>("prompt").is_none());
        assert!(row.get::<Option<String>, _>("response").is_none());
    }
    let database = std::fs::read(gateway.data_dir().join("flowgate.db")).unwrap();
    let wal = std::fs::read(gateway.data_dir().join("flowgate.db-wal")).unwrap_or_default();
    for bytes in [database, wal] {
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET_PROMPT), "prompt text stored");
    }
    assert!(!gateway.log_text().contains(SECRET_PROMPT), "prompt text logged");

    let metrics = http_client().get(format!("{}/metrics", gateway.proxy())).send().await.unwrap().text().await.unwrap();
    for expected in [
        "flowgate_requests_rejected_total{code=\"rate_limit_exceeded\"} 1",
        "flowgate_requests_rejected_total{code=\"model_not_found\"} 1",
        "flowgate_requests_rejected_total{code=\"invalid_api_key\"} 1",
        "flowgate_audit_records_written_total 6",
        "flowgate_tokens_total{model=\"m\",kind=\"completion\"}",
        "flowgate_upstream_latency_seconds_count{deployment=\"m/0\"}",
    ] {
        assert!(metrics.contains(expected), "missing {expected}");
    }
    assert!(!metrics.contains(&key_id), "key ids are never metric labels");
}

#[tokio::test]
async fn tenants_that_store_prompts_get_them_redacted_and_others_get_none() {
    let gateway = spawn_app(CONFIG).await;
    let (_, tenant) = gateway
        .admin(Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "keeps-prompts", "store_prompts": true})))
        .await;
    assert_eq!(tenant["store_prompts"], true, "{tenant}");
    let tenant_id = tenant["id"].as_str().unwrap();
    let (_, storing) = gateway.create_key(json!({"tenant_id": tenant_id})).await;
    let (_, plain) = gateway.create_key(json!({})).await;

    let email = "jane.doe@example.com";
    let phone = "+1 415 555 0134";
    let prompt = format!("{SECRET_PROMPT}: write to {email} or call {phone}");
    let body = |stream: bool| {
        json!({"model": "m", "stream": stream, "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": prompt},
        ]})
    };
    let mut ids = Vec::new();
    for (key, stream) in [(&storing, false), (&storing, true), (&plain, false)] {
        let response = gateway.post("/v1/chat/completions", key, &body(stream)).await;
        assert_eq!(response.status(), 200);
        ids.push(response.headers()["x-request-id"].to_str().unwrap().to_owned());
        let answer = response.text().await.unwrap();
        // The client still gets the answer as the provider wrote it.
        assert!(answer.contains("jane.doe"), "{answer}");
    }
    let rows = wait_for_rows(gateway.data_dir(), 3).await;
    assert_eq!(rows.len(), 3);
    let by_id = |id: &str| rows.iter().find(|r| r.get::<String, _>("request_id") == id).unwrap();
    for id in &ids[..2] {
        let row = by_id(id);
        let stored: Value = serde_json::from_str(&row.get::<String, _>("prompt")).unwrap();
        let text = stored["messages"][1]["content"].as_str().unwrap();
        assert!(text.starts_with(SECRET_PROMPT), "{text}");
        assert!(text.contains("<EMAIL_1>") && text.contains("<PHONE_1>"), "{text}");
        assert_eq!(stored["messages"][0]["content"], "be brief");
        let answer = row.get::<String, _>("response");
        assert!(answer.starts_with("Mock answer to:") && answer.contains("<EMAIL_1>"), "{answer}");
        for stored in [stored.to_string(), answer] {
            assert!(!stored.contains(email) && !stored.contains("555 0134"), "{stored}");
        }
    }
    let plain_row = by_id(&ids[2]);
    assert!(plain_row.get::<Option<String>, _>("prompt").is_none());
    assert!(plain_row.get::<Option<String>, _>("response").is_none());

    // The audit API shows them too, and switching the tenant off stops storing at once.
    let (_, item) = gateway.admin(Method::GET, &format!("/api/audit?tenant_id={tenant_id}&limit=10"), None).await;
    let items = item["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{item}");
    assert!(items.iter().all(|i| i["prompt"].as_str().is_some_and(|p| p.contains("<EMAIL_1>"))), "{item}");
    let path = format!("/api/enterprise/tenants/{tenant_id}");
    let (status, _) = gateway.admin(Method::PATCH, &path, Some(&json!({"store_prompts": false}))).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = gateway.post("/v1/chat/completions", &storing, &body(false)).await;
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = response.bytes().await;
    let rows = wait_for_rows(gateway.data_dir(), 4).await;
    let row = rows.iter().find(|r| r.get::<String, _>("request_id") == id).unwrap();
    assert!(row.get::<Option<String>, _>("prompt").is_none(), "stored after store_prompts was turned off");
}

#[tokio::test]
async fn sigterm_under_load_loses_no_record() {
    let gateway = BinaryGateway::start(CONFIG, &[]).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let proxy = gateway.proxy();
    let client = http_client();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (proxy, key, client) = (proxy.clone(), key.clone(), client.clone());
        tasks.spawn(async move {
            client
                .post(format!("{proxy}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&chat("slow", false))
                .send()
                .await
                .map(|r| r.status())
        });
    }
    // The answers take 1.5 s: stop the gateway while all 20 are in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gateway = gateway.restart().await;
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        if matches!(result.unwrap(), Ok(status) if status == 200) {
            answered += 1;
        }
    }
    assert_eq!(answered, 20, "in-flight requests were drained, not dropped");
    let rows = wait_for_rows(gateway.data_dir(), 20).await;
    assert_eq!(rows.len(), 20);
}

#[tokio::test]
async fn a_database_outage_spools_records_and_replays_them_exactly_once() {
    let Some(db) = ThrowawayDb::create().await else { return };
    let admin_url = flowgate_test_utils::postgres_admin_url();
    let target =
        admin_url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("127.0.0.1:5432").to_owned();
    let gate = TcpGate::start(&target).await;
    let gated_url = db.url.replace(&target, &format!("127.0.0.1:{}", gate.port));
    let gateway = TestApp::builder(CONFIG)
        .env("DATABASE_URL", &gated_url)
        .env("FLOWGATE__DATABASE__CONNECT_TIMEOUT_SECS", "1")
        .spawn()
        .await;
    let (_, key) = gateway.create_key(json!({"name": "audit"})).await;
    let key = key.as_str();
    let send = |n: usize| {
        let url = format!("{}/v1/chat/completions", gateway.proxy());
        async move {
            for _ in 0..n {
                let response = http_client().post(&url).bearer_auth(key).json(&chat("m", false)).send().await.unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    };
    send(10).await;
    gate.set_open(false);
    send(15).await;
    let spool = gateway.data_dir().join("audit-spool").join("spool.ndjson");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !spool.exists() {
        assert!(Instant::now() < deadline, "records were not spooled during the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gate.set_open(true);
    let count = || async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM audit_records").fetch_one(&mut conn).await.unwrap().get::<i64, _>(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count().await < 25 {
        assert!(Instant::now() < deadline, "spooled records were not replayed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(count().await, 25, "exactly one row per request");
    assert!(!spool.exists(), "the spool is cleared after the replay");
    drop(gateway);
    db.drop_db().await;
}

#[tokio::test]
async fn auditing_can_be_switched_off_for_benchmarks() {
    let gateway = TestApp::builder(CONFIG).env("FLOWGATE__AUDIT__ENABLED", "false").spawn().await;
    let (_, key) = gateway.create_key(json!({})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("m", false)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sqlite_rows(gateway.data_dir()).await.is_empty());
}

/// A NUL in the model (`"fake-gpt\u0000x"`, answered 404) used to make PostgreSQL refuse the
/// batch ("invalid byte sequence for encoding UTF8: 0x00"); the writer took that for an outage and
/// spooled every later record of every key. The record is cleaned before it is queued: it is
/// written, and so is every later one.
#[tokio::test]
async fn a_nul_in_the_model_does_not_stall_the_audit_trail_on_postgres() {
    let Some(db) = ThrowawayDb::create().await else { return };
    let gateway = TestApp::builder(CONFIG).postgres(&db).spawn().await;
    let (_, key) = gateway.create_key(json!({})).await;
    let poisoned = json!({"model": "fake-gpt\u{0}x", "messages": [{"role": "user", "content": "hi"}]});
    assert!(poisoned.to_string().contains(r#""fake-gpt\u0000x""#));
    let response = gateway.post("/v1/chat/completions", &key, &poisoned).await;
    assert_eq!(response.status(), 404);
    let poisoned_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut good_ids = Vec::new();
    for stream in [false, true, false, true, false] {
        let response = gateway.post("/v1/chat/completions", &key, &chat("m", stream)).await;
        assert_eq!(response.status(), 200);
        good_ids.push(response.headers()["x-request-id"].to_str().unwrap().to_owned());
        let _ = response.bytes().await;
    }
    let rows = || async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("SELECT request_id, model_requested, status, error_code FROM audit_records")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = rows().await;
        if rows.len() >= 6 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: Vec<String> = rows.iter().map(|r| r.get::<String, _>("request_id")).collect();
    assert_eq!(rows.len(), 6, "every request is in audit_records: {ids:?}");
    for id in &good_ids {
        assert!(ids.contains(id), "good request {id} missing");
    }
    let poisoned = rows.iter().find(|r| r.get::<String, _>("request_id") == poisoned_id).unwrap();
    assert_eq!(poisoned.get::<String, _>("model_requested"), "fake-gpt\u{FFFD}x");
    assert_eq!(poisoned.get::<i64, _>("status"), 404);
    assert_eq!(poisoned.get::<String, _>("error_code"), "model_not_found");
    let spool = gateway.data_dir().join("audit-spool");
    assert!(!spool.join("spool.ndjson").exists(), "nothing was spooled");
    assert!(!spool.join("dead-letter.ndjson").exists(), "nothing was refused");
    drop(gateway);
    db.drop_db().await;
}

/// A provider that sends a whole stream, its end included, then keeps the body open for 5 s (as a
/// provider does whose connection closes a little after the last event): `/v1/chat/completions`
/// in OpenAI's format, `/v1/messages` in Anthropic's. Usage: 2 prompt and 3 completion tokens.
async fn lingering_upstream() -> String {
    fn body(events: Vec<String>) -> axum::response::Response {
        let head =
            futures_util::stream::iter(events.into_iter().map(|e| Ok::<_, std::io::Error>(bytes::Bytes::from(e))));
        let tail = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(bytes::Bytes::new())
        });
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(axum::body::Body::from_stream(futures_util::StreamExt::chain(head, tail)))
            .unwrap()
    }
    let openai = || {
        let chunk = |delta: Value, finish: Value| {
            let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {chunk}\n\n")
        };
        let usage = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up", "choices": [],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}});
        body(vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hello"}), Value::Null),
            chunk(json!({}), json!("stop")),
            format!("data: {usage}\n\n"),
            "data: [DONE]\n\n".to_owned(),
        ])
    };
    let anthropic = || {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "up", "content": [], "stop_reason": null, "usage": {"input_tokens": 2, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 3}}),
            json!({"type": "message_stop"}),
        ];
        body(events.iter().map(|data| format!("event: {}\ndata: {data}\n\n", data["type"].as_str().unwrap())).collect())
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(move || async move { openai() }))
        .route("/v1/messages", axum::routing::post(move || async move { anthropic() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The official SDKs read a stream up to its end (OpenAI `[DONE]`, Anthropic `message_stop`) and
/// close the connection right there, often before the provider's body has ended. Such a stream
/// is complete: no `incomplete` in its record, and the cost of its usage, not the abandoned
/// stream's charge (at least the estimated prompt, far more here). Every pair of client and
/// upstream formats.
#[tokio::test]
async fn a_stream_read_to_its_end_is_complete_even_if_the_client_leaves_before_the_upstream_body_ends() {
    let upstream = lingering_upstream().await;
    let prices = "input_cost_per_token: 0.00001, output_cost_per_token: 0.00002";
    let config = format!(
        "model_list:
  - {{model_name: gpt, litellm_params: {{model: openai/up, api_base: '{upstream}/v1', api_key: k, {prices}}}}}
  - {{model_name: claude, litellm_params: {{model: anthropic/up, api_base: '{upstream}', api_key: k, {prices}}}}}
"
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    // A long prompt: the abandoned-stream charge (its estimated tokens) would be far above the
    // 2 prompt tokens the provider reports.
    let long = "lorem ipsum ".repeat(400);
    for (path, model, end) in [
        ("/v1/chat/completions", "gpt", "data: [DONE]\n\n"),
        ("/v1/chat/completions", "claude", "data: [DONE]\n\n"),
        ("/anthropic/v1/messages", "gpt", "event: message_stop\n"),
        ("/anthropic/v1/messages", "claude", "event: message_stop\n"),
    ] {
        let request = json!({"model": model, "stream": true, "max_tokens": 20,
            "messages": [{"role": "user", "content": long}]});
        let mut response = gateway.post(path, &key, &request).await;
        assert_eq!(response.status(), 200, "{path} {model}");
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let mut received = String::new();
        while !received.contains(end) {
            let chunk = tokio::time::timeout(Duration::from_secs(3), response.chunk()).await;
            let chunk = chunk.unwrap_or_else(|_| panic!("{path} {model}: no end in {received}")).unwrap();
            received.push_str(&String::from_utf8_lossy(&chunk.unwrap_or_else(|| panic!("{path} {model}: {received}"))));
        }
        let left = Instant::now();
        drop(response);
        // Written when the client left, well before the provider's body ends (5 s).
        let row = loop {
            let rows = sqlite_rows(gateway.data_dir()).await;
            if let Some(row) = rows.into_iter().find(|r| r.get::<String, _>("request_id") == id) {
                break row;
            }
            assert!(left.elapsed() < Duration::from_secs(3), "{path} {model}: no record while the upstream lingers");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(row.get::<Option<String>, _>("error_code"), None, "{path} {model}");
        assert_eq!(row.get::<i64, _>("status"), 200);
        assert_eq!((row.get::<i64, _>("prompt_tokens"), row.get::<i64, _>("completion_tokens")), (2, 3));
        let cost = row.get::<i64, _>("cost_nanos");
        assert!((cost - 80_000).abs() <= 2, "{path} {model}: cost {cost} is not the usage's");
    }
}

/// A stream whose provider reports no usage is not free: the upstream was asked for usage (Azure
/// included), and when none came the record carries an estimate from the streamed text, marked
/// `usage_estimated`, in the table and in the api-server's answer.
#[tokio::test]
async fn a_stream_without_usage_is_charged_an_estimate_marked_as_such() {
    use wiremock::matchers::{body_partial_json, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let upstream = MockServer::start().await;
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "dep",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    // 14 bytes of text as written: "abcd" "efgh" "ij\"l" (the escaped quote is 2 bytes) "m".
    let mut body = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for text in ["abcd", "efgh", "ij\"l", "m"] {
        body.push_str(&chunk(json!({"content": text}), Value::Null));
    }
    body.push_str(&chunk(json!({}), json!("stop")));
    body.push_str("data: [DONE]\n\n");
    // Only a request that asks for usage is answered.
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"stream": true, "stream_options": {"include_usage": true}})))
        .respond_with(
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(body),
        )
        .mount(&upstream)
        .await;
    let config = format!(
        "model_list:
  - {{model_name: azure, litellm_params: {{model: azure/dep, api_base: '{}', api_version: '2024-10-21', api_key: k, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}}}
  - {{model_name: m, litellm_params: {{model: mock/m, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}}}
",
        upstream.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let response = gateway.post("/v1/chat/completions", &key, &chat("azure", true)).await;
    assert_eq!(response.status(), 200);
    let estimated_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let text = response.text().await.unwrap();
    assert!(text.contains("abcd") && text.trim_end().ends_with("data: [DONE]"), "{text}");
    let response = gateway.post("/v1/chat/completions", &key, &chat("m", true)).await;
    let counted_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = response.text().await.unwrap();

    let rows = wait_for_rows(gateway.data_dir(), 2).await;
    let by_id = |id: &str| rows.iter().find(|r| r.get::<String, _>("request_id") == id).unwrap();
    let estimated = by_id(&estimated_id);
    assert_eq!(estimated.get::<i64, _>("status"), 200);
    assert_eq!(estimated.get::<i64, _>("usage_estimated"), 1);
    assert_eq!(estimated.get::<i64, _>("completion_tokens"), 4, "14 bytes of text / 4, rounded up");
    let prompt_tokens = estimated.get::<i64, _>("prompt_tokens");
    assert!(prompt_tokens > 5, "the request body / 4: {prompt_tokens}");
    let cost = estimated.get::<i64, _>("cost_nanos");
    assert!((cost - (prompt_tokens * 1_000 + 4 * 2_000)).abs() <= 1, "charged the estimate: {cost}");
    assert!(estimated.get::<Option<String>, _>("error_code").is_none(), "the stream completed");
    let counted = by_id(&counted_id);
    assert_eq!(counted.get::<i64, _>("usage_estimated"), 0, "a stream that reports usage is charged its usage");

    let (status, page) = gateway.admin(Method::GET, "/api/audit?limit=10", None).await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().unwrap();
    let item = |id: &str| items.iter().find(|i| i["request_id"] == id).unwrap().clone();
    assert_eq!(item(&estimated_id)["usage_estimated"], true);
    assert_eq!(item(&counted_id)["usage_estimated"], false);
}
