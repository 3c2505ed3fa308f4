//! Services and secrets between the services, against the real binary: the internal token on every
//! internal gRPC call (split modes, and `all` with a token of its own), the loopback default bind,
//! gRPC health that follows `/readyz`, and key revocation that reaches a split proxy without Redis.

use std::time::{Duration, Instant};

use flowgate_proto::compliance::ScanRequest;
use flowgate_proto::compliance::compliance_service_client::ComplianceServiceClient;
use flowgate_proto::keys::ResolveKeyRequest;
use flowgate_proto::keys::key_service_client::KeyServiceClient;
use flowgate_proto::policy::EvaluateRequest;
use flowgate_proto::policy::policy_service_client::PolicyServiceClient;
use flowgate_test_utils::{
    FlowgateProcess, TEST_INTERNAL_TOKEN, TcpGate, TempDir, ThrowawayDb, base_env, http_client, request_with_token,
};
use serde_json::{Value, json};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const ADMIN: &str = "internal-test-admin";
const HASH_SECRET: &str = "internal-test-key-hash-secret";
const TOKEN_ENV: &str = "FLOWGATE__SECURITY__INTERNAL_TOKEN";
const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

/// The environment of a split deployment on SQLite in `dir` (with the test internal token unless
/// `extra` overrides it), its config naming one mock model.
fn split_env(dir: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let config = dir.path().join("flowgate.yaml");
    std::fs::write(&config, "model_list:\n  - {model_name: local, litellm_params: {model: mock/local}}\n").unwrap();
    let mut env = base_env(dir.path());
    for (k, v) in [
        ("ADMIN_API_KEY", ADMIN),
        ("FLOWGATE__SECURITY__KEY_HASH_SECRET", HASH_SECRET),
        ("FLOWGATE_CONFIG", config.to_str().unwrap()),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v.to_owned()));
    }
    env
}

fn without(env: &[(String, String)], names: &[&str]) -> Vec<(String, String)> {
    env.iter().filter(|(name, _)| !names.contains(&name.as_str())).cloned().collect()
}

async fn migrate(env: &[(String, String)]) {
    let output = FlowgateProcess::command(&["migrate"], env).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The proxy of a split deployment, calling `api`, `compliance` and `policy` (when given).
async fn split_proxy(
    env: &[(String, String)],
    api: &FlowgateProcess,
    others: Option<&[&FlowgateProcess; 2]>,
) -> FlowgateProcess {
    let mut env = env.to_vec();
    env.push(("FLOWGATE__PROXY__API_SERVER_URL".into(), api.url("api-server")));
    if let Some([compliance, policy]) = others {
        env.push(("FLOWGATE__PROXY__COMPLIANCE_URL".into(), compliance.url("compliance")));
        env.push(("FLOWGATE__PROXY__POLICY_URL".into(), policy.url("policy")));
    }
    FlowgateProcess::spawn(&["proxy"], &env, &["proxy"]).await
}

async fn chat(proxy: &FlowgateProcess, key: &str, text: &str) -> (u16, Value) {
    let response = http_client()
        .post(format!("{}/v1/chat/completions", proxy.url("proxy")))
        .bearer_auth(key)
        .json(&json!({"model": "local", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `message` with `authorization: Bearer {token}`, or with no such metadata.
fn request_with<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    match token {
        Some(token) => request_with_token(message, token),
        None => tonic::Request::new(message),
    }
}

/// Calls ResolveKey, Scan and Evaluate with `token`; returns each call's code.
async fn call_each(api: &str, compliance: &str, policy: &str, token: Option<&str>) -> [Code; 3] {
    let code = |result: Result<(), tonic::Status>| result.err().map_or(Code::Ok, |status| status.code());
    let mut keys = KeyServiceClient::connect(api.to_owned()).await.unwrap();
    let resolved = keys.resolve_key(request_with(token, ResolveKeyRequest { key_hash: vec![7; 32] })).await;
    let mut scanner = ComplianceServiceClient::connect(compliance.to_owned()).await.unwrap();
    let scan =
        ScanRequest { text: "mail jane@example.com".into(), detectors: vec![], tenant_id: String::new(), redact: true };
    let scanned = scanner.scan(request_with(token, scan)).await;
    let mut evaluator = PolicyServiceClient::connect(policy.to_owned()).await.unwrap();
    let evaluated = evaluator.evaluate(request_with(token, EvaluateRequest::default())).await;
    [code(resolved.map(drop)), code(scanned.map(drop)), code(evaluated.map(drop))]
}

async fn grpc_health(url: &str) -> i32 {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned()).unwrap().connect().await.unwrap();
    let request = HealthCheckRequest { service: String::new() };
    HealthClient::new(channel).check(request).await.unwrap().into_inner().status
}

#[tokio::test]
async fn split_services_answer_internal_grpc_only_with_the_shared_token() {
    let dir = TempDir::new();
    let env = split_env(&dir, &[]);
    migrate(&env).await;
    let api = FlowgateProcess::spawn(&["api-server"], &env, &["api-server"]).await;
    let compliance = FlowgateProcess::spawn(&["compliance"], &env, &["compliance"]).await;
    let policy = FlowgateProcess::spawn(&["policy"], &env, &["policy"]).await;
    let urls = [api.url("api-server"), compliance.url("compliance"), policy.url("policy")];
    let [a, c, p] = [&urls[0], &urls[1], &urls[2]].map(String::as_str);

    let refused = [Code::Unauthenticated; 3];
    assert_eq!(call_each(a, c, p, None).await, refused, "no token");
    assert_eq!(call_each(a, c, p, Some("a-wrong-internal-token-0123456789")).await, refused, "wrong");
    // A prefix of the right token, and the right one with a character changed, are wrong too.
    assert_eq!(call_each(a, c, p, Some(&TEST_INTERNAL_TOKEN[..20])).await, refused, "prefix");
    let changed = TEST_INTERNAL_TOKEN.replace('0', "1");
    assert_eq!(call_each(a, c, p, Some(&changed)).await, refused, "changed");
    assert_eq!(call_each(a, c, p, Some(TEST_INTERNAL_TOKEN)).await, [Code::Ok; 3], "the right token");

    // The standard health service needs no token (probes cannot send one).
    for url in &urls {
        assert_eq!(grpc_health(url).await, SERVING, "{url}");
    }
    for process in [&api, &compliance, &policy] {
        let logs = process.log_text();
        assert!(logs.contains("internal gRPC call refused"), "refusals are logged");
        assert!(!logs.contains(TEST_INTERNAL_TOKEN) && !logs.contains("a-wrong-internal-token"), "tokens are not");
    }
}

#[tokio::test]
async fn split_modes_refuse_to_start_without_the_internal_token() {
    let dir = TempDir::new();
    let env = split_env(&dir, &[]);
    migrate(&env).await;
    let env = without(&env, &[TOKEN_ENV]);
    for mode in ["proxy", "api-server", "compliance", "policy"] {
        let output = FlowgateProcess::command(&[mode], &env).output().await.unwrap();
        assert!(!output.status.success(), "{mode} started without the token");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(TOKEN_ENV), "{mode}: {stderr}");
    }
    // A token too weak to be a secret stops every mode, `all` included, naming the setting.
    let weak = split_env(&dir, &[(TOKEN_ENV, "short")]);
    for mode in ["proxy", "all"] {
        let output = FlowgateProcess::command(&[mode], &weak).output().await.unwrap();
        assert_eq!(output.status.code(), Some(78), "{mode}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("security.internal_token"));
    }
}

#[tokio::test]
async fn a_split_deployment_with_the_token_works_end_to_end_and_a_wrong_token_fails_closed() {
    let dir = TempDir::new();
    let env = split_env(&dir, &[]);
    migrate(&env).await;
    let api = FlowgateProcess::spawn(&["api-server"], &env, &["api-server"]).await;
    let compliance = FlowgateProcess::spawn(&["compliance"], &env, &["compliance"]).await;
    let policy = FlowgateProcess::spawn(&["policy"], &env, &["policy"]).await;
    let proxy = split_proxy(&env, &api, Some(&[&compliance, &policy])).await;
    let (_, key) = flowgate_test_utils::create_key(
        &api.url("api-server"),
        ADMIN,
        &json!({"name": "guarded", "guardrail_policy": {"mandatory_guardrails": ["pii-redact"]}}),
    )
    .await;
    // Key resolution (api-server) and the pre-call scan (compliance) cross the network with the
    // token: a guarded key fails closed when its scan cannot run, so a 200 means it ran (the
    // answer has the address back: the mock echoes the redacted prompt and the guardrail restores
    // it). The proxy loads the guardrail catalog the api-server seeded at start, so the first
    // answers may come before it.
    let mut last = (0, Value::Null);
    for _ in 0..50 {
        last = chat(&proxy, &key, "mail jane@example.com").await;
        if last.0 == 200 && last.1.to_string().contains("jane@example.com") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, 200, "{}", last.1);
    let metrics = http_client().get(format!("{}/metrics", compliance.url("compliance"))).send().await.unwrap();
    assert!(metrics.text().await.unwrap().contains("ComplianceService"), "the scan went over gRPC");
    let ready = http_client().get(format!("{}/readyz", proxy.url("proxy"))).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

    // A proxy given another token is refused by the api-server: its requests fail closed.
    let wrong = split_env(&dir, &[(TOKEN_ENV, "another-internal-token-0123456789")]);
    let stranger = split_proxy(&wrong, &api, None).await;
    let (status, body) = chat(&stranger, &key, "hello").await;
    assert_eq!(status, 503, "{body}");
    assert!(stranger.log_text().contains("Unauthenticated"), "the refusal is logged by code");
    for process in [&api, &compliance, &policy, &proxy, &stranger] {
        assert!(!process.log_text().contains(TEST_INTERNAL_TOKEN));
        assert!(!process.log_text().contains("another-internal-token"));
    }
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_a_second_in_a_split_deployment_without_redis() {
    let dir = TempDir::new();
    let env = split_env(&dir, &[]);
    migrate(&env).await;
    let api = FlowgateProcess::spawn(&["api-server"], &env, &["api-server"]).await;
    let proxy = split_proxy(&env, &api, None).await;
    let (id, key) = flowgate_test_utils::create_key(&api.url("api-server"), ADMIN, &json!({"name": "doomed"})).await;
    // Resolved and cached by the proxy.
    for _ in 0..3 {
        let (status, body) = chat(&proxy, &key, "hello").await;
        assert_eq!(status, 200, "{body}");
    }
    let revoked = http_client()
        .post(format!("{}/api/enterprise/vkeys/{id}/revoke", api.url("api-server")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, body) = chat(&proxy, &key, "hello").await;
    assert_eq!(status, 401, "the key still worked {:?} after it was revoked: {body}", at.elapsed());
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("revoked"), "{body}");
}

#[tokio::test]
async fn all_binds_loopback_and_guards_its_grpc_with_a_token_of_its_own() {
    let dir = TempDir::new();
    let env = without(&base_env(dir.path()), &[TOKEN_ENV, "FLOWGATE__SERVER__HOST"]);
    let process = FlowgateProcess::spawn(&["all"], &env, &["proxy", "api-server", "compliance", "policy"]).await;
    for (service, addr) in &process.addrs {
        assert!(addr.starts_with("127.0.0.1:"), "{service} listens on {addr}");
    }
    let [a, c, p] = ["api-server", "compliance", "policy"].map(|s| process.url(s));
    // No token, and not the one tests use elsewhere: `all` made its own, for this process alone.
    for token in [None, Some(TEST_INTERNAL_TOKEN)] {
        assert_eq!(call_each(&a, &c, &p, token).await, [Code::Unauthenticated; 3], "{token:?}");
    }
    assert_eq!(grpc_health(&a).await, SERVING);
    // Kept in memory only: nothing new in the data directory but the admin key, the hash secret
    // and the database.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains("internal"), "{name}");
    }
}

#[tokio::test]
async fn grpc_health_is_not_serving_while_readyz_is_not_ready() {
    let Some(db) = ThrowawayDb::create().await else { return };
    let admin_url = flowgate_test_utils::postgres_admin_url();
    let target =
        admin_url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap_or("127.0.0.1:5432").to_owned();
    let gate = TcpGate::start(&target).await;
    let gated_url = db.url.replace(&target, &format!("127.0.0.1:{}", gate.port));
    let dir = TempDir::new();
    let env = split_env(&dir, &[("DATABASE_URL", &gated_url), ("FLOWGATE__DATABASE__CONNECT_TIMEOUT_SECS", "1")]);
    migrate(&env).await;
    let api = FlowgateProcess::spawn(&["api-server"], &env, &["api-server"]).await;
    let url = api.url("api-server");
    let url = url.as_str();
    let readyz = || async move { http_client().get(format!("{url}/readyz")).send().await.unwrap().status().as_u16() };
    let await_health = |expected: i32| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = grpc_health(url).await;
            if status == expected {
                return;
            }
            assert!(Instant::now() < deadline, "gRPC health is {status}, not {expected}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(readyz().await, 200);
    await_health(SERVING).await;
    gate.set_open(false);
    assert_eq!(readyz().await, 503);
    await_health(NOT_SERVING).await;
    gate.set_open(true);
    await_health(SERVING).await;
    assert_eq!(readyz().await, 200);
    drop(api);
    db.drop_db().await;
}
