use std::time::Duration;

use flowgate_db::Set;
use flowgate_test_utils::TempDir;

use super::*;

async fn database(dir: &TempDir) -> Database {
    let db = Database::connect(None, dir.path(), 2, Duration::from_secs(5)).await.unwrap();
    flowgate_db::migrate::run(&db).await.unwrap();
    db
}

async fn upsert(db: &Database, name: &str, version: i64, document: &str) {
    let upsert = db.dialect().upsert("policies", &["name"], &[Set::Replace("version"), Set::Replace("document")]);
    let sql = format!(
        "INSERT INTO policies (id, name, version, document, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, 0){upsert}"
    );
    sqlx::query(&db.sql(&sql))
        .bind(format!("id-{name}"))
        .bind(name)
        .bind(version)
        .bind(document)
        .execute(db.pool())
        .await
        .unwrap();
}

fn request(policy_id: &str, kind: &str, score: f32, model: &str) -> pb::EvaluateRequest {
    pb::EvaluateRequest {
        policy_id: policy_id.to_owned(),
        model: model.to_owned(),
        stage: "pre_call".to_owned(),
        findings: vec![pb::FindingSummary { kind: kind.to_owned(), count: 1, max_score: score }],
        ..pb::EvaluateRequest::default()
    }
}

async fn decide(evaluator: &Evaluator, request: pb::EvaluateRequest) -> Result<pb::EvaluateResponse, tonic::Status> {
    PolicyService::evaluate(evaluator, tonic::Request::new(request)).await.map(tonic::Response::into_inner)
}

const STRICT: &str = r#"{"name":"strict","default":"allow","rules":[
    {"name":"no-secrets","when":{"finding":"secret"},"action":"deny","reason":"secrets may not leave"},
    {"name":"pii-local","when":{"any_finding":["email","phone"],"model":"gpt-4*"},"action":"reroute","reroute_model":"local-llm"},
    {"name":"flag-rest","when":{"finding":"*"},"action":"flag"}]}"#;

#[tokio::test]
async fn policies_load_by_name_and_unknown_names_are_not_found() {
    let dir = TempDir::new();
    let db = database(&dir).await;
    upsert(&db, "strict", 3, STRICT).await;
    // A document without a name gets the row's.
    upsert(&db, "unnamed", 1, r#"{"default":"deny"}"#).await;
    let evaluator = Evaluator::with_database(db);
    assert_eq!(evaluator.reload_all().await.unwrap(), 2);

    let denied = decide(&evaluator, request("strict", "secret", 0.9, "x")).await.unwrap();
    assert_eq!((denied.decision(), denied.matched_rule.as_str()), (pb::Decision::Deny, "no-secrets"));
    assert_eq!(denied.reason, "secrets may not leave");
    let rerouted = decide(&evaluator, request("strict", "email", 0.99, "gpt-4o")).await.unwrap();
    assert_eq!((rerouted.decision(), rerouted.reroute_model.as_str()), (pb::Decision::Reroute, "local-llm"));
    let flagged = decide(&evaluator, request("strict", "ip_address", 0.9, "gpt-4o")).await.unwrap();
    assert_eq!((flagged.decision(), flagged.matched_rule.as_str()), (pb::Decision::Flag, "flag-rest"));
    assert_eq!(decide(&evaluator, request("unnamed", "x", 0.1, "m")).await.unwrap().decision(), pb::Decision::Deny);

    let missing = decide(&evaluator, request("nope", "email", 0.9, "m")).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // Empty = the built-in default while no stored `default` exists.
    let builtin = decide(&evaluator, request("", "prompt_injection", 0.95, "m")).await.unwrap();
    assert_eq!(builtin.matched_rule, "deny-prompt-injection");
    assert_eq!(evaluator.loaded(), vec![("strict".to_owned(), 3, 3), ("unnamed".to_owned(), 1, 0)]);
}

#[tokio::test]
async fn a_stored_default_replaces_the_builtin_and_reloads_follow_changes() {
    let dir = TempDir::new();
    let db = database(&dir).await;
    let evaluator = Evaluator::with_database(db.clone());
    evaluator.reload_all().await.unwrap();
    assert_eq!(decide(&evaluator, request("", "email", 0.9, "m")).await.unwrap().matched_rule, "flag-findings");

    upsert(
        &db,
        "default",
        1,
        r#"{"name":"default","rules":[{"name":"deny-email","when":{"finding":"email"},"action":"deny"}]}"#,
    )
    .await;
    evaluator.reload_one("default").await.unwrap();
    assert_eq!(decide(&evaluator, request("", "email", 0.9, "m")).await.unwrap().matched_rule, "deny-email");

    // An invalid new version is ignored; the last good one stays.
    upsert(&db, "default", 2, r#"{"name":"default","rules":[{"name":"r","action":"reroute"}]}"#).await;
    evaluator.reload_one("default").await.unwrap();
    assert_eq!(evaluator.rule_set("").unwrap().version, 1);
    evaluator.reload_all().await.unwrap();
    assert_eq!(evaluator.rule_set("").unwrap().version, 1);

    // Deleted: back to the built-in.
    sqlx::query(&db.sql("DELETE FROM policies WHERE name = 'default'")).execute(db.pool()).await.unwrap();
    evaluator.reload_one("default").await.unwrap();
    assert_eq!(evaluator.rule_set("").unwrap().version, 0);
}

#[tokio::test]
async fn notifications_on_the_channel_reload_the_named_policy() {
    let dir = TempDir::new();
    let db = database(&dir).await;
    let shared = SharedState::local("test:");
    let evaluator = Evaluator::with_database(db.clone());
    let changes = shared.subscribe(POLICIES_CHANGED);
    evaluator.reload_all().await.unwrap();
    let shutdown = CancellationToken::new();
    #[expect(clippy::disallowed_methods, reason = "joined below")]
    let follower = tokio::spawn(evaluator.clone().follow(changes, shutdown.clone()));

    upsert(&db, "strict", 1, STRICT).await;
    assert!(evaluator.rule_set("strict").is_none(), "not before the notification");
    shared.publish(POLICIES_CHANGED, "strict").await.unwrap();
    let started = std::time::Instant::now();
    while evaluator.rule_set("strict").is_none() {
        assert!(started.elapsed() < Duration::from_secs(1), "reloaded within a second");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    follower.await.unwrap();
}

#[tokio::test]
async fn evaluation_is_in_memory_and_fast() {
    // Sanity only (no timing assertion): many evaluations against a loaded rule set.
    let evaluator = Evaluator::default();
    let started = std::time::Instant::now();
    for _ in 0..10_000 {
        let decision = decide(&evaluator, request("", "email", 0.9, "gpt-4o")).await.unwrap();
        assert_eq!(decision.decision(), pb::Decision::Flag);
    }
    println!("10k evaluations (debug build, through the gRPC trait): {:?}", started.elapsed());
}

#[tokio::test]
async fn policies_load_from_postgres() {
    policies_load_from(flowgate_test_utils::Engine::Postgres).await;
}

#[tokio::test]
async fn policies_load_from_mariadb() {
    policies_load_from(flowgate_test_utils::Engine::MySql).await;
}

async fn policies_load_from(engine: flowgate_test_utils::Engine) {
    let Some(throwaway) = flowgate_test_utils::ThrowawayDb::create_on(engine).await else { return };
    let dir = TempDir::new();
    let url = SecretString::from(throwaway.url.clone());
    let db = Database::connect(Some(&url), dir.path(), 2, Duration::from_secs(5)).await.unwrap();
    flowgate_db::migrate::run(&db).await.unwrap();
    upsert(&db, "strict", 7, STRICT).await;
    let evaluator = Evaluator::with_database(db.clone());
    assert_eq!(evaluator.reload_all().await.unwrap(), 1);
    assert_eq!(evaluator.rule_set("strict").unwrap().version, 7);
    let denied = decide(&evaluator, request("strict", "secret", 0.9, "x")).await.unwrap();
    assert_eq!(denied.decision(), pb::Decision::Deny);
    db.close().await;
    throwaway.drop_db().await;
}

/// Evaluation latency of a 20-rule set. Run in release:
/// `cargo test --release -p flowgate-policy evaluation_latency -- --ignored --nocapture`
#[test]
#[ignore = "timing report; run in release"]
fn evaluation_latency() {
    let mut rules: Vec<serde_json::Value> = (0..18)
        .map(|i| serde_json::json!({"name": format!("r{i}"), "when": {"model": format!("m{i}*"), "finding": "ssn", "min_count": 3}, "action": "deny"}))
        .collect();
    rules.push(serde_json::json!({"name": "risky", "when": {"any_finding": ["secret", "prompt_injection"], "min_scores": {"prompt_injection": 0.8}}, "action": "deny"}));
    rules.push(serde_json::json!({"name": "flag", "when": {"finding": "*"}, "action": "flag"}));
    let set = RuleSet::parse(&serde_json::json!({"name": "bench", "rules": rules}).to_string()).unwrap();
    let findings = vec![
        FindingSummary { kind: "email".to_owned(), count: 2, max_score: 0.99 },
        FindingSummary { kind: "phone".to_owned(), count: 1, max_score: 0.7 },
    ];
    let context = Context {
        key_id: "k",
        tenant_id: "t",
        model: "gpt-4o",
        route: "/v1/chat/completions",
        stage: "pre_call",
        findings: &findings,
    };
    let mut times = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let started = std::time::Instant::now();
        std::hint::black_box(set.evaluate(std::hint::black_box(&context)));
        times.push(started.elapsed());
    }
    times.sort();
    println!("20-rule evaluation (last rule matches): p50 {:?} p99 {:?}", times[50_000], times[99_000]);
}
