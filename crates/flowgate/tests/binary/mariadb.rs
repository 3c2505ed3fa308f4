//! MariaDB as the store, through the real binary: `flowgate migrate` then `flowgate all` on a
//! throwaway database named by a SQLAlchemy-style URL, serving a chat request with a virtual key
//! and writing its audit record; and ScaiGrid's mode names.

use std::time::{Duration, Instant};

use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Backend, Database};
use flowgate_test_utils::{FlowgateProcess, TempDir, ThrowawayDb, base_env, create_key, http_client};
use secrecy::SecretString;
use serde_json::{Value, json};

const ADMIN: &str = "mariadb-test-admin-key";
const CONFIG: &str = "model_list:
  - {model_name: m, litellm_params: {model: mock/m, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}
";

fn env_with(dir: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir.path());
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

#[tokio::test]
async fn migrate_then_all_on_mariadb_serves_a_key_and_audits_the_request() {
    let Some(db) = ThrowawayDb::create_mysql().await else { return };
    let dir = TempDir::new();
    let config = dir.path().join("flowgate.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    // The form a Python service's settings hold: normalised to mysql:// with a log line.
    let url = format!("{}?charset=utf8mb4", db.url.replacen("mysql://", "mysql+aiomysql://", 1));
    let env = env_with(
        &dir,
        &[
            ("DATABASE_URL", &url),
            ("FLOWGATE_CONFIG", &config.display().to_string()),
            ("ADMIN_API_KEY", ADMIN),
            ("FLOWGATE__SECURITY__KEY_HASH_SECRET", "mariadb-test-hash-secret"),
        ],
    );
    for run in 0..2 {
        let output = FlowgateProcess::command(&["migrate"], &env).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "run {run}: {stderr}");
        assert!(stderr.contains("mysql+aiomysql") && stderr.contains("alias"), "the rewrite is logged: {stderr}");
        assert!(stderr.contains(if run == 0 { "V1__initial_schema" } else { "up to date" }), "{stderr}");
    }

    let process = FlowgateProcess::spawn(&["all"], &env, &["proxy", "api-server"]).await;
    let (key_id, key) = create_key(&process.url("api-server"), ADMIN, &json!({"name": "maria", "budget_usd": 5})).await;
    let response = http_client()
        .post(format!("{}/v1/chat/completions", process.url("proxy")))
        .bearer_auth(&key)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hello from mariadb \u{1F600}"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let answer: Value = response.json().await.unwrap();
    assert!(answer["choices"][0]["message"]["content"].is_string(), "{answer}");

    let database = Database::connect(Some(&SecretString::from(db.url.clone())), dir.path(), 2, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(database.backend(), Backend::MySql);
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let found = sqlx::query(&database.sql(
            "SELECT key_id, model_requested, status, prompt_tokens, cost_nanos FROM audit_records WHERE request_id = $1",
        ))
        .bind(&request_id)
        .fetch_optional(database.pool())
        .await
        .unwrap();
        if let Some(row) = found {
            break row;
        }
        assert!(Instant::now() < deadline, "the request's audit record was not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(row.try_get::<Option<String>, _>("key_id").unwrap().as_deref(), Some(key_id.as_str()));
    assert_eq!(flowgate_db::text::opt_text(&row, "model_requested").unwrap().as_deref(), Some("m"));
    assert_eq!(row.try_get::<i64, _>("status").unwrap(), 200);
    assert!(row.try_get::<i64, _>("prompt_tokens").unwrap() > 0);
    assert!(row.try_get::<i64, _>("cost_nanos").unwrap() > 0);

    // The management API reads it back: the audit trail, the spend report, the key's spend.
    let get = |path: String| {
        let url = format!("{}{path}", process.url("api-server"));
        async move {
            let response = http_client().get(url).bearer_auth(ADMIN).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, page) = get(format!("/api/audit?key_id={key_id}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["request_id"], request_id.as_str(), "{page}");
    assert_eq!(page["items"][0]["key_id"], key_id.as_str(), "{page}");
    let (status, report) = get("/api/analytics/spend?group_by=model".to_owned()).await;
    assert_eq!(status, 200, "{report}");
    assert!(report.to_string().contains("\"m\""), "the model's spend is reported: {report}");
    let (status, health) = get("/api/health/comprehensive".to_owned()).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["database"]["backend"], "mysql", "{health}");
    assert!(!process.log_text().contains(&key), "the key is never logged");
    drop(process);
    database.close().await;
    db.drop_db().await;
}

/// `SCAIGRID_MODE=http` runs the proxy and the api-server, `grpc` compliance and policy, each
/// answering health on its own port; `bunker_proxy` exits non-zero saying it is not part of
/// Flowgate.
#[tokio::test]
async fn scaigrid_modes_start_the_services_they_name() {
    let dir = TempDir::new();
    let migrate = FlowgateProcess::command(&["migrate"], &env_with(&dir, &[])).output().await.unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let secrets = [("ADMIN_API_KEY", ADMIN), ("FLOWGATE__SECURITY__KEY_HASH_SECRET", "scaigrid-hash-secret")];
    for (mode, services) in [("http", ["proxy", "api-server"]), ("grpc", ["compliance", "policy"])] {
        let mut env = env_with(&dir, &secrets);
        env.push(("SCAIGRID_MODE".to_owned(), mode.to_owned()));
        let process = FlowgateProcess::spawn(&[], &env, &services).await;
        assert_eq!(process.addrs.len(), 2, "{mode} runs exactly {services:?}: {:?}", process.addrs);
        for service in services {
            let response = http_client().get(format!("{}/health", process.url(service))).send().await.unwrap();
            assert_eq!(response.status(), 200, "{mode}: {service}");
            assert_eq!(response.headers()["x-flowgate-service"], service);
        }
    }
    let mut env = env_with(&dir, &secrets);
    env.push(("SCAIGRID_MODE".to_owned(), "bunker_proxy".to_owned()));
    let output = FlowgateProcess::command(&[], &env).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bunker_proxy") && stderr.contains("not part of Flowgate"), "{stderr}");
}
