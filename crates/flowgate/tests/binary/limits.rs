//! Rate limits and budgets as users meet them: 429s with the right headers, a concurrent burst
//! against a small budget, limits shared by two gateways through Redis, revocation reaching
//! both within a second, and traffic surviving a Redis outage.

use std::time::{Duration, Instant};

use flowgate_test_utils::{TestApp, ThrowawayDb, http_client, require_redis, spawn_app};
use serde_json::{Value, json};

/// Minute windows are aligned to the clock: start a minute-window test early in a minute so the
/// window cannot roll over half way.
async fn early_in_a_minute() {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() % 60.0;
    if secs > 45.0 {
        tokio::time::sleep(Duration::from_secs_f64(60.5 - secs)).await;
    }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "count my tokens"}]})
}

#[tokio::test]
async fn requests_per_minute_limit_answers_429_with_headers() {
    let gateway = spawn_app("model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n").await;
    let (_, key) = gateway.create_key(json!({"rpm": 3})).await;
    early_in_a_minute().await;
    for n in 0..3 {
        let response = gateway.post("/v1/chat/completions", &key, &chat("m")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(response.headers()["x-ratelimit-remaining-requests"], (2 - n).to_string().as_str());
    }
    let response = gateway.post("/v1/chat/completions", &key, &chat("m")).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(response.headers().contains_key("x-ratelimit-reset-requests"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let anthropic = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let response = gateway.post("/anthropic/v1/messages", &key, &anthropic).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn tokens_per_minute_limit_counts_usage_and_answers_429_with_token_headers() {
    let gateway = spawn_app("model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n").await;
    let (_, key) = gateway.create_key(json!({"tpm": 40, "rpm": 1000})).await;
    early_in_a_minute().await;
    let mut admitted = 0;
    let rejected = loop {
        let response = gateway.post("/v1/chat/completions", &key, &chat("m")).await;
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit-tokens"], "40");
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "1000");
        admitted += 1;
        assert!(admitted < 40, "every answer uses tokens, so the token limit must be reached");
    };
    assert!(admitted >= 1, "the first request fits");
    assert_eq!(rejected.headers()["x-ratelimit-limit-tokens"], "40");
    assert_eq!(rejected.headers()["x-ratelimit-remaining-tokens"], "0");
    assert!(rejected.headers().contains_key("retry-after"));
    let body: Value = rejected.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("tokens per minute"), "{body}");
}

#[tokio::test]
async fn requests_per_hour_default_comes_from_the_environment() {
    let gateway = TestApp::builder("model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n")
        .env("RATE_LIMIT_REQUESTS_PER_HOUR", "2")
        .spawn()
        .await;
    let (_, key) = gateway.create_key(json!({})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("m")).await.status(), 200);
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("m")).await.status(), 200);
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("m")).await.status(), 429);
    let (_, own) = gateway.create_key(json!({"requests_per_hour": 5})).await;
    for _ in 0..5 {
        assert_eq!(
            gateway.post("/v1/chat/completions", &own, &chat("m")).await.status(),
            200,
            "a key's own limit wins"
        );
    }
}

#[tokio::test]
async fn parallel_request_limit_rejects_the_extra_request() {
    let config = "model_list:\n  - {model_name: slow, litellm_params: {model: mock/slow, mock_latency_ms: 600}}\n";
    let gateway = spawn_app(config).await;
    let (_, key) = gateway.create_key(json!({"max_parallel_requests": 2})).await;
    let request = chat("slow");
    let statuses =
        futures_util::future::join_all((0..3).map(|_| gateway.post("/v1/chat/completions", &key, &request))).await;
    let mut codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    codes.sort_unstable();
    assert_eq!(codes, vec![200, 200, 429]);
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("slow")).await.status(), 200, "slots are released");
}

/// Cost of a response at 1e-6 USD per token, in USD.
fn cost(body: &Value) -> f64 {
    let usage = &body["usage"];
    (usage["prompt_tokens"].as_f64().unwrap() + usage["completion_tokens"].as_f64().unwrap()) * 1e-6
}

async fn budget(gateway: &TestApp, id: &str) -> Value {
    gateway.admin(reqwest::Method::GET, &format!("/api/enterprise/vkeys/{id}/budget"), None).await.1
}

async fn burst_against_a_small_budget(gateway: &TestApp) {
    let budget_usd = 0.0005;
    let (id, key) = gateway.create_key(json!({"budget_usd": budget_usd, "budget_period": "daily"})).await;
    let request = chat("priced");
    let responses =
        futures_util::future::join_all((0..64).map(|_| gateway.post("/v1/chat/completions", &key, &request))).await;
    let mut spent_by_responses = 0.0;
    let mut admitted = 0;
    let mut rejected = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => {
                admitted += 1;
                spent_by_responses += cost(&response.json::<Value>().await.unwrap());
            }
            429 => {
                rejected += 1;
                assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "budget_exceeded");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(admitted > 0 && rejected > 0, "the budget admitted {admitted} and rejected {rejected}");
    // Each request is estimated at ~11 prompt tokens + 10 output tokens = 21e-6 USD.
    let admitted_estimates = f64::from(admitted) * 25e-6;
    assert!(spent_by_responses <= budget_usd + admitted_estimates, "spent {spent_by_responses}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let report = budget(gateway, &id).await;
        let recorded = report["spent_usd"].as_f64().unwrap();
        if (recorded - spent_by_responses).abs() < 1e-9 {
            // Spend may pass the budget by what the last admitted requests cost beyond what was
            // left; the remaining budget is then 0, never negative.
            let remaining = (budget_usd - recorded).max(0.0);
            assert!((report["remaining_usd"].as_f64().unwrap() - remaining).abs() < 1e-9);
            break;
        }
        assert!(Instant::now() < deadline, "recorded spend {recorded} never matched {spent_by_responses}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Estimates were above actual costs, so a little room may be left: use it up one by one. A
    // sequential request is admitted while anything is left, so spend passes the budget by at
    // most the last request's cost.
    let mut total = spent_by_responses;
    for _ in 0..64 {
        let response = gateway.post("/v1/chat/completions", &key, &chat("priced")).await;
        if response.status() == 429 {
            assert!(total <= budget_usd + 25e-6, "sequential spend {total} passed the budget {budget_usd}");
            return;
        }
        total += cost(&response.json::<Value>().await.unwrap());
    }
    panic!("the budget never ran out");
}

const PRICED: &str = "model_list:
  - {model_name: priced, litellm_params: {model: mock/priced, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}
";

#[tokio::test]
async fn a_concurrent_burst_cannot_overspend_the_budget_in_process() {
    let gateway = spawn_app(PRICED).await;
    burst_against_a_small_budget(&gateway).await;
}

#[tokio::test]
async fn a_concurrent_burst_cannot_overspend_the_budget_with_redis() {
    if !require_redis().await {
        return;
    }
    let prefix = format!("test-{}:", uuid_like());
    let gateway = TestApp::builder(PRICED).redis(&prefix).spawn().await;
    burst_against_a_small_budget(&gateway).await;
}

#[tokio::test]
async fn spend_survives_a_restart_and_still_counts_against_the_budget() {
    let gateway = spawn_app(PRICED).await;
    // Room for a few requests only.
    let (id, key) = gateway.create_key(json!({"budget_usd": 0.0001})).await;
    let mut spent = 0.0;
    loop {
        let response = gateway.post("/v1/chat/completions", &key, &chat("priced")).await;
        if response.status() == 429 {
            break;
        }
        spent += cost(&response.json::<Value>().await.unwrap());
    }
    assert!(spent > 0.0);
    let gateway = gateway.restart().await;
    assert!(gateway.data_dir().join("flowgate.db").exists());
    let recorded = budget(&gateway, &id).await["spent_usd"].as_f64().unwrap();
    assert!((recorded - spent).abs() < 1e-9, "recorded {recorded}, spent {spent}");
    let response = gateway.post("/v1/chat/completions", &key, &chat("priced")).await;
    assert_eq!(response.status(), 429, "spend from before the restart still counts");
}

/// `n` multiplies what a request may cost: each answer is reserved against the budget, and more
/// answers than `limits.max_n` is refused before anything is reserved.
#[tokio::test]
async fn n_is_capped_and_each_answer_counts_against_the_budget() {
    let gateway = TestApp::builder(PRICED).env("FLOWGATE__LIMITS__MAX_N", "8").spawn().await;
    let (_, key) = gateway.create_key(json!({"budget_usd": 0.0001})).await;
    let mut request = chat("priced");
    request["n"] = json!(9);
    let response = gateway.post("/v1/chat/completions", &key, &request).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "n", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 8"), "{body}");
    request["n"] = json!(8);
    assert_eq!(gateway.post("/v1/chat/completions", &key, &request).await.status(), 200);
}

/// The case: a budget smaller than one request's worst-case estimate still serves requests
/// while anything is left, and the 429 then says the budget, the spend and the period end.
#[tokio::test]
async fn a_budget_below_the_worst_case_estimate_is_spent_then_says_why_it_stopped() {
    let gateway = spawn_app(PRICED).await;
    // One request: ~12 prompt tokens and 1,000 output tokens estimated (2.0e-5 + 1.0e-3 USD); it
    // actually costs ~2e-5 USD.
    let (_, key) = gateway.create_key(json!({"budget_usd": 0.0001, "budget_period": "monthly"})).await;
    let mut request = chat("priced");
    request["max_tokens"] = json!(1000);
    let mut served = 0;
    let rejected = loop {
        let response = gateway.post("/v1/chat/completions", &key, &request).await;
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 200);
        served += 1;
        assert!(served < 100, "the budget must stop the key");
    };
    assert!(served >= 1, "the first request is served although its estimate exceeds the budget");
    let retry_after: u64 = rejected.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=31 * 86_400).contains(&retry_after));
    let body: Value = rejected.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert!(message.starts_with("key budget of $0.0001 per monthly period exhausted: spent $0.0001"), "{message}");
    assert!(message.contains("the period ends at 20"), "{message}");
}

/// A model with no price costs $0: the proxy says so at start and in `/health`, and refuses it to
/// keys under a budget (their own or their tenant's) unless `budgets.unpriced: allow`.
#[tokio::test]
async fn unpriced_models_are_reported_and_refused_to_keys_under_a_budget() {
    // Nothing listens on port 9: a request that gets past admission fails upstream (502/503/504).
    let config = "model_list:
  - {model_name: own-model, litellm_params: {model: openai/our-finetune, api_base: 'http://127.0.0.1:9'}}
  - {model_name: priced, litellm_params: {model: mock/priced, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}
";
    let gateway = spawn_app(config).await;
    assert!(gateway.log_text().contains("no price for this deployment"), "a warning at start");
    let health: Value =
        http_client().get(format!("{}/health", gateway.proxy())).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["unpriced_models"], json!(["own-model"]), "{health}");

    let (_, budgeted) = gateway.create_key(json!({"budget_usd": 5.0})).await;
    let response = gateway.post("/v1/chat/completions", &budgeted, &chat("own-model")).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_unpriced", "{body}");
    assert_eq!(body["error"]["param"], "model");
    assert!(body["error"]["message"].as_str().unwrap().contains("own-model"), "{body}");
    let anthropic = json!({"model": "own-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let response = gateway.post("/anthropic/v1/messages", &budgeted, &anthropic).await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["type"], "permission_error");
    assert_eq!(gateway.post("/v1/chat/completions", &budgeted, &chat("priced")).await.status(), 200);

    // A tenant's budget applies to its keys too.
    let (status, tenant) = gateway
        .admin(reqwest::Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "t", "budget_usd": 10})))
        .await;
    assert_eq!(status, 201, "{tenant}");
    let (_, tenant_key) = gateway.create_key(json!({"tenant_id": tenant["id"]})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &tenant_key, &chat("own-model")).await.status(), 403);

    // Without a budget, nothing is refused for want of a price.
    let (_, free) = gateway.create_key(json!({})).await;
    let status = gateway.post("/v1/chat/completions", &free, &chat("own-model")).await.status().as_u16();
    assert!((502..=504).contains(&status), "past admission, then the unreachable upstream: {status}");

    let allowing = TestApp::builder(config).env("FLOWGATE__BUDGETS__UNPRICED", "allow").spawn().await;
    let (_, budgeted) = allowing.create_key(json!({"budget_usd": 5.0})).await;
    let status = allowing.post("/v1/chat/completions", &budgeted, &chat("own-model")).await.status().as_u16();
    assert!((502..=504).contains(&status), "budgets.unpriced: allow lets it through: {status}");
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

/// Two gateways sharing PostgreSQL and Redis, as in a scaled-out deployment: what one api-server
/// writes (keys, revocations) every proxy sees, and the proxies count limits together.
struct Cluster {
    gateways: Vec<TestApp>,
    db: ThrowawayDb,
}

async fn cluster(prefix: &str) -> Option<Cluster> {
    let db = ThrowawayDb::create().await?;
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let config = "model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n";
        gateways.push(TestApp::builder(config).postgres(&db).redis(prefix).spawn().await);
    }
    Some(Cluster { gateways, db })
}

impl Cluster {
    async fn create_key(&self, fields: Value) -> (String, String) {
        self.gateways[0].create_key(fields).await
    }

    async fn call(&self, proxy: usize, key: &str) -> u16 {
        self.gateways[proxy].post("/v1/chat/completions", key, &chat("m")).await.status().as_u16()
    }
}

#[tokio::test]
async fn two_proxies_share_rate_limits_and_see_revocations_within_a_second() {
    if !require_redis().await {
        return;
    }
    let prefix = format!("test-{}:", uuid_like());
    let Some(cluster) = cluster(&prefix).await else { return };
    let (_, limited) = cluster.create_key(json!({"rpm": 4})).await;
    early_in_a_minute().await;
    let statuses = [
        cluster.call(0, &limited).await,
        cluster.call(1, &limited).await,
        cluster.call(0, &limited).await,
        cluster.call(1, &limited).await,
    ];
    assert_eq!(statuses, [200; 4]);
    assert_eq!(cluster.call(0, &limited).await, 429, "the fifth request is over the shared limit");
    assert_eq!(cluster.call(1, &limited).await, 429);

    let (id, key) = cluster.create_key(json!({})).await;
    assert_eq!(cluster.call(0, &key).await, 200);
    assert_eq!(cluster.call(1, &key).await, 200, "both proxies have the key cached");
    let (status, _) =
        cluster.gateways[0].admin(reqwest::Method::POST, &format!("/api/enterprise/vkeys/{id}/revoke"), None).await;
    assert!((200..300).contains(&status));
    let started = Instant::now();
    loop {
        let (a, b) = (cluster.call(0, &key).await, cluster.call(1, &key).await);
        if a == 401 && b == 401 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "revocation not seen within a second ({a}, {b})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Cluster { gateways, db } = cluster;
    drop(gateways);
    db.drop_db().await;
}

/// A private Redis on a free port, so this test can stop and restart it.
struct PrivateRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    async fn start(port: u16) -> Self {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { port, child: Some(child) }
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
            let _ = child.wait().await;
        }
    }

    fn keys(&self, pattern: &str) -> Vec<String> {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--scan", "--pattern", pattern])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
    }
}

#[tokio::test]
async fn traffic_keeps_flowing_while_redis_is_down_and_sharing_resumes() {
    if !require_redis().await {
        return;
    }
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut redis = PrivateRedis::start(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let gateway = TestApp::builder(PRICED).env("REDIS_URL", &url).spawn().await;
    let (id, key) = gateway.create_key(json!({"rpm": 1000, "budget_usd": 10.0})).await;
    assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("priced")).await.status(), 200);
    assert!(!redis.keys(&format!("flowgate:rl:{id}:*")).is_empty(), "limits are counted in Redis");

    redis.stop().await;
    for _ in 0..5 {
        let response = gateway.post("/v1/chat/completions", &key, &chat("priced")).await;
        assert_eq!(response.status(), 200, "requests keep flowing with Redis down");
    }
    let metrics = http_client().get(format!("{}/metrics", gateway.proxy())).send().await.unwrap().text().await.unwrap();
    let fallbacks = metrics.lines().find(|l| l.starts_with("flowgate_shared_state_fallbacks_total")).unwrap();
    assert!(!fallbacks.ends_with(" 0"), "{fallbacks}");
    assert!(gateway.log_text().contains("Redis unreachable"));
    let ready = http_client().get(format!("{}/readyz", gateway.proxy())).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the proxy stays ready (and in the load balancer) without Redis");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["redis"]["status"], "degraded");

    let redis = PrivateRedis::start(port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(gateway.post("/v1/chat/completions", &key, &chat("priced")).await.status(), 200);
        if !redis.keys(&format!("flowgate:rl:{id}:*")).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "shared counting did not resume after Redis returned");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
