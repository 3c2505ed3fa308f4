//! The worker: its jobs against a running gateway (budget rollover with a fixed clock, Redis
//! counters repaired, alerts delivered to a webhook receiver, spend rollups read by the analytics
//! API), and leader election between two worker processes on PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use flowgate_common::budget::BudgetPeriod;
use flowgate_contracts::budgets::settled_key;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, SharedState};
use flowgate_test_utils::{FlowgateProcess, TempDir, TestApp, ThrowawayDb, base_env, redis_url, require_redis};
use flowgate_worker::Job;
use flowgate_worker::jobs::budgets::{Reconcile, Rollover};
use secrecy::SecretString;
use serde_json::{Value, json};

const PRICED: &str = "model_list:
  - {model_name: priced, litellm_params: {model: mock/priced, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}
";

const DAY_MS: i64 = 86_400_000;

async fn sqlite_of(app: &TestApp) -> Database {
    Database::connect(None, app.data_dir(), 2, Duration::from_secs(5)).await.unwrap()
}

fn unique_prefix() -> String {
    format!("test-{}:", uuid::Uuid::new_v4().simple())
}

async fn chat(app: &TestApp, key: &str) -> u16 {
    let body = json!({"model": "priced", "messages": [{"role": "user", "content": "hello there, worker"}]});
    app.post("/v1/chat/completions", key, &body).await.status().as_u16()
}

/// The spend the database records for `row` in the period starting at `start`.
async fn recorded(db: &Database, row: &str, start: i64) -> Option<i64> {
    sqlx::query("SELECT spent_nanos FROM spend WHERE key_id = $1 AND period_start = $2")
        .bind(row.to_owned())
        .bind(start)
        .fetch_optional(db.pool())
        .await
        .unwrap()
        .map(|row| row.get::<i64, _>(0))
}

/// Waits until the database records spend for `row` in its current daily period.
async fn wait_recorded(db: &Database, row: &str) -> i64 {
    let (start, _) = BudgetPeriod::Daily.bounds(flowgate_db::now_millis());
    for _ in 0..100 {
        if let Some(spent) = recorded(db, row, start).await.filter(|spent| *spent > 0) {
            return spent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no spend recorded for {row}");
}

#[tokio::test]
async fn a_budget_period_is_opened_at_its_boundary_without_a_request() {
    let app = TestApp::builder(PRICED).env("FLOWGATE__WORKER__INTERVAL_SECS", "3600").spawn().await;
    let (id, _) = app.create_key(json!({"name": "daily", "budget_usd": 5.0, "budget_period": "daily"})).await;
    let db = sqlite_of(&app).await;
    let rollover = Rollover::new(db.clone(), SharedState::local("rollover-test:"));
    // A fixed clock: one second before a UTC midnight, then one second after it.
    let midnight = (flowgate_db::now_millis() / DAY_MS + 10) * DAY_MS;
    let report = rollover.run(midnight - 1000).await.unwrap();
    assert!(report.contains(&id), "{report}");
    assert_eq!(recorded(&db, &id, midnight - DAY_MS).await, Some(0));
    assert_eq!(recorded(&db, &id, midnight).await, None, "the next day is not open yet");

    let report = rollover.run(midnight + 1000).await.unwrap();
    assert!(report.starts_with("opened 1 period"), "{report}");
    assert_eq!(recorded(&db, &id, midnight).await, Some(0), "the new day is open at zero");
    // Safe to run twice.
    assert_eq!(rollover.run(midnight + 2000).await.unwrap(), "no period started");
    db.close().await;
}

#[tokio::test]
async fn reconciliation_repairs_a_budget_counter_corrupted_in_redis() {
    if !require_redis().await {
        return;
    }
    let prefix = unique_prefix();
    let app = TestApp::builder(PRICED).env("FLOWGATE__WORKER__INTERVAL_SECS", "3600").redis(&prefix).spawn().await;
    let (id, key) = app.create_key(json!({"name": "reconciled", "budget_usd": 5.0, "budget_period": "daily"})).await;
    assert_eq!(chat(&app, &key).await, 200);
    let db = sqlite_of(&app).await;
    let spent = wait_recorded(&db, &id).await;
    let shared = SharedState::new(Some(&SecretString::from(redis_url())), &prefix).unwrap();
    let now = flowgate_db::now_millis();
    let (start, _) = BudgetPeriod::Daily.bounds(now);
    let counter = settled_key(&id, start);
    let held = || async { String::from_utf8(shared.get(&counter).await.unwrap().unwrap()).unwrap() };
    assert_eq!(held().await, spent.to_string(), "Redis and the database agree after a request");
    let reconcile = Reconcile::new(db.clone(), shared.clone());
    assert_eq!(reconcile.reconcile(now).await.unwrap(), vec![], "nothing to repair");

    // Lost in Redis (a restart without persistence): raised back at once.
    shared.set_ex(&counter, b"0", Duration::from_secs(600)).await.unwrap();
    let report = reconcile.run(now).await.unwrap();
    assert_eq!(report, format!("repaired 1 counter(s): {id} 0 -> {spent} nano-USD"));
    assert_eq!(held().await, spent.to_string());
    // The key is limited by its real spend again: the proxy sees the repaired counter.
    assert_eq!(chat(&app, &key).await, 200);
    let spent = wait_recorded(&db, &id).await;
    let after = held().await.parse::<i64>().unwrap();
    assert_eq!(after, spent, "the request after the repair counted on top of the repaired figure");

    // More in Redis than the database ever recorded: repaired once the row has been quiet.
    let inflated = (spent + 1_000_000).to_string();
    shared.set_ex(&counter, inflated.as_bytes(), Duration::from_secs(600)).await.unwrap();
    let now = flowgate_db::now_millis();
    assert_eq!(reconcile.reconcile(now).await.unwrap(), vec![], "spend may be on its way to the database");
    let repairs = reconcile.reconcile(now + flowgate_worker::jobs::budgets::QUIET_MS + 1000).await.unwrap();
    assert_eq!(repairs.len(), 1, "{repairs:?}");
    assert_eq!((repairs[0].before, repairs[0].after), (spent + 1_000_000, spent));
    assert_eq!(held().await, spent.to_string());
    db.close().await;
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
    answered: u16,
}

/// A webhook receiver on a free port: `/hook` answers 500 to its first request, then 200;
/// `/slack` always 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = received.clone();
    let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let log = log.clone();
        async move {
            let mut log = log.lock().unwrap();
            let path = uri.path().to_owned();
            let first = !log.iter().any(|r| r.path == path);
            let status = if path == "/hook" && first { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
            log.push(Received { path, headers, body, answered: status.as_u16() });
            status
        }
    };
    let router = axum::Router::new().fallback(axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), received)
}

#[tokio::test]
async fn budget_alerts_reach_a_webhook_signed_once_per_threshold_and_retried_after_a_failure() {
    let (url, received) = receiver().await;
    let config = format!(
        "{PRICED}worker:
  interval_secs: 1
  alerts:
    webhooks:
      - {{name: ops, url: '{url}/hook', secret: whsec-test}}
      - {{name: chat, url: '{url}/slack', format: slack}}
"
    );
    let app = TestApp::builder(config).spawn().await;
    // A budget the first request exhausts: 50, 80 and 100 % are crossed at once.
    let (id, key) = app.create_key(json!({"name": "tiny", "budget_usd": 0.000001, "budget_period": "daily"})).await;
    assert_eq!(chat(&app, &key).await, 200);

    // The first delivery to /hook fails; it is retried after the pause (2 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let delivered = received.lock().unwrap().iter().filter(|r| r.path == "/hook" && r.answered == 200).count();
        if delivered >= 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "alerts not delivered: {:?}", received.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // More passes of the worker send nothing more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let received = received.lock().unwrap().clone();
    let hook: Vec<&Received> = received.iter().filter(|r| r.path == "/hook" && r.answered == 200).collect();
    assert_eq!(hook.len(), 3, "one delivery per threshold: {received:?}");
    assert_eq!(received.iter().filter(|r| r.path == "/hook").count(), 4, "one failed attempt, then three");
    assert_eq!(received.iter().filter(|r| r.path == "/slack").count(), 3);
    let mut thresholds = Vec::new();
    for delivery in &hook {
        let timestamp: i64 = delivery.headers["x-flowgate-timestamp"].to_str().unwrap().parse().unwrap();
        let expected = flowgate_worker::jobs::alerts::signature("whsec-test", timestamp, delivery.body.as_bytes());
        assert_eq!(delivery.headers["x-flowgate-signature"].to_str().unwrap(), format!("sha256={expected}"));
        let document: Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(document["kind"], "budget_threshold");
        assert_eq!(document["subject"], id.as_str());
        assert_eq!(document["id"].as_str(), delivery.headers["x-flowgate-alert-id"].to_str().ok());
        thresholds.push(document["threshold_percent"].as_i64().unwrap());
    }
    thresholds.sort_unstable();
    assert_eq!(thresholds, [50, 80, 100]);
    for slack in received.iter().filter(|r| r.path == "/slack") {
        let body: Value = serde_json::from_str(&slack.body).unwrap();
        assert!(body["text"].as_str().unwrap().contains("tiny"), "{body}");
    }

    // The delivery log.
    let (status, page) = app.admin(reqwest::Method::GET, "/api/alerts?kind=budget_threshold", None).await;
    assert_eq!(status, 200, "{page}");
    let alerts = page["data"].as_array().unwrap();
    assert_eq!(alerts.len(), 3, "{page}");
    for alert in alerts {
        assert_eq!(alert["status"], "delivered", "{alert}");
        let deliveries = alert["deliveries"].as_array().unwrap();
        assert!(deliveries.iter().any(|d| d["webhook"] == "ops" && d["delivered"] == true), "{alert}");
        assert!(deliveries.iter().any(|d| d["webhook"] == "chat" && d["delivered"] == true), "{alert}");
    }
    let failed: Vec<&Value> =
        alerts.iter().flat_map(|a| a["deliveries"].as_array().unwrap()).filter(|d| d["delivered"] == false).collect();
    assert_eq!(failed.len(), 1, "{page}");
    assert_eq!(failed[0]["status_code"], 500);
    let (status, error) = app.admin(reqwest::Method::GET, "/api/alerts?status=lost", None).await;
    assert_eq!(status, 400, "{error}");
}

/// `/readyz` of a worker: job name → its detail.
async fn jobs(url: &str) -> serde_json::Map<String, Value> {
    let body: Value = reqwest::get(format!("{url}/readyz")).await.unwrap().json().await.unwrap();
    body["checks"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(name, check)| Some((name.strip_prefix("job:")?.to_owned(), check["detail"].clone())))
        .collect()
}

async fn wait_until_leading_every_job(worker: &FlowgateProcess) -> serde_json::Map<String, Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = jobs(&worker.url("worker")).await;
        if !jobs.is_empty() && jobs.values().all(|job| job["leader"] == true && job["runs"].as_u64() >= Some(1)) {
            return jobs;
        }
        assert!(tokio::time::Instant::now() < deadline, "never led every job: {jobs:?}\n{}", worker.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_workers_run_each_job_once_and_the_other_takes_over_when_the_leader_dies() {
    let Some(db) = ThrowawayDb::create().await else { return };
    let dir = TempDir::new();
    let mut env = base_env(dir.path());
    env.push(("DATABASE_URL".to_owned(), db.url.clone()));
    env.push(("FLOWGATE__WORKER__INTERVAL_SECS".to_owned(), "1".to_owned()));
    let status = FlowgateProcess::command(&["migrate"], &env).status().await.unwrap();
    assert!(status.success());

    let first = FlowgateProcess::spawn(&["worker"], &env, &["worker"]).await;
    wait_until_leading_every_job(&first).await;
    let second = FlowgateProcess::spawn(&["worker"], &env, &["worker"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let standby = jobs(&second.url("worker")).await;
    assert_eq!(standby.len(), 4, "{standby:?}");
    for (name, job) in &standby {
        assert_eq!(job["leader"], false, "{name}: {job}");
        assert_eq!(job["runs"], 0, "{name} ran on the standby: {job}");
    }
    let leading = jobs(&first.url("worker")).await;
    assert!(leading.values().all(|job| job["leader"] == true), "{leading:?}");

    // The leader dies without a word (no SIGTERM, no unlock): PostgreSQL ends its session.
    let killed = std::process::Command::new("kill").arg("-KILL").arg(first.pid().to_string()).status().unwrap();
    assert!(killed.success());
    let taken = wait_until_leading_every_job(&second).await;
    assert!(taken.values().all(|job| job["last_outcome"] == "ok"), "{taken:?}");
    drop(first);
    drop(second);
    db.drop_db().await;
}

/// Inserts one audit record as the proxy writes it (the columns the spend report reads).
async fn audit_record(db: &Database, ts: i64, key: &str, model_requested: &str, model_used: Option<&str>, cost: i64) {
    sqlx::query(
        "INSERT INTO audit_records (request_id, ts, tenant_id, key_id, route, model_requested, model_used, status, \
         prompt_tokens, completion_tokens, cost_nanos) VALUES ($1, $2, $3, $4, '/v1/chat/completions', $5, $6, 200, \
         $7, $8, $9)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(ts)
    .bind("default")
    .bind(key.to_owned())
    .bind(model_requested.to_owned())
    .bind(model_used.map(str::to_owned))
    .bind(cost / 100)
    .bind(cost / 50)
    .bind(cost)
    .execute(db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn the_spend_report_reads_rollups_and_the_newer_records_and_answers_the_same() {
    let app = TestApp::builder("").env("FLOWGATE__WORKER__INTERVAL_SECS", "3600").spawn().await;
    let db = sqlite_of(&app).await;
    spend_report_with_rollups(&app, &db).await;
    db.close().await;
}

#[tokio::test]
async fn the_spend_report_reads_rollups_on_postgresql() {
    let Some(pg) = ThrowawayDb::create().await else { return };
    let app = TestApp::builder("").env("FLOWGATE__WORKER__INTERVAL_SECS", "3600").postgres(&pg).spawn().await;
    let url = SecretString::from(pg.url.clone());
    let db = Database::connect(Some(&url), app.data_dir(), 2, Duration::from_secs(5)).await.unwrap();
    spend_report_with_rollups(&app, &db).await;
    db.close().await;
    drop(app);
    pg.drop_db().await;
}

async fn spend_report_with_rollups(app: &TestApp, db: &Database) {
    use flowgate_worker::jobs::rollups::{HOUR_MS, Rollups};
    // The app's worker has rolled up its empty table once; start over, as on a first run over
    // records that predate the worker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while jobs(&app.worker_url).await["rollups"]["runs"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the worker never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("DELETE FROM worker_state").execute(db.pool()).await.unwrap();
    let now = flowgate_db::now_millis();
    let hour = now / HOUR_MS * HOUR_MS;
    // Three days of records, some in the current (unrolled) hour, models asked and used.
    for (n, ts) in (0..72).map(|h| hour - h * HOUR_MS - 1234).chain([hour + 1, now]).enumerate() {
        let n = i64::try_from(n).unwrap();
        let key = if n % 3 == 0 { "k-a" } else { "k-b" };
        let used = (n % 4 != 0).then_some("gpt-used");
        audit_record(db, ts, key, "gpt-asked", used, 1000 + n).await;
    }
    let queries = [
        "group_by=key".to_owned(),
        "group_by=model".to_owned(),
        "group_by=day".to_owned(),
        "group_by=tenant&model=gpt-asked".to_owned(),
        format!("group_by=key&from={}", flowgate_common::budget::utc_timestamp(hour - 30 * HOUR_MS + 1500)),
        format!("group_by=model&key_id=k-a&to={}", flowgate_common::budget::utc_timestamp(hour - 5 * HOUR_MS - 10_000)),
    ];
    let mut before = Vec::new();
    for query in &queries {
        let (status, report) = app.admin(reqwest::Method::GET, &format!("/api/analytics/spend?{query}"), None).await;
        assert_eq!(status, 200, "{report}");
        before.push(report);
    }
    let rollups = Rollups::new(db.clone());
    let report = rollups.run(now).await.unwrap();
    assert!(report.starts_with("rolled up to"), "{report}");
    // Run again: the same rollups.
    rollups.run(now).await.unwrap();
    let rolled: i64 = sqlx::query("SELECT CAST(SUM(requests) AS BIGINT) FROM spend_rollups")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(rolled, 72, "every record before the current hour is rolled up, once");
    for (query, expected) in queries.iter().zip(&before) {
        let (status, report) = app.admin(reqwest::Method::GET, &format!("/api/analytics/spend?{query}"), None).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(&report, expected, "{query}");
    }
    // A record newer than the rollups is counted from the records.
    audit_record(db, now, "k-a", "gpt-asked", None, 7).await;
    let requests = |report: &Value| -> i64 {
        report["items"].as_array().unwrap().iter().find(|i| i["group"] == "k-a").unwrap()["requests"].as_i64().unwrap()
    };
    let (_, report) = app.admin(reqwest::Method::GET, "/api/analytics/spend?group_by=key", None).await;
    assert_eq!(requests(&report), requests(&before[0]) + 1, "{report}");
}
