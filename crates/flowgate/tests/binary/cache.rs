//! The exact-match response cache end to end: the same request answered once by the upstream
//! (a wiremock server), then from the cache, plain and streamed; per-request opt-outs; tenants
//! kept apart; and through Redis, an answer stored by one gateway served by another.

use std::time::Duration;

use flowgate_test_utils::{TestApp, ThrowawayDb, require_redis, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::gateway::sse_events;

const SSE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"streamed \"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"answer\"},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";

async fn upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(
            ResponseTemplate::new(200).insert_header("content-type", "text/event-stream").set_body_string(SSE),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "the answer"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        })))
        .mount(&server)
        .await;
    server
}

fn config(upstream: &MockServer) -> String {
    format!(
        "model_list:\n  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k}}}}\ncache: {{enabled: true}}\n",
        upstream.uri()
    )
}

fn chat(content: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]})
}

/// Waits until this gateway's cache holds `entries` answers (they are stored once sent whole).
async fn wait_for_entries(gateway: &TestApp, entries: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, stats) = gateway.admin(Method::GET, "/api/metacache/stats", None).await;
        assert_eq!(status, 200, "{stats}");
        if stats["exact"]["entries"].as_u64() >= Some(entries) {
            return stats;
        }
        assert!(std::time::Instant::now() < deadline, "cache never held {entries} answers: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(gateway: &TestApp, key: &str, body: &Value, cache_control: Option<&str>) -> (String, reqwest::Response) {
    let mut request = flowgate_test_utils::http_client()
        .post(format!("{}/v1/chat/completions", gateway.proxy()))
        .bearer_auth(key)
        .json(body);
    if let Some(value) = cache_control {
        request = request.header("cache-control", value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cache = response.headers().get("x-flowgate-cache").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (cache, response)
}

#[tokio::test]
async fn repeated_requests_are_answered_from_the_cache_plain_and_streamed() {
    let upstream = upstream().await;
    let gateway = spawn_app(&config(&upstream)).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let calls = || async { upstream.received_requests().await.unwrap().len() };

    let (cache, first) = send(&gateway, &key, &chat("hello"), None).await;
    assert_eq!(cache, "miss");
    let first: Value = first.json().await.unwrap();
    wait_for_entries(&gateway, 1).await;
    // Field order and per-user fields do not make a request different.
    let reordered = json!({"messages": [{"content": "hello", "role": "user"}], "user": "someone", "model": "m"});
    let (cache, second) = send(&gateway, &key, &reordered, None).await;
    assert_eq!(cache, "hit-exact");
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(calls().await, 1, "the second answer came from the cache");

    // Other content, and the opt-outs, go to the upstream.
    assert_eq!(send(&gateway, &key, &chat("something else"), None).await.0, "miss");
    assert_eq!(send(&gateway, &key, &chat("hello"), Some("no-cache")).await.0, "miss");
    let mut opted_out = chat("hello");
    opted_out["cache"] = json!({"no-cache": true});
    assert_eq!(send(&gateway, &key, &opted_out, None).await.0, "miss");
    assert_eq!(calls().await, 4);
    let forwarded: Value = upstream.received_requests().await.unwrap()[3].body_json().unwrap();
    assert!(forwarded.get("cache").is_none(), "the cache field is not forwarded: {forwarded}");

    // Another tenant's identical request is not served this tenant's answer.
    let (_, tenant) = gateway.admin(Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "other"}))).await;
    let (_, other_key) = gateway.create_key(json!({"tenant_id": tenant["id"]})).await;
    assert_eq!(send(&gateway, &other_key, &chat("hello"), None).await.0, "miss");
    assert_eq!(calls().await, 5);

    // Streams are stored whole and replayed as streams.
    let mut streamed = chat("hello");
    streamed["stream"] = json!(true);
    let (cache, response) = send(&gateway, &key, &streamed, None).await;
    assert_eq!(cache, "miss");
    let live = sse_events(response).await;
    assert_eq!(live.last().map(|e| e.1.as_str()), Some("[DONE]"), "{live:?}");
    let stats = wait_for_entries(&gateway, 4).await;
    let (cache, response) = send(&gateway, &key, &streamed, None).await;
    assert_eq!(cache, "hit-exact");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(sse_events(response).await, live);
    assert_eq!(calls().await, 6);

    // Hit counts at /api/metacache/stats (the proxies add theirs every second): two hits so far;
    // misses are the lookups that found nothing.
    assert!(stats["exact"]["hits"].as_u64() <= Some(1), "{stats}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let (_, stats) = gateway.admin(Method::GET, "/api/metacache/stats", None).await;
        if stats["exact"]["hits"].as_u64() == Some(2) || std::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((stats["exact"]["hits"].as_u64(), stats["exact"]["misses"].as_u64()), (Some(2), Some(4)), "{stats}");
    assert_eq!(stats["phases"]["exact"]["hits"], 2, "{stats}");
    assert!(stats["phases"]["exact"]["p99_ms"].as_f64().is_some(), "{stats}");
    assert_eq!(stats["cache_metrics_present"], true, "{stats}");
}

#[tokio::test]
async fn through_redis_an_answer_stored_by_one_gateway_is_served_by_another() {
    // Two replicas as deployed: one PostgreSQL database and one Redis between them.
    if !require_redis().await {
        return;
    }
    let Some(db) = ThrowawayDb::create().await else { return };
    let upstream = upstream().await;
    let prefix = format!("{}:", db.name);
    let replica = || TestApp::builder(config(&upstream)).postgres(&db).redis(&prefix).spawn();
    let first = replica().await;
    let second = replica().await;
    let (_, key_a) = first.create_key(json!({})).await;
    let (_, key_b) = second.create_key(json!({})).await;
    assert_eq!(send(&first, &key_a, &chat("shared"), None).await.0, "miss");
    wait_for_entries(&first, 1).await;
    let (cache, response) = send(&second, &key_b, &chat("shared"), None).await;
    assert_eq!(cache, "hit-exact-shared");
    assert_eq!(response.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "the answer");
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    drop((first, second));
    db.drop_db().await;
}

/// An upstream that sends a whole stream, `[DONE]` included, then keeps the body open for a few
/// seconds before ending it (a provider finishing its connection late).
async fn lingering_upstream() -> String {
    use futures_util::StreamExt;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            let events = futures_util::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from(SSE)) });
            let linger = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_secs(4)).await;
                Ok(bytes::Bytes::new())
            });
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from_stream(events.chain(linger)))
                .unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// The official SDKs close the connection as soon as they have `[DONE]`: the answer is complete,
/// so it is cached, even though the upstream's body has not ended yet.
#[tokio::test]
async fn a_stream_the_client_closes_after_its_end_marker_is_cached() {
    let upstream = lingering_upstream().await;
    let gateway = spawn_app(&format!(
        "model_list:\n  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{upstream}/v1', api_key: k}}}}\ncache: {{enabled: true}}\n"
    ))
    .await;
    let (_, key) = gateway.create_key(json!({})).await;
    let mut body = chat("close early");
    body["stream"] = json!(true);
    let (cache, mut response) = send(&gateway, &key, &body, None).await;
    assert_eq!(cache, "miss");
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("[DONE]") {
        let chunk = tokio::time::timeout(Duration::from_secs(3), response.chunk()).await.unwrap().unwrap();
        seen.extend_from_slice(&chunk.expect("the stream ended before [DONE]"));
    }
    drop(response);
    wait_for_entries(&gateway, 1).await;
    let (cache, again) = send(&gateway, &key, &body, None).await;
    assert_eq!(cache, "hit-exact");
    let text: String = sse_events(again)
        .await
        .iter()
        .filter_map(|(_, data)| serde_json::from_str::<Value>(data).ok())
        .filter_map(|v| v.pointer("/choices/0/delta/content").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert_eq!(text, "streamed answer");
}
