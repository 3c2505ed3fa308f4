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

/// Waits until the database records more than `above` spent for `row` in its current daily period.
async fn wait_recorded(db: &Database, row: &str, above: i64) -> i64 {
    let (start, _) = BudgetPeriod::Daily.bounds(flowgate_db::now_millis());
    for _ in 0..100 {
        if let Some(spent) = recorded(db, row, start).await.filter(|spent| *spent > above) {
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
    let spent = wait_recorded(&db, &id, 0).await;
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
    let spent = wait_recorded(&db, &id, spent).await;
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
    // The app's worker has rolled up its empty table once: the records below predate its rolled
    // hours, like history imported after the worker started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while jobs(&app.worker_url).await["rollups"]["runs"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the worker never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    assert!(report.starts_with("rolled "), "{report}");
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

/// A `moto_server` (S3-compatible, from PyPI's `moto[server]`, pinned in tests/requirements.txt)
/// on a free port, killed on drop. `None` (skip) when it is not installed outside CI.
struct Moto {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn moto() -> Option<Moto> {
    let venv = std::env::var("FLOWGATE_DEPLOY_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/flowgate/deploy-venv", std::env::var("HOME").unwrap_or_default()));
    let bin = std::path::Path::new(&venv).join("bin/moto_server");
    if !bin.exists() {
        assert!(!flowgate_test_utils::in_ci(), "CI=true and moto_server is not installed at {}", bin.display());
        #[expect(clippy::print_stderr, reason = "a skipped test says why, as the other server checks do")]
        {
            eprintln!(
                "SKIPPING: moto_server is not installed ({}); pip install -r tests/requirements.txt",
                bin.display()
            );
        }
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = flowgate_test_utils::http_client();
    for _ in 0..100 {
        if client.get(format!("{url}/")).send().await.is_ok() {
            return Some(Moto { child, url });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start");
}

fn s3_client(url: &str, bucket: &str) -> flowgate_common::aws::s3::S3Client {
    let config = flowgate_common::aws::s3::S3Config {
        endpoint: url.to_owned(),
        bucket: bucket.to_owned(),
        region: "us-east-1".to_owned(),
        access_key_id: SecretString::from("test-key".to_owned()),
        secret_access_key: SecretString::from("test-secret".to_owned()),
    };
    flowgate_common::aws::s3::S3Client::new(config, Duration::from_secs(10)).unwrap()
}

async fn audit_count(db: &Database) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM audit_records").fetch_one(db.pool()).await.unwrap().get(0)
}

async fn insert_tenant_record(db: &Database, ts: i64, tenant: Option<&str>, key: &str) {
    sqlx::query(
        "INSERT INTO audit_records (request_id, ts, tenant_id, key_id, route, model_requested, status, cost_nanos) \
         VALUES ($1, $2, $3, $4, '/v1/chat/completions', 'gpt', 200, 5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(ts)
    .bind(tenant.map(str::to_owned))
    .bind(key.to_owned())
    .execute(db.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn audit_records_past_their_retention_are_archived_verified_deleted_and_read_back() {
    use flowgate_worker::jobs::archive::Archive;
    let Some(moto) = moto().await else { return };
    let bucket = "flowgate-audit";
    assert!(
        flowgate_test_utils::http_client()
            .put(format!("{}/{bucket}", moto.url))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let app = TestApp::builder("")
        .env("FLOWGATE__WORKER__INTERVAL_SECS", "3600")
        .env("FLOWGATE__AUDIT__RETENTION_DAYS", "2")
        .env("S3_ENDPOINT_URL", &moto.url)
        .env("S3_BUCKET", bucket)
        .env("S3_ACCESS_KEY_ID", "test-key")
        .env("S3_SECRET_ACCESS_KEY", "test-secret")
        .spawn()
        .await;
    let db = sqlite_of(&app).await;
    // The app's worker ran its first pass over an empty table; from here the test drives the job.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while jobs(&app.worker_url).await["audit-archive"]["runs"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the archive job never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = flowgate_db::now_millis();
    let today = now / DAY_MS * DAY_MS;
    let old_day = today - 5 * DAY_MS;
    for n in 0..5 {
        insert_tenant_record(&db, old_day + 1000 + n, Some("acme/eu"), "k-1").await;
    }
    for n in 0..3 {
        insert_tenant_record(&db, old_day + 5000 + n, Some("globex"), "k-2").await;
    }
    insert_tenant_record(&db, old_day + 9000, None, "k-3").await;
    insert_tenant_record(&db, today - 9 * DAY_MS + 5, Some("acme/eu"), "k-1").await;
    insert_tenant_record(&db, today - DAY_MS, Some("acme/eu"), "k-1").await; // within retention
    assert_eq!(audit_count(&db).await, 11);

    // A failed upload (the bucket does not exist) deletes nothing.
    let failing = Archive::new(db.clone(), s3_client(&moto.url, "no-such-bucket"), "flowgate/".to_owned(), 2);
    let error = failing.run(now).await.unwrap_err().to_string();
    assert!(error.contains("NoSuchBucket") || error.contains("404"), "{error}");
    assert_eq!(audit_count(&db).await, 11);

    let client = s3_client(&moto.url, bucket);
    let archive = Archive::new(db.clone(), client.clone(), "flowgate/".to_owned(), 2);
    let report = archive.run(now).await.unwrap();
    assert!(report.starts_with("archived and deleted 10 record(s) of "), "{report}");
    assert_eq!(audit_count(&db).await, 1, "only the record within retention stays");
    assert_eq!(archive.run(now).await.unwrap().split(' ').next(), Some("nothing"), "nothing left to archive");

    // The objects: one per tenant and day, each matching its manifest's checksum.
    let keys = client.list("flowgate/audit/").await.unwrap();
    let manifests: Vec<&String> = keys.iter().filter(|k| k.ends_with("/manifest.json")).collect();
    assert_eq!(manifests.len(), 2, "{keys:?}");
    assert_eq!(keys.len(), 2 + 4, "three tenants' objects on the old day, one on the older: {keys:?}");
    let mut archived = 0;
    for key in manifests {
        let manifest: flowgate_contracts::archive::Manifest =
            serde_json::from_slice(&client.get(key).await.unwrap().unwrap()).unwrap();
        for object in &manifest.objects {
            let body = client.get(&object.key).await.unwrap().unwrap();
            assert_eq!(flowgate_common::aws::sigv4::sha256_hex(&body), object.sha256);
            assert_eq!(u64::try_from(body.len()).unwrap(), object.bytes);
            assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip");
            assert!(object.key.contains(&format!("/audit/day={}/", manifest.day)), "{}", object.key);
            archived += object.records;
        }
    }
    assert_eq!(archived, 10);
    assert!(keys.iter().any(|k| k.ends_with("/tenant=acme%2Feu.ndjson.gz")), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with("/untenanted.ndjson.gz")), "{keys:?}");

    // Read back through the API.
    let range = |from: i64, to: i64| {
        format!(
            "from={}&to={}",
            flowgate_common::budget::utc_timestamp(from),
            flowgate_common::budget::utc_timestamp(to)
        )
    };
    let path = format!("/api/audit?archived=true&{}", range(old_day, old_day + DAY_MS));
    let (status, page) = app.admin(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 9, "{page}");
    // RFC 3339 with optional milliseconds: compare (seconds, milliseconds).
    let ts: Vec<(String, u32)> = items
        .iter()
        .map(|i| {
            let text = i["ts"].as_str().unwrap();
            let millis = text.get(20..23).map_or(0, |m| m.parse().unwrap());
            (text[..19].to_owned(), millis)
        })
        .collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first: {ts:?}");
    let path = format!("/api/audit?archived=true&tenant_id=acme/eu&{}", range(today - 10 * DAY_MS, today));
    let (status, page) = app.admin(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 6, "{page}");
    // Paging through the archive with a small limit gives every record once.
    let mut cursor: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    loop {
        let mut path = format!("/api/audit?archived=true&limit=4&{}", range(today - 10 * DAY_MS, today));
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = app.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert!(seen.insert(item["request_id"].as_str().unwrap().to_owned()));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    let (status, error) = app.admin(reqwest::Method::GET, "/api/audit?archived=true", None).await;
    assert_eq!(status, 400, "{error}");
    db.close().await;
}

#[tokio::test]
async fn a_key_about_to_expire_raises_one_alert_recorded_without_webhooks() {
    use flowgate_worker::jobs::alerts::Alerts;
    let app = TestApp::builder("").env("FLOWGATE__WORKER__INTERVAL_SECS", "3600").spawn().await;
    let now = flowgate_db::now_millis();
    let soon = flowgate_common::budget::utc_timestamp(now + 3 * DAY_MS);
    let later = flowgate_common::budget::utc_timestamp(now + 30 * DAY_MS);
    let (soon_id, _) = app.create_key(json!({"name": "soon", "expires_at": soon})).await;
    let (_, _) = app.create_key(json!({"name": "later", "expires_at": later})).await;
    let db = sqlite_of(&app).await;
    let settings = flowgate_common::settings::AlertSettings::default();
    let alerts = Alerts::new(db.clone(), SharedState::local("alerts-test:"), &settings).unwrap();
    let report = alerts.run(now).await.unwrap();
    assert!(report.contains("1 expiry alert"), "{report}");
    let report = alerts.run(now + 60_000).await.unwrap();
    assert!(report.contains("0 expiry alert"), "raised once: {report}");
    let (status, page) = app.admin(reqwest::Method::GET, "/api/alerts?kind=key_expiry", None).await;
    assert_eq!(status, 200, "{page}");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{page}");
    assert_eq!(data[0]["subject"], soon_id.as_str());
    assert_eq!(data[0]["status"], "recorded", "no webhook configured");
    assert_eq!(data[0]["threshold"], 7);
    assert!(data[0]["message"].as_str().unwrap().contains("soon"), "{page}");
    db.close().await;
}
