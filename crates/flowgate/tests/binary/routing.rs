//! Routing at run time and provider credentials sealed at rest, with the real binary in split
//! mode: one api-server and two proxy replicas on PostgreSQL and Redis (Redis behind a `TcpGate`,
//! so the test can take it away). A deployment written through `/api/routing` serves on both
//! replicas within a second; a stream through a deployment removed meanwhile finishes; with Redis
//! gone the periodic revision check still converges; the provider key is sealed in its row, used
//! by the deployment, re-wrapped under a rotated KEK; a wrong KEK stops the start, clearly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowgate_db::sqlx::Row;
use flowgate_test_utils::{
    FlowgateProcess, TcpGate, TempDir, ThrowawayDb, base_env, create_key, http_client, require_redis,
};
use serde_json::{Value, json};

const ADMIN: &str = "routing-admin-key";
const OLD_KEK: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const NEW_KEK: &str = "0202020202020202020202020202020202020202020202020202020202020202";
const PROVIDER_KEY: &str = "sk-provider-sealed-4f1c9a7e2b";
/// The revision check's interval in this test.
const REFRESH_MS: u64 = 500;

/// An OpenAI-compatible upstream that answers every chat request and records the
/// `Authorization` headers it was sent.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let record = record.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                record.lock().unwrap().push(auth.to_owned());
                axum::Json(json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "from the sealed-key upstream"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

struct Cluster {
    env: Vec<(String, String)>,
    api: FlowgateProcess,
    proxies: Vec<FlowgateProcess>,
}

impl Cluster {
    fn api(&self) -> String {
        self.api.url("api-server")
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = http_client().request(method, format!("{}{path}", self.api())).bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn env(dir: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir.path());
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

fn with(env: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        env.iter().filter(|(k, _)| !extra.iter().any(|(e, _)| e == k)).cloned().collect();
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

async fn chat(proxy: &FlowgateProcess, key: &str, model: &str) -> (u16, Value) {
    let response = http_client()
        .post(format!("{}/v1/chat/completions", proxy.url("proxy")))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until `model` answers 200 (`serving`) or is no longer listed (not) on every proxy;
/// returns how long it took.
async fn converge(cluster: &Cluster, key: &str, model: &str, serving: bool, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut done = true;
        for proxy in &cluster.proxies {
            done &= if serving {
                chat(proxy, key, model).await.0 == 200
            } else {
                let listed: Value = http_client()
                    .get(format!("{}/v1/models", proxy.url("proxy")))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                !listed["data"].as_array().unwrap().iter().any(|m| m["id"] == model)
            };
        }
        if done {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "`{model}` did not converge (serving: {serving}) within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(env: &[(String, String)], mode: &str) -> FlowgateProcess {
    FlowgateProcess::spawn(&[mode], env, &[mode]).await
}

async fn start_cluster(env: Vec<(String, String)>) -> Cluster {
    let api = start(&env, "api-server").await;
    let proxy_env = with(&env, &[("FLOWGATE__PROXY__API_SERVER_URL", &api.url("api-server"))]);
    let mut proxies = Vec::new();
    for _ in 0..2 {
        proxies.push(start(&proxy_env, "proxy").await);
    }
    Cluster { env, api, proxies }
}

#[tokio::test]
async fn routing_and_sealed_credentials_across_two_proxies_on_postgres_and_redis() {
    if !require_redis().await {
        return;
    }
    let Some(db) = ThrowawayDb::create().await else { return };
    let dir = TempDir::new();
    let gate = TcpGate::start("127.0.0.1:6379").await;
    let redis_url = format!("redis://127.0.0.1:{}", gate.port);
    let prefix = format!("test-routing-{}:", std::process::id());
    let config = dir.path().join("flowgate.yaml");
    std::fs::write(&config, "model_list:\n  - {model_name: file-model, litellm_params: {model: mock/file, mock_response: from the file}, model_info: {id: file-dep}}\n").unwrap();
    let refresh = REFRESH_MS.to_string();
    let base = env(
        &dir,
        &[
            ("DATABASE_URL", &db.url),
            ("REDIS_URL", &redis_url),
            ("FLOWGATE__REDIS__PREFIX", &prefix),
            ("ADMIN_API_KEY", ADMIN),
            ("FLOWGATE__SECURITY__KEY_HASH_SECRET", "routing-test-key-hash-secret"),
            ("FLOWGATE_KEK", OLD_KEK),
            ("FLOWGATE__ROUTING__REFRESH_MS", &refresh),
            ("FLOWGATE_CONFIG", config.to_str().unwrap()),
        ],
    );
    let migrate = FlowgateProcess::command(&["migrate"], &base).output().await.unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let (upstream, seen) = recording_upstream().await;
    let cluster = start_cluster(base.clone()).await;
    let (_, key) = create_key(&cluster.api(), ADMIN, &json!({"name": "routing"})).await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let delete = reqwest::Method::DELETE;

    // A credential: 201, its value never answered, and not in its row.
    let (status, created) = cluster
        .admin(post.clone(), "/api/credentials", Some(json!({"name": "upstream-key", "value": PROVIDER_KEY})))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["reference"], "credential/upstream-key");
    assert!(created["kek_id"].as_str().unwrap().starts_with("local:"));
    assert!(!created.to_string().contains(PROVIDER_KEY));
    let (_, listed) = cluster.admin(get.clone(), "/api/credentials", None).await;
    assert!(!listed.to_string().contains(PROVIDER_KEY));
    let url = secrecy::SecretString::from(db.url.clone());
    let database = flowgate_db::Database::connect(Some(&url), dir.path(), 1, Duration::from_secs(5)).await.unwrap();
    let row = flowgate_db::sqlx::query("SELECT * FROM provider_credentials WHERE name = 'upstream-key'")
        .fetch_one(database.pool())
        .await
        .unwrap();
    for column in ["name", "description", "kek_id", "wrapped_key", "sealed_value"] {
        let value: String = row.try_get(column).unwrap();
        assert!(!value.contains(PROVIDER_KEY) && !value.contains("4f1c9a7e"), "plaintext in `{column}`");
    }
    let old_kek_id: String = row.try_get("kek_id").unwrap();

    // Validation errors name the field.
    for (body, status, needle) in [
        (
            json!({"model_name": "x", "litellm_params": {"model": "openai/x", "api_base": upstream, "api_key": PROVIDER_KEY}}),
            400,
            "`litellm_params.api_key` must be a reference",
        ),
        (
            json!({"model_name": "x", "litellm_params": {"model": "openai/x", "api_base": upstream, "api_key": "credential/missing"}}),
            400,
            "credential `missing` does not exist",
        ),
        (
            json!({"model_name": "x", "litellm_params": {"model": "azure/x", "api_base": upstream}}),
            400,
            "`litellm_params.api_version` is required for azure",
        ),
        (
            json!({"model_name": "x", "litellm_params": {"model": "mock/x"}, "model_info": {"id": "file-dep"}}),
            409,
            "read-only",
        ),
        (json!(["not", "an", "entry"]), 400, "model_list entry"),
    ] {
        let (got, answer) = cluster.admin(post.clone(), "/api/routing/deployments", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap_or_default().contains(needle), "{body}: {answer}");
    }
    let (status, file_view) = cluster.admin(get.clone(), "/api/routing/deployments/file-dep", None).await;
    assert_eq!((status, &file_view["source"]), (200, &json!("file")), "{file_view}");
    let (status, answer) = cluster.admin(delete.clone(), "/api/routing/deployments/file-dep", None).await;
    assert_eq!(status, 409, "{answer}");
    let (status, _) = cluster.admin(delete.clone(), "/api/routing/deployments/nope", None).await;
    assert_eq!(status, 404);
    let (status, _) = http_client()
        .get(format!("{}/api/routing", cluster.api()))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401, "the admin key is required");

    // A deployment added through the API serves on both proxies within a second, with the
    // sealed key.
    let (status, created) = cluster
        .admin(
            post.clone(),
            "/api/routing/deployments",
            Some(json!({"model_name": "dyn-model", "litellm_params": {"model": "openai/up", "api_base": format!("{upstream}/v1"), "api_key": "credential/upstream-key"}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["source"], "api");
    let dyn_id = created["id"].as_str().unwrap().to_owned();
    let took = converge(&cluster, &key, "dyn-model", true, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(1), "applied on both replicas in {took:?}");
    let (_, answer) = chat(&cluster.proxies[1], &key, "dyn-model").await;
    assert_eq!(answer["choices"][0]["message"]["content"], "from the sealed-key upstream");
    assert!(
        seen.lock().unwrap().iter().all(|auth| auth == &format!("Bearer {PROVIDER_KEY}")),
        "the upstream got the opened key"
    );
    assert!(
        !cluster.api.log_text().contains(PROVIDER_KEY) && !cluster.proxies[0].log_text().contains(PROVIDER_KEY),
        "never logged"
    );

    // GET /api/routing: the revision, the file's deployment read-only, the live view of both
    // proxies.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, routing) = cluster.admin(get.clone(), "/api/routing", None).await;
    assert_eq!(status, 200, "{routing}");
    assert!(routing["revision"].as_i64().unwrap() >= 2);
    assert_eq!(routing["proxies"].as_array().unwrap().len(), 2, "{routing}");
    let models = routing["models"].as_array().unwrap();
    let file = models.iter().find(|m| m["model_name"] == "file-model").unwrap();
    assert_eq!(file["deployments"][0]["source"], "file");
    assert_eq!(file["deployments"][0]["read_only"], true);
    let dynamic = &models.iter().find(|m| m["model_name"] == "dyn-model").unwrap()["deployments"][0];
    assert_eq!(dynamic["entry"]["litellm_params"]["api_key"], "credential/upstream-key");
    let live = dynamic["live"].as_array().unwrap();
    assert_eq!(live.len(), 2, "{dynamic}");
    assert!(live.iter().all(|l| l["state"] == "healthy" && l["requests"].as_u64().is_some()), "{dynamic}");
    assert!(live.iter().any(|l| l["latency_ms"].as_f64().is_some()), "{dynamic}");
    assert!(!routing.to_string().contains(PROVIDER_KEY));

    // A stream through a deployment that is removed while it runs finishes there.
    let (status, slow) = cluster
        .admin(
            post.clone(),
            "/api/routing/deployments",
            Some(json!({"model_name": "slow-model", "litellm_params": {"model": "mock/slow", "mock_response": "one two three four five six seven eight", "mock_chunks": 8, "mock_chunk_delay_ms": 250}})),
        )
        .await;
    assert_eq!(status, 201, "{slow}");
    converge(&cluster, &key, "slow-model", true, Duration::from_secs(3)).await;
    let mut stream = http_client()
        .post(format!("{}/v1/chat/completions", cluster.proxies[0].url("proxy")))
        .bearer_auth(&key)
        .json(&json!({"model": "slow-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let (status, _) = cluster
        .admin(delete.clone(), &format!("/api/routing/deployments/{}", slow["id"].as_str().unwrap()), None)
        .await;
    assert_eq!(status, 204);
    converge(&cluster, &key, "slow-model", false, Duration::from_secs(3)).await;
    while let Some(chunk) = stream.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(body.trim_end().ends_with("data: [DONE]"), "the stream completed: {body}");
    let text: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text.split_whitespace().count(), 8, "every chunk arrived: {text}");

    // Redis gone: the publication is lost, the revision check still converges within its
    // interval.
    gate.set_open(false);
    let (status, created) = cluster
        .admin(
            post.clone(),
            "/api/routing/deployments",
            Some(json!({"model_name": "offline-model", "litellm_params": {"model": "mock/off", "mock_response": "added while Redis was down"}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let took = converge(&cluster, &key, "offline-model", true, Duration::from_secs(5)).await;
    assert!(took < Duration::from_millis(REFRESH_MS * 2 + 1000), "converged without pub/sub in {took:?}");
    gate.set_open(true);

    // Replacing the credential's value reaches the deployment (the proxies reload).
    let (status, _) = cluster
        .admin(reqwest::Method::PUT, "/api/credentials/upstream-key", Some(json!({"value": "sk-rotated-provider-key"})))
        .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    loop {
        chat(&cluster.proxies[0], &key, "dyn-model").await;
        if seen.lock().unwrap().last().is_some_and(|a| a == "Bearer sk-rotated-provider-key") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(3), "the rotated key was not used");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, answer) = cluster.admin(delete.clone(), "/api/credentials/upstream-key", None).await;
    assert_eq!(status, 409, "in use by {dyn_id}: {answer}");

    // KEK rotation: a wrong KEK stops the start clearly; `credentials rewrap` re-wraps every
    // record; the new KEK opens them.
    let Cluster { env: base, api, proxies } = cluster;
    drop(proxies);
    drop(api);
    let wrong = with(&base, &[("FLOWGATE_KEK", NEW_KEK)]);
    for mode in ["api-server", "proxy"] {
        let output = tokio::time::timeout(Duration::from_secs(30), FlowgateProcess::command(&[mode], &wrong).output())
            .await
            .unwrap()
            .unwrap();
        assert!(!output.status.success(), "{mode} started with a wrong KEK");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(
            text.contains("FLOWGATE_KEK is not the key that sealed them") && text.contains(&old_kek_id),
            "{mode}: {text}"
        );
    }
    let rotate = with(&base, &[("FLOWGATE_KEK", NEW_KEK), ("FLOWGATE_KEK_PREVIOUS", OLD_KEK)]);
    let output = FlowgateProcess::command(&["credentials", "rewrap"], &rotate).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["rewrapped"], 1, "{report}");
    let again = FlowgateProcess::command(&["credentials", "rewrap"], &rotate).output().await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap()["rewrapped"], 0);
    for info in flowgate_db::credentials::list(&database).await.unwrap() {
        assert_ne!(info.kek_id, old_kek_id, "every record re-wrapped");
    }
    let cluster = start_cluster(wrong).await;
    converge(&cluster, &key, "dyn-model", true, Duration::from_secs(3)).await;
    assert_eq!(seen.lock().unwrap().last().map(String::as_str), Some("Bearer sk-rotated-provider-key"));
    drop(cluster);
    database.close().await;
    db.drop_db().await;
}

/// `all` mode without Redis: the change reaches the in-process proxy at once (in-process
/// pub/sub), the live view comes from the in-process shared state, and the API's answers (status
/// codes, fields named in errors) are the same as in split mode.
#[tokio::test]
async fn routing_in_all_mode_without_redis() {
    let config = format!(
        "credentials: {{kek: \"{OLD_KEK}\"}}\nmodel_list:\n  - {{model_name: file-model, litellm_params: {{model: mock/file, mock_response: from the file}}}}\n"
    );
    let app = flowgate_test_utils::TestApp::builder(config).spawn().await;
    let (_, key) = app.create_key(json!({"name": "all-mode"})).await;
    let post = reqwest::Method::POST;

    // Credentials: validation names the field; the value is never answered.
    for (body, status, needle) in [
        (json!({"name": "Bad Name", "value": "x"}), 400, "`name` must be kebab-case"),
        (json!({"name": "ok-name", "value": "  "}), 400, "`value` must not be empty"),
        (json!({"name": "ok-name"}), 400, "value"),
        (json!({"name": "ok-name", "value": "v", "colour": "red"}), 400, "colour"),
    ] {
        let (got, answer) = app.admin(post.clone(), "/api/credentials", Some(&body)).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap_or_default().contains(needle), "{body}: {answer}");
    }
    let (status, created) = app
        .admin(post.clone(), "/api/credentials", Some(&json!({"name": "mock-key", "value": "sk-all-mode-secret"})))
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, _) =
        app.admin(post.clone(), "/api/credentials", Some(&json!({"name": "mock-key", "value": "again"}))).await;
    assert_eq!(status, 409, "a duplicate name");
    let (status, _) = app.admin(reqwest::Method::GET, "/api/credentials/nope", None).await;
    assert_eq!(status, 404);

    // A deployment added through the API serves at once; its live state is reported.
    let entry = json!({"model_name": "api-model", "params": {"model": "mock/api", "mock_response": "from the api", "api_key": "credential/mock-key", "temperature": 0.1}, "model_info": {"id": "api-dep"}});
    let (status, created) = app.admin(post.clone(), "/api/routing/deployments", Some(&entry)).await;
    assert_eq!(status, 201, "{created}");
    let (status, answer) = app.admin(post.clone(), "/api/routing/deployments", Some(&entry)).await;
    assert_eq!(status, 409, "a duplicate id: {answer}");
    let started = Instant::now();
    loop {
        let response = app.chat(&key, "api-model", "hi").await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["choices"][0]["message"]["content"], "from the api");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "not served within a second");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let routing = loop {
        let (status, routing) = app.admin(reqwest::Method::GET, "/api/routing", None).await;
        assert_eq!(status, 200);
        let models = routing["models"].as_array().unwrap();
        let dep = models.iter().find(|m| m["model_name"] == "api-model").map(|m| m["deployments"][0].clone());
        if dep.as_ref().is_some_and(|d| d["live"][0]["requests"].as_u64() >= Some(1)) {
            break routing;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no live view: {routing}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(routing["proxies"].as_array().unwrap().len(), 1, "{routing}");
    assert!(!routing.to_string().contains("sk-all-mode-secret"));

    // Replace (PUT) and the id rules; delete by model.
    let (status, answer) = app
        .admin(reqwest::Method::PUT, "/api/routing/deployments/api-dep", Some(&json!({"model_name": "api-model", "litellm_params": {"model": "mock/api", "mock_response": "replaced"}, "model_info": {"id": "other"}})))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("`model_info.id` must be `api-dep`"));
    let (status, answer) = app
        .admin(reqwest::Method::PUT, "/api/routing/deployments/api-dep", Some(&json!({"model_name": "api-model", "litellm_params": {"model": "mock/api", "mock_response": "replaced"}})))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["revision"].as_i64().unwrap() > created["revision"].as_i64().unwrap());
    let started = Instant::now();
    loop {
        let body: Value = app.chat(&key, "api-model", "hi").await.json().await.unwrap();
        if body["choices"][0]["message"]["content"] == "replaced" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "the replacement was not applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = app
        .admin(
            reqwest::Method::PUT,
            "/api/routing/deployments/missing",
            Some(&json!({"model_name": "m", "litellm_params": {"model": "mock/x"}})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.admin(reqwest::Method::DELETE, "/api/routing/models/api-model", None).await;
    assert_eq!(status, 204);
    let (status, _) = app.admin(reqwest::Method::DELETE, "/api/routing/models/api-model", None).await;
    assert_eq!(status, 404);
    let started = Instant::now();
    while app.chat(&key, "api-model", "hi").await.status() != 404 {
        assert!(started.elapsed() < Duration::from_secs(1), "the model was not removed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.chat(&key, "file-model", "hi").await.status(), 200, "the file's deployment stays");
    assert!(!app.log_text().contains("sk-all-mode-secret"), "never logged");
}

/// Without a key-encryption key, credentials cannot be written (503, saying what to set), and
/// deployments with `os.environ/` references still can.
#[tokio::test]
async fn credentials_need_a_key_encryption_key() {
    let app = flowgate_test_utils::TestApp::builder("model_list: []\n").spawn().await;
    let (status, answer) =
        app.admin(reqwest::Method::POST, "/api/credentials", Some(&json!({"name": "k", "value": "v"}))).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "kek_not_configured");
    assert!(answer["error"]["message"].as_str().unwrap().contains("FLOWGATE_KEK"));
    let (status, answer) = app
        .admin(reqwest::Method::POST, "/api/routing/deployments", Some(&json!({"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1", "api_key": "os.environ/SOME_KEY"}})))
        .await;
    assert_eq!(status, 201, "{answer}");
}
