//! The policy service in `all` mode (in process, `spawn_app`): rule sets loaded by name from the
//! `policies` table, changes picked up through `policies:changed` within a second, and deny /
//! reroute / flag decisions over gRPC, explained by the matched rule.

use std::time::{Duration, Instant};

use flowgate_db::Database;
use flowgate_db::sqlx;
use flowgate_proto::policy::policy_service_client::PolicyServiceClient;
use flowgate_proto::policy::{Decision, EvaluateRequest, EvaluateResponse, FindingSummary};
use flowgate_test_utils::{TestApp, http_client, internal_request};
use serde_json::{Value, json};

const ADMIN: &str = "policy-test-admin";

struct Target {
    app: TestApp,
    /// Whether the api-server's `/api/policies` took the policy (else it was inserted directly).
    through_api: bool,
}

fn strict() -> Value {
    json!({
        "default": "allow",
        "rules": [
            {"name": "no-secrets", "when": {"finding": "secret"}, "action": "deny", "reason": "secrets may not leave"},
            {"name": "pii-to-local", "when": {"finding": "email", "model": "gpt-4*"}, "action": "reroute",
             "reroute_model": "local-llm"},
            {"name": "flag-findings", "when": {"finding": "*"}, "action": "flag", "reason": "sensitive content"}
        ]
    })
}

impl Target {
    async fn start() -> Self {
        let app = TestApp::builder("").env("ADMIN_API_KEY", ADMIN).spawn().await;
        let mut target = Self { app, through_api: false };
        target.through_api = target.create("strict", strict()).await;
        target
    }

    /// Creates policy `name` through `POST /api/policies`; when that route is not there (201 not
    /// answered), inserts the row into the SQLite file directly. Returns whether the API took it.
    async fn create(&self, name: &str, document: Value) -> bool {
        let response = http_client()
            .post(format!("{}/api/policies", self.app.api()))
            .bearer_auth(ADMIN)
            .json(&json!({"name": name, "document": document}))
            .send()
            .await
            .unwrap();
        if response.status() == 201 {
            return true;
        }
        let mut document = document;
        document["name"] = json!(name);
        let db = Database::connect(None, self.app.data_dir(), 1, Duration::from_secs(5)).await.unwrap();
        sqlx::query(
            "INSERT INTO policies (id, name, version, document, created_at, updated_at) VALUES ($1, $2, 1, $3, 0, 0)",
        )
        .bind(format!("test-{name}"))
        .bind(name)
        .bind(document.to_string())
        .execute(db.pool())
        .await
        .unwrap();
        db.close().await;
        false
    }

    async fn evaluate(
        &self,
        policy: &str,
        model: &str,
        kind: &str,
        score: f32,
    ) -> Result<EvaluateResponse, tonic::Status> {
        let mut client = PolicyServiceClient::connect(self.app.policy_url.clone()).await.unwrap();
        client
            .evaluate(internal_request(EvaluateRequest {
                key_id: "key-1".into(),
                tenant_id: "acme".into(),
                model: model.into(),
                route: "/v1/chat/completions".into(),
                stage: "pre_call".into(),
                findings: vec![FindingSummary { kind: kind.into(), count: 1, max_score: score }],
                policy_id: policy.into(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Waits (up to `limit`) until policy `name` is loaded.
    async fn await_loaded(&self, name: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            match self.evaluate(name, "m", "none", 0.0).await {
                Ok(_) => return started.elapsed(),
                Err(status) if status.code() == tonic::Code::NotFound && started.elapsed() < limit => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(status) => panic!("policy `{name}` not loaded after {:?}: {status}", started.elapsed()),
            }
        }
    }

    async fn http_evaluate(&self, body: &Value) -> (u16, Value) {
        let response = http_client()
            .post(format!("{}/api/policy/evaluate", self.app.policy_url))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

#[tokio::test]
async fn stored_policies_deny_reroute_and_flag_over_grpc() {
    let target = Target::start().await;
    // Through the API the change is announced on `policies:changed`; inserted directly, the 30 s
    // refresh picks it up.
    let limit = if target.through_api { Duration::from_secs(1) } else { Duration::from_secs(35) };
    target.await_loaded("strict", limit).await;

    let denied = target.evaluate("strict", "gpt-4o", "secret", 0.95).await.unwrap();
    assert_eq!(denied.decision(), Decision::Deny);
    assert_eq!((denied.matched_rule.as_str(), denied.reason.as_str()), ("no-secrets", "secrets may not leave"));
    let rerouted = target.evaluate("strict", "gpt-4o-mini", "email", 0.99).await.unwrap();
    assert_eq!(rerouted.decision(), Decision::Reroute);
    assert_eq!((rerouted.matched_rule.as_str(), rerouted.reroute_model.as_str()), ("pii-to-local", "local-llm"));
    let flagged = target.evaluate("strict", "claude-haiku", "email", 0.99).await.unwrap();
    assert_eq!((flagged.decision(), flagged.matched_rule.as_str()), (Decision::Flag, "flag-findings"));
    let mut client = PolicyServiceClient::connect(target.app.policy_url.clone()).await.unwrap();
    let clean = client
        .evaluate(internal_request(EvaluateRequest { policy_id: "strict".into(), ..EvaluateRequest::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((clean.decision(), clean.matched_rule.as_str()), (Decision::Allow, ""));

    let unknown = target.evaluate("no-such-policy", "m", "email", 0.9).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    // No policy named: the built-in default.
    let default = target.evaluate("", "m", "prompt_injection", 0.97).await.unwrap();
    assert_eq!((default.decision(), default.matched_rule.as_str()), (Decision::Deny, "deny-prompt-injection"));

    // HTTP: by name, inline, explained; unknown names are 404.
    let (status, answer) = target
        .http_evaluate(
            &json!({"policy_id": "strict", "model": "gpt-4o", "findings": [{"type": "email", "max_score": 0.9}]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["decision"].as_str(), answer["reroute_model"].as_str()), (Some("reroute"), Some("local-llm")));
    assert_eq!(answer["policy"], "strict");
    assert!(answer["explanation"].as_str().unwrap().contains("rule `pii-to-local` matched"), "{answer}");
    let (status, answer) = target.http_evaluate(&json!({"policy_id": "missing"})).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("policy_not_found")));
    let (status, answer) = target
        .http_evaluate(&json!({
            "policy": {"name": "try", "rules": [{"name": "risky", "action": "deny",
                "when": {"any_finding": ["secret", "prompt_injection"], "min_scores": {"prompt_injection": 0.8}}}]},
            "findings": [{"type": "prompt_injection", "max_score": 0.85}]
        }))
        .await;
    assert_eq!(
        (status, answer["decision"].as_str(), answer["matched_rule"].as_str()),
        (200, Some("deny"), Some("risky"))
    );
    let (status, _) = target.http_evaluate(&json!({"policy_id": "strict", "policy": {"name": "x"}})).await;
    assert_eq!(status, 400);
    let anonymous = http_client()
        .post(format!("{}/api/policy/evaluate", target.app.policy_url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn policy_changes_are_picked_up_through_the_channel_within_a_second() {
    let target = Target::start().await;
    if !target.through_api {
        // Without the api-server's /api/policies nothing publishes on `policies:changed`.
        return;
    }
    target.await_loaded("strict", Duration::from_secs(1)).await;
    assert_eq!(target.evaluate("strict", "gpt-4o", "ip_address", 0.9).await.unwrap().decision(), Decision::Flag);

    // A new version that denies IP addresses.
    let mut document = strict();
    document["rules"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"name": "no-ips", "when": {"finding": "ip_address"}, "action": "deny"}));
    let response = http_client()
        .patch(format!("{}/api/policies/strict", target.app.api()))
        .bearer_auth(ADMIN)
        .json(&json!({"document": document}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let changed = Instant::now();
    loop {
        let decision = target.evaluate("strict", "gpt-4o", "ip_address", 0.9).await.unwrap();
        if decision.decision() == Decision::Deny {
            assert_eq!(decision.matched_rule, "no-ips");
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "change not picked up within a second");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A new policy is evaluable within a second of its creation; a deleted one is gone.
    assert!(target.create("lenient", json!({"default": "allow"})).await);
    assert!(target.await_loaded("lenient", Duration::from_secs(1)).await < Duration::from_secs(1));
    let response = http_client()
        .delete(format!("{}/api/policies/lenient", target.app.api()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let deleted = Instant::now();
    while target.evaluate("lenient", "m", "x", 0.0).await.is_ok() {
        assert!(deleted.elapsed() < Duration::from_secs(1), "deletion not picked up within a second");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let loaded: Value = http_client()
        .get(format!("{}/api/policy/policies", target.app.policy_url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(loaded["data"], json!([{"name": "strict", "version": 2, "rules": 4}]));
}
