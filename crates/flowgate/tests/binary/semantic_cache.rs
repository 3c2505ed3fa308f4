//! The semantic phases of the metacache end to end, with the real local model: a paraphrase is
//! answered from the cache (plain and streamed, with its phase and similarity), a near miss and
//! another tenant are not, and through Redis an entry stored by one replica is a phase-4 hit on
//! another within a second.

use std::time::Duration;

use flowgate_test_utils::{TestApp, ThrowawayDb, embedding_model_dir, require_redis, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::gateway::sse_events;

const SSE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"30 days \"},\"finish_reason\":null}]}\n\n\
data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"from delivery\"},\"finish_reason\":\"stop\"}]}\n\n\
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
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Refunds within 30 days."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
        })))
        .mount(&server)
        .await;
    server
}

fn config(upstream: &MockServer, model_dir: &std::path::Path) -> String {
    format!(
        "model_list:\n  - {{model_name: m, litellm_params: {{model: openai/x, api_base: '{}/v1', api_key: k}}}}\n\
         cache:\n  enabled: true\n  semantic: {{enabled: true, local_model_dir: '{}', embed_timeout_ms: 5000}}\n",
        upstream.uri(),
        model_dir.display()
    )
}

fn chat(content: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]})
}

async fn send(gateway: &TestApp, key: &str, body: &Value) -> (String, Option<String>, reqwest::Response) {
    let response = flowgate_test_utils::http_client()
        .post(format!("{}/v1/chat/completions", gateway.proxy()))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (cache, similarity) = (header("x-flowgate-cache").unwrap_or_default(), header("x-flowgate-cache-similarity"));
    (cache, similarity, response)
}

/// Waits until the semantic phase holds `entries` answers (stored once sent whole).
async fn wait_for_semantic_entries(gateway: &TestApp, entries: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, stats) = gateway.admin(Method::GET, "/api/metacache/stats", None).await;
        assert_eq!(status, 200, "{stats}");
        if stats["semantic"]["entries"].as_u64() >= Some(entries) {
            return stats;
        }
        assert!(std::time::Instant::now() < deadline, "the semantic cache never held {entries} answers: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_paraphrase_is_answered_from_the_semantic_cache_and_a_near_miss_is_not() {
    let Some(model_dir) = embedding_model_dir() else { return };
    let upstream = upstream().await;
    let gateway = spawn_app(&config(&upstream, &model_dir)).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let calls = || async { upstream.received_requests().await.unwrap().len() };

    let (cache, _, first) = send(&gateway, &key, &chat("What is your refund policy for orders?")).await;
    assert_eq!(cache, "miss");
    let first: Value = first.json().await.unwrap();
    wait_for_semantic_entries(&gateway, 1).await;

    let (cache, similarity, second) = send(&gateway, &key, &chat("What's the refund policy on orders?")).await;
    assert_eq!(cache, "hit-semantic");
    let similarity: f64 = similarity.expect("a similarity header").parse().unwrap();
    assert!((0.90..=1.0).contains(&similarity), "{similarity}");
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(calls().await, 1, "the paraphrase came from the cache");

    // The same text again is an exact hit (phase 1), never embedded.
    let (cache, similarity, _) = send(&gateway, &key, &chat("What is your refund policy for orders?")).await;
    assert_eq!((cache.as_str(), similarity), ("hit-exact", None));

    // Near misses go upstream: another topic, a number, a negation.
    for near_miss in ["What is your shipping policy for orders?", "What is your refund policy for 3 orders?"] {
        assert_eq!(send(&gateway, &key, &chat(near_miss)).await.0, "miss", "{near_miss}");
    }
    assert_eq!(calls().await, 3);

    // Another tenant asking the same never meets this tenant's entry.
    let (_, tenant) = gateway.admin(Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "other"}))).await;
    let (_, other_key) = gateway.create_key(json!({"tenant_id": tenant["id"]})).await;
    assert_eq!(send(&gateway, &other_key, &chat("What's the refund policy on orders?")).await.0, "miss");
    assert_eq!(calls().await, 4);

    // Streams are stored whole and a streamed paraphrase is replayed as a stream.
    let mut streamed = chat("How long do refunds take?");
    streamed["stream"] = json!(true);
    let (cache, _, response) = send(&gateway, &key, &streamed).await;
    assert_eq!(cache, "miss");
    let live = sse_events(response).await;
    let before = wait_for_semantic_entries(&gateway, 5).await;
    let mut paraphrase = chat("How long does a refund take?");
    paraphrase["stream"] = json!(true);
    let (cache, _, response) = send(&gateway, &key, &paraphrase).await;
    assert_eq!(cache, "hit-semantic");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(sse_events(response).await, live);
    assert_eq!(calls().await, 5);

    // The audit trail records the hits with their phase and no cost.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let hits = loop {
        let (_, page) = gateway.admin(Method::GET, "/api/audit?limit=50", None).await;
        let hits: Vec<Value> =
            page["items"].as_array().unwrap().iter().filter(|r| r["cache_hit"] == true).cloned().collect();
        if hits.len() >= 3 || std::time::Instant::now() > deadline {
            break hits;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let phases: Vec<&str> = hits.iter().filter_map(|r| r["metadata"]["cache_phase"].as_str()).collect();
    assert_eq!(phases.iter().filter(|p| **p == "semantic").count(), 2, "{hits:#?}");
    assert!(phases.contains(&"exact"), "{hits:#?}");
    assert!(hits.iter().all(|r| r["cost_usd"].as_f64().unwrap_or(0.0) == 0.0), "{hits:#?}");

    // Per-phase stats: lookups and hits of each phase.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let (_, stats) = gateway.admin(Method::GET, "/api/metacache/stats", None).await;
        if stats["phases"]["semantic"]["hits"].as_u64() >= Some(2) || std::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let semantic = &stats["phases"]["semantic"];
    assert!(semantic["hits"].as_u64() >= Some(2), "{stats}");
    assert!(semantic["lookups"].as_u64() >= Some(6), "{stats}");
    assert!(before["semantic"]["bytes"].as_u64() > Some(0), "{before}");
    assert!(semantic["p99_ms"].as_f64().is_some(), "{stats}");
    let savings = &stats["by_tenant_model"][0];
    assert_eq!((savings["model"].as_str(), savings["phases"]["semantic"].as_u64()), (Some("m"), Some(2)), "{stats}");

    // The tenant's entries can be listed (text only for tenants that store prompts).
    let (status, entries) = gateway.admin(Method::GET, "/api/metacache/entries", None).await;
    assert_eq!(status, 200, "{entries}");
    let listed = entries["data"].as_array().unwrap();
    assert_eq!(listed.len(), 5, "{entries}");
    assert!(listed.iter().all(|e| e["text"].is_null() && e["model"] == "m"), "{entries}");

    // DELETE /api/metacache forgets the entries: the paraphrase goes upstream again.
    let (status, body) = gateway.admin(Method::DELETE, "/api/metacache", None).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(send(&gateway, &key, &chat("What's the refund policy for my orders?")).await.0, "miss");
}

#[tokio::test]
async fn through_redis_an_entry_stored_by_one_replica_is_a_phase_4_hit_on_another() {
    let Some(model_dir) = embedding_model_dir() else { return };
    if !require_redis().await {
        return;
    }
    let Some(db) = ThrowawayDb::create().await else { return };
    let upstream = upstream().await;
    let prefix = format!("{}:", db.name);
    let replica = || TestApp::builder(config(&upstream, &model_dir)).postgres(&db).redis(&prefix).spawn();
    let first = replica().await;
    let second = replica().await;
    let (_, key) = first.create_key(json!({})).await;
    assert_eq!(send(&first, &key, &chat("Which payment methods do you accept?")).await.0, "miss");
    wait_for_semantic_entries(&first, 1).await;
    // Within a second the other replica has applied the entry to its own index.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cache, similarity, response) = send(&second, &key, &chat("What payment methods do you accept?")).await;
    assert_eq!(cache, "hit-semantic-shared");
    assert!(similarity.is_some());
    assert_eq!(response.json::<Value>().await.unwrap()["choices"][0]["message"]["content"], "Refunds within 30 days.");
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    // A replica started now loads the live entries at start.
    let third = replica().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(send(&third, &key, &chat("Which payment methods are accepted?")).await.0, "hit-semantic-shared");
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    drop((first, second, third));
    db.drop_db().await;
}
