//! The origin's side of the edge pre-filter: the client IP and request id it sends are believed
//! only with its shared secret, and `flowgate edge sync` writes revoked key ids through
//! Cloudflare's KV bulk API (a local server speaking that API stands in for Cloudflare).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use flowgate_db::sqlx::{self, Row};
use flowgate_test_utils::{FlowgateProcess, TempDir, TestApp, base_env, http_client};
use reqwest::Method;
use serde_json::{Value, json};

const CONFIG: &str = "model_list:
  - {model_name: m, litellm_params: {model: mock/m}}
";
const EDGE_TOKEN: &str = "edge-shared-secret-0123456789";

async fn audit_row(dir: &std::path::Path, request_id: &str) -> Option<(String, Option<String>)> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", dir.join("flowgate.db").display());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let row = sqlx::query("SELECT request_id, client_ip FROM audit_records WHERE request_id = ?")
            .bind(request_id)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        if let Some(row) = row {
            return Some((row.get("request_id"), row.get("client_ip")));
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_edge_client_ip_and_request_id_are_believed_only_with_the_edge_secret() {
    let gateway = TestApp::builder(CONFIG).env("FLOWGATE__PROXY__EDGE_TOKEN", EDGE_TOKEN).spawn().await;
    let (_, key) = gateway.create_key(json!({"ip_allowlist": ["203.0.113.0/24"]})).await;
    let client = http_client();
    let chat = |headers: &[(&str, &str)]| {
        let mut request = client
            .post(format!("{}/v1/chat/completions", gateway.proxy()))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };

    // Straight to the origin, a forged client IP is ignored: the key's allow-list sees 127.0.0.1.
    let forged = chat(&[("x-flowgate-client-ip", "203.0.113.7"), ("x-request-id", "forged-id")]).await.unwrap();
    assert_eq!(forged.status(), 403);
    assert_ne!(forged.headers()["x-request-id"], "forged-id");
    let wrong = chat(&[("x-flowgate-edge", "not-the-secret-0123456789"), ("x-flowgate-client-ip", "203.0.113.7")])
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    // With the edge's secret, its client IP passes the allow-list and its request id is the record's.
    let edge_id = "0193a5e0-7d2f-7c3b-9d4e-0a1b2c3d4e5f";
    let honoured =
        chat(&[("x-flowgate-edge", EDGE_TOKEN), ("x-flowgate-client-ip", "203.0.113.7"), ("x-request-id", edge_id)])
            .await
            .unwrap();
    assert_eq!(honoured.status(), 200);
    assert_eq!(honoured.headers()["x-request-id"], edge_id);
    let _ = honoured.bytes().await;
    let (id, ip) = audit_row(gateway.data_dir(), edge_id).await.expect("an audit record under the edge's id");
    assert_eq!((id.as_str(), ip.as_deref()), (edge_id, Some("203.0.113.7")));
    assert!(!gateway.log_text().contains(EDGE_TOKEN), "the secret is never logged");
}

/// What the stand-in for Cloudflare's API received: (path, authorization, body).
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A local server speaking Cloudflare's KV bulk-write API: `PUT
/// /client/v4/accounts/{account}/storage/kv/namespaces/{namespace}/bulk`, bearer token, JSON
/// list of `{key, value}`; answers in Cloudflare's envelope. `token` is the one it accepts.
async fn fake_cloudflare(token: &'static str) -> (String, Received) {
    let received: Received = Arc::default();
    async fn bulk(
        State((token, received)): State<(&'static str, Received)>,
        Path((account, namespace)): Path<(String, String)>,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, axum::Json<Value>) {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let path = format!("/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}/bulk");
        received.lock().unwrap().push((path, auth.clone(), parsed.clone()));
        if auth != format!("Bearer {token}") {
            let errors = json!([{"code": 10000, "message": "Authentication error"}]);
            return (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"success": false, "errors": errors, "messages": [], "result": null})),
            );
        }
        let count = parsed.as_array().map_or(0, Vec::len);
        let result = json!({"successful_key_count": count, "unsuccessful_keys": []});
        (StatusCode::OK, axum::Json(json!({"success": true, "errors": [], "messages": [], "result": result})))
    }
    let app = axum::Router::new()
        .route("/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}/bulk", put(bulk))
        .with_state((token, received.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/client/v4"), received)
}

async fn cli(env: &[(String, String)], args: &[&str]) -> (i32, Value, String, String) {
    let output = FlowgateProcess::command(args, env).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), serde_json::from_str(&stdout).unwrap_or(Value::Null), stdout, stderr)
}

#[tokio::test]
async fn edge_sync_writes_revoked_key_ids_to_the_kv_namespace() {
    let dir = TempDir::new();
    let process = FlowgateProcess::spawn(&["all"], &base_env(dir.path()), &["api-server", "proxy"]).await;
    let api = process.url("api-server");
    let admin = std::fs::read_to_string(dir.path().join("admin_api_key")).unwrap().trim().to_owned();
    let (kept, _) = flowgate_test_utils::create_key(&api, &admin, &json!({"name": "kept"})).await;
    let (revoked, _) = flowgate_test_utils::create_key(&api, &admin, &json!({"name": "gone"})).await;
    let response = http_client()
        .request(Method::POST, format!("{api}/api/enterprise/vkeys/{revoked}/revoke"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());

    let token = "cf-api-token-abcdef0123456789";
    let (base, received) = fake_cloudflare(token).await;
    let mut env = base_env(dir.path());
    env.extend([
        ("FLOWGATE_API_URL".to_owned(), api.clone()),
        ("CLOUDFLARE_ACCOUNT_ID".to_owned(), "acc123".to_owned()),
        ("CLOUDFLARE_API_BASE_URL".to_owned(), base.clone()),
    ]);
    let sync = ["edge", "sync", "--namespace-id", "ns456"];

    // No token: refused before anything is sent.
    let (code, _, _, stderr) = cli(&env, &sync).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("CLOUDFLARE_API_TOKEN"), "{stderr}");
    assert!(received.lock().unwrap().is_empty());

    // A token Cloudflare refuses: Cloudflare's message, never the token.
    let mut bad = env.clone();
    bad.push(("CLOUDFLARE_API_TOKEN".to_owned(), "wrong-token-0123456789".to_owned()));
    let (code, _, stdout, stderr) = cli(&bad, &sync).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("Authentication error") && stderr.contains("403"), "{stderr}");
    assert!(!stderr.contains("wrong-token") && !stdout.contains("wrong-token"));

    // The right token: the revoked key's id is written, the live one's is not.
    env.push(("CLOUDFLARE_API_TOKEN".to_owned(), token.to_owned()));
    let (code, out, stdout, stderr) = cli(&env, &sync).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out, json!({"revoked_keys": 1, "written": 1, "namespace_id": "ns456"}));
    assert!(!stdout.contains(token) && !stderr.contains(token));
    let calls = received.lock().unwrap().clone();
    let (path, auth, body) = calls.last().unwrap();
    assert_eq!(path, "/client/v4/accounts/acc123/storage/kv/namespaces/ns456/bulk");
    assert_eq!(auth, &format!("Bearer {token}"));
    let pairs = body.as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{body}");
    assert_eq!(pairs[0]["key"], revoked.as_str());
    assert!(pairs[0]["value"].as_str().is_some_and(|v| v.starts_with("20")), "the revocation time: {body}");
    assert!(!body.to_string().contains(&kept));
}
