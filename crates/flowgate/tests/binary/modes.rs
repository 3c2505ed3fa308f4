use std::time::Duration;

use flowgate_test_utils::{FlowgateProcess, TempDir, ThrowawayDb, base_env, http_client};

fn env_with(dir: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir.path());
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

async fn assert_healthy(process: &FlowgateProcess, service: &str) {
    let response = http_client().get(format!("{}/health", process.url(service))).send().await.unwrap();
    assert_eq!(response.status(), 200, "{service}");
    assert_eq!(response.headers()["x-flowgate-service"], service);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn all_serves_every_port_with_no_database_or_redis() {
    let dir = TempDir::new();
    let process =
        FlowgateProcess::spawn(&["all"], &env_with(&dir, &[]), &["proxy", "api-server", "compliance", "policy"]).await;
    for service in ["proxy", "api-server", "compliance", "policy"] {
        assert_healthy(&process, service).await;
        let metrics = http_client().get(format!("{}/metrics", process.url(service))).send().await.unwrap();
        assert_eq!(metrics.status(), 200);
        assert!(metrics.text().await.unwrap().contains("flowgate_http_requests_total"), "{service} metrics");
    }
    let ready = http_client().get(format!("{}/readyz", process.url("proxy"))).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready = http_client().get(format!("{}/readyz", process.url("api-server"))).send().await.unwrap();
    assert_eq!(ready.status(), 200, "api-server sees its SQLite database");
    assert!(dir.path().join("flowgate.db").exists(), "all mode created and migrated its SQLite file");
    let admin_key = std::fs::read_to_string(dir.path().join("admin_api_key")).unwrap();
    assert!(!process.log_text().contains(admin_key.trim()), "the generated admin key is never logged");
}

#[tokio::test]
async fn each_service_mode_starts_alone_and_answers_health() {
    let dir = TempDir::new();
    // The api-server needs a migrated schema: migrate the SQLite file first.
    let migrate = FlowgateProcess::command(&["migrate"], &env_with(&dir, &[])).output().await.unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

    let secrets = [("ADMIN_API_KEY", "test-admin"), ("FLOWGATE__SECURITY__KEY_HASH_SECRET", "test-hash-secret")];
    for (mode, via) in [
        ("proxy", "SERVICE_TYPE"),
        ("api-server", "SERVICE_TYPE"),
        ("compliance", "SCAIGRID_MODE"),
        ("policy-perfect", "SERVICE_TYPE"),
    ] {
        let service = if mode == "policy-perfect" { "policy" } else { mode };
        let mut env = env_with(&dir, &secrets);
        env.push((via.to_owned(), mode.to_owned()));
        let process = FlowgateProcess::spawn(&[], &env, &[service]).await;
        assert_healthy(&process, service).await;
        assert_eq!(process.addrs.len(), 1, "{mode} runs only its own service");
    }
}

#[tokio::test]
async fn api_server_refuses_an_unmigrated_database() {
    let dir = TempDir::new();
    let output =
        FlowgateProcess::command(&["api-server"], &env_with(&dir, &[("ADMIN_API_KEY", "k")])).output().await.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("flowgate migrate"));
}

#[tokio::test]
async fn service_modes_other_than_all_require_an_admin_key() {
    let dir = TempDir::new();
    let output = FlowgateProcess::command(&["compliance"], &env_with(&dir, &[])).output().await.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ADMIN_API_KEY"));
}

#[tokio::test]
async fn unknown_mode_fails_and_lists_valid_modes() {
    let dir = TempDir::new();
    for (args, extra) in
        [(vec!["frobnicate"], vec![]), (vec![], vec![("SERVICE_TYPE", "frobnicate")]), (vec![], vec![])]
    {
        let output = FlowgateProcess::command(&args, &env_with(&dir, &extra)).output().await.unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?} {extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("proxy, api-server, compliance, policy"), "{stderr}");
    }
}

#[tokio::test]
async fn help_and_version_exit_zero() {
    let dir = TempDir::new();
    for flag in ["--help", "--version"] {
        let output = FlowgateProcess::command(&[flag], &env_with(&dir, &[])).output().await.unwrap();
        assert!(output.status.success(), "{flag}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("flowgate"));
    }
}

#[tokio::test]
async fn bad_config_file_fails_naming_the_field() {
    let dir = TempDir::new();
    let config = dir.path().join("flowgate.yaml");
    std::fs::write(&config, "proxy:\n  port: 7775\n  max_body_bytez: 10\n").unwrap();
    let path = config.display().to_string();
    let output = FlowgateProcess::command(&["all", "--config", &path], &env_with(&dir, &[])).output().await.unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max_body_bytez"), "{stderr}");

    std::fs::write(
        &config,
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n      rpm: lots\n",
    )
    .unwrap();
    let output =
        FlowgateProcess::command(&["all"], &env_with(&dir, &[("FLOWGATE_CONFIG", &path)])).output().await.unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model_list[0].litellm_params.rpm"), "{stderr}");
}

#[tokio::test]
async fn migrate_is_idempotent_on_postgres() {
    let Some(db) = ThrowawayDb::create().await else { return };
    let dir = TempDir::new();
    let env = env_with(&dir, &[("DATABASE_URL", &db.url), ("SERVICE_TYPE", "migrate")]);
    for run in 0..2 {
        let output = FlowgateProcess::command(&[], &env).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "run {run}: {stderr}");
        if run == 0 {
            assert!(stderr.contains("V1__initial_schema"), "{stderr}");
        } else {
            assert!(stderr.contains("up to date"), "{stderr}");
        }
    }
    db.drop_db().await;
}

#[tokio::test]
async fn migrate_fails_clearly_on_an_unreachable_database() {
    let dir = TempDir::new();
    let env = env_with(
        &dir,
        &[
            ("DATABASE_URL", "postgres://flowgate:s3cret-pw@127.0.0.1:1/flowgate"),
            ("FLOWGATE__DATABASE__CONNECT_TIMEOUT_SECS", "2"),
        ],
    );
    let started = std::time::Instant::now();
    let output = FlowgateProcess::command(&["migrate"], &env).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "password leaked: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn migrate_rejects_an_unsupported_url_scheme() {
    let dir = TempDir::new();
    let output = FlowgateProcess::command(&["migrate"], &env_with(&dir, &[("DATABASE_URL", "mssql://x@y/z")]))
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unsupported database URL scheme"));
}

#[tokio::test]
async fn unknown_paths_get_a_json_404_on_every_service() {
    let dir = TempDir::new();
    let process =
        FlowgateProcess::spawn(&["all"], &env_with(&dir, &[]), &["proxy", "api-server", "compliance", "policy"]).await;
    for service in ["proxy", "api-server", "compliance", "policy"] {
        let response = http_client().post(format!("{}/no/such/route", process.url(service))).send().await.unwrap();
        assert_eq!(response.status(), 404, "{service}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{service}");
    }
}
