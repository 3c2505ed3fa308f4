//! The guardrail catalog and policy rule sets of the management API, against the real binary:
//! built-ins seeded once, CRUD, the write-only sealed bearer token of HTTP guardrails (never
//! returned, never in the database in plaintext), named validation errors, versioned policies and
//! the `guardrails:changed` / `policies:changed` publications.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_common::secretbox::{GUARDRAIL_TOKEN_CONTEXT, SealKey, open};
use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};
use flowgate_test_utils::{
    Engine, FlowgateProcess, TempDir, ThrowawayDb, base_env, http_client, redis_url, require_redis,
};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ADMIN: &str = "test-admin-key-guardrails";
const BUILTINS: [(&str, &str); 4] = [
    ("blocked-terms", "blocked_terms"),
    ("pii-redact", "pii"),
    ("prompt-injection", "prompt_injection"),
    ("secrets-detect", "secrets"),
];

struct Target {
    process: FlowgateProcess,
    api: String,
    db: Database,
    /// The key-hash secret the server seals tokens under (via a derived key).
    secret: SecretString,
    sqlite_files: Vec<PathBuf>,
    /// Lines seen on Redis `{prefix}guardrails:changed` and `{prefix}policies:changed`.
    published: Option<Arc<Mutex<Vec<String>>>>,
    env: Vec<(String, String)>,
    dir: TempDir,
}

fn env(dir: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir.path());
    env.push(("ADMIN_API_KEY".into(), ADMIN.into()));
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

async fn connect(url: Option<&str>, dir: &TempDir) -> Database {
    let url = url.map(|u| SecretString::from(u.to_owned()));
    Database::connect(url.as_ref(), dir.path(), 2, Duration::from_secs(5)).await.unwrap()
}

async fn sqlite_all() -> Target {
    let dir = TempDir::new();
    let env = env(&dir, &[]);
    let process = FlowgateProcess::spawn(&["all"], &env, &["api-server", "proxy"]).await;
    let secret = std::fs::read_to_string(dir.path().join("key_hash_secret")).unwrap().trim().to_owned();
    let db = connect(None, &dir).await;
    let file = dir.path().join("flowgate.db");
    let sqlite_files = vec![file.clone(), PathBuf::from(format!("{}-wal", file.display()))];
    let api = process.url("api-server");
    Target { process, api, db, secret: SecretString::from(secret), sqlite_files, published: None, env, dir }
}

/// Subscribes to Redis `channels` with a raw RESP connection; every line received is kept.
async fn subscribe(channels: &[String]) -> Arc<Mutex<Vec<String>>> {
    let addr = redis_url().trim_start_matches("redis://").split('/').next().unwrap_or("127.0.0.1:6379").to_owned();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut command = format!("*{}\r\n$9\r\nSUBSCRIBE\r\n", channels.len() + 1);
    for channel in channels {
        command.push_str(&format!("${}\r\n{channel}\r\n", channel.len()));
    }
    writer.write_all(command.as_bytes()).await.unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut reader = BufReader::new(reader).lines();
    // Each confirmation ends with the subscription count, `:n`.
    let mut confirmed = 0;
    while confirmed < channels.len() {
        if reader.next_line().await.unwrap().unwrap().starts_with(':') {
            confirmed += 1;
        }
    }
    let sink = lines.clone();
    tokio::spawn(async move {
        let _writer = writer;
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// `flowgate migrate` then `flowgate api-server` on a throwaway PostgreSQL, with Redis when it
/// runs.
async fn server_api_server(engine: Engine) -> Option<(Target, ThrowawayDb)> {
    let pg = ThrowawayDb::create_on(engine).await?;
    let dir = TempDir::new();
    let secret = "guardrails-test-key-hash-secret";
    let redis = redis_url();
    let prefix = format!("{}:", pg.name);
    let use_redis = require_redis().await;
    let mut extra = vec![("DATABASE_URL", pg.url.as_str()), ("FLOWGATE__SECURITY__KEY_HASH_SECRET", secret)];
    if use_redis {
        extra.push(("KEYSTORE_REDIS_URL", redis.as_str()));
        extra.push(("FLOWGATE__REDIS__PREFIX", prefix.as_str()));
    }
    let env = env(&dir, &extra);
    let migrate = FlowgateProcess::command(&["migrate"], &env).output().await.unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let published = if use_redis {
        Some(subscribe(&[format!("{prefix}guardrails:changed"), format!("{prefix}policies:changed")]).await)
    } else {
        None
    };
    let process = FlowgateProcess::spawn(&["api-server"], &env, &["api-server"]).await;
    let db = connect(Some(&pg.url), &dir).await;
    let api = process.url("api-server");
    let target = Target {
        process,
        api,
        db,
        secret: SecretString::from(secret.to_owned()),
        sqlite_files: Vec::new(),
        published,
        env,
        dir,
    };
    Some((target, pg))
}

impl Target {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value, String) {
        let mut request = http_client().request(method, format!("{}{path}", self.api)).bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value, text)
    }

    /// The sealed token column of guardrail `name`.
    async fn sealed(&self, name: &str) -> Option<Vec<u8>> {
        let row = sqlx::query(&self.db.sql("SELECT http_token_sealed FROM guardrails WHERE name = $1"))
            .bind(name)
            .fetch_one(self.db.pool())
            .await
            .unwrap();
        row.try_get::<Option<Vec<u8>>, _>(0).unwrap()
    }

    /// `needle` appears in no guardrail column, no database file and no log line.
    async fn assert_stored_nowhere(&self, needle: &str) {
        let rows = sqlx::query(&self.db.sql("SELECT * FROM guardrails")).fetch_all(self.db.pool()).await.unwrap();
        for row in &rows {
            for index in 0..row.len() {
                let text = if let Ok(text) = row.try_get::<Option<String>, _>(index) {
                    text.unwrap_or_default()
                } else if let Ok(bytes) = row.try_get::<Option<Vec<u8>>, _>(index) {
                    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
                } else {
                    continue;
                };
                assert!(!text.contains(needle), "column {index} holds the token in plaintext");
            }
        }
        for file in &self.sqlite_files {
            if let Ok(bytes) = std::fs::read(file) {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} holds the token",
                    file.display()
                );
            }
        }
        assert!(!self.process.log_text().contains(needle), "the logs hold the token");
    }

    /// Waits up to two seconds for `name` to be published (when Redis is used), then forgets.
    async fn assert_published(&self, name: &str) {
        let Some(lines) = &self.published else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            if lines.lock().unwrap().iter().any(|line| line == name) {
                lines.lock().unwrap().clear();
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "`{name}` was not published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn assert_error(status: u16, body: &Value, expected: u16, code: &str, needle: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "`{message}` should mention `{needle}`");
}

async fn builtins_are_seeded(target: &Target) {
    let (status, list, _) = target.call(Method::GET, "/api/guardrails", None).await;
    assert_eq!(status, 200, "{list}");
    let data = list["data"].as_array().unwrap();
    let builtins: Vec<(&str, &str)> = data
        .iter()
        .filter(|g| g["builtin"] == true)
        .map(|g| (g["name"].as_str().unwrap(), g["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(builtins, BUILTINS);
    let (_, pii, _) = target.call(Method::GET, "/api/guardrails/pii-redact", None).await;
    assert_eq!(pii["stages"], json!(["pre_call", "post_call", "during_call"]));
    assert_eq!(
        pii["runtime_config"],
        json!({"entities": ["email", "phone", "payment_card", "iban", "ssn", "ip_address"], "restore_output": true})
    );
    assert_eq!(pii["config_schema"]["type"], "object");
    assert_eq!(pii["config_schema"]["properties"]["entities"]["items"]["enum"][5], "ip_address");
    assert_eq!((pii["default_on"].clone(), pii["fail_open"].clone()), (json!(false), json!(false)));
    assert_eq!(pii["has_bearer_token"], false);
    let (_, secrets, _) = target.call(Method::GET, "/api/guardrails/secrets-detect", None).await;
    assert_eq!(secrets["runtime_config"], json!({"action": "block"}));
    let (_, injection, _) = target.call(Method::GET, "/api/guardrails/prompt-injection", None).await;
    assert_eq!(injection["runtime_config"], json!({"threshold": 0.8}));
    let (_, terms, _) = target.call(Method::GET, "/api/guardrails/blocked-terms", None).await;
    assert_eq!(terms["runtime_config"], json!({"terms": []}));
    let (_, only_pii, _) = target.call(Method::GET, "/api/guardrails?kind=pii", None).await;
    assert_eq!(only_pii["data"].as_array().unwrap().len(), 1);
}

/// Full CRUD of an HTTP guardrail with a token, and of a built-in's configuration.
async fn guardrail_crud(target: &Target) {
    let token = format!("tok-{}", uuid_like());
    let body = json!({
        "name": "acme-dlp", "kind": "http", "description": "Acme's DLP service",
        "stages": ["pre_call", "post_call"], "http_url": "https://dlp.acme.test/v1/check", "http_timeout_ms": 1500,
        "bearer_token": token, "fail_open": true, "config_schema": {"type": "object"}, "runtime_config": {"mode": "strict"},
    });
    let (status, created, text) = target.call(Method::POST, "/api/guardrails", Some(body.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert!(!text.contains(&token), "the token came back");
    assert_eq!(created["has_bearer_token"], true);
    assert_eq!(created["builtin"], false);
    assert_eq!(created["http_timeout_ms"], 1500);
    assert_eq!(created["fail_open"], true);
    assert!(created.get("bearer_token").is_none());
    target.assert_published("acme-dlp").await;

    // Sealed at rest under the server's derived key; nowhere in plaintext.
    let sealed = target.sealed("acme-dlp").await.unwrap();
    assert_eq!(sealed.len(), 12 + token.len() + 16);
    let key = SealKey::derive(&target.secret, GUARDRAIL_TOKEN_CONTEXT);
    assert_eq!(open(&key, &sealed).unwrap().expose_secret(), token);
    for path in ["/api/guardrails", "/api/guardrails/acme-dlp"] {
        let (_, _, text) = target.call(Method::GET, path, None).await;
        assert!(!text.contains(&token), "{path} returned the token");
    }
    target.assert_stored_nowhere(&token).await;

    let (status, body, _) = target.call(Method::POST, "/api/guardrails", Some(body)).await;
    assert_error(status, &body, 409, "conflict", "acme-dlp");

    // PATCH: a new token replaces the sealed one; null removes it; other fields change alone.
    let second = format!("tok2-{}", uuid_like());
    let (status, patched, text) = target
        .call(Method::PATCH, "/api/guardrails/acme-dlp", Some(json!({"bearer_token": second, "http_timeout_ms": null})))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert!(!text.contains(&second));
    assert_eq!(patched["http_timeout_ms"], 5000);
    assert_eq!(patched["description"], "Acme's DLP service");
    assert_eq!(open(&key, &target.sealed("acme-dlp").await.unwrap()).unwrap().expose_secret(), second);
    target.assert_published("acme-dlp").await;
    let (_, cleared, _) =
        target.call(Method::PATCH, "/api/guardrails/acme-dlp", Some(json!({"bearer_token": null}))).await;
    assert_eq!(cleared["has_bearer_token"], false);
    assert!(target.sealed("acme-dlp").await.is_none());
    target.assert_stored_nowhere(&second).await;

    // A built-in can be configured, not renamed or deleted.
    let (status, pii, _) = target
        .call(
            Method::PATCH,
            "/api/guardrails/pii-redact",
            Some(json!({"runtime_config": {"entities": ["email"], "restore_output": false}, "default_on": true})),
        )
        .await;
    assert_eq!(status, 200, "{pii}");
    assert_eq!(pii["runtime_config"], json!({"entities": ["email"], "restore_output": false}));
    assert_eq!(pii["default_on"], true);
    target.assert_published("pii-redact").await;
    let (status, body, _) = target.call(Method::DELETE, "/api/guardrails/pii-redact", None).await;
    assert_error(status, &body, 409, "conflict", "built-in");

    // Validation errors name the field; none is a 500.
    for (method, path, body, needle) in [
        (Method::POST, "/api/guardrails", json!({"name": "Bad_Name", "kind": "pii"}), "`name` must be kebab-case"),
        (Method::POST, "/api/guardrails", json!({"name": "x", "kind": "regex"}), "unknown variant `regex`"),
        (
            Method::POST,
            "/api/guardrails",
            json!({"name": "x", "kind": "pii", "runtime_config": {"entities": ["dna"]}}),
            "`runtime_config.entities[0]` must be one of",
        ),
        (
            Method::POST,
            "/api/guardrails",
            json!({"name": "x", "kind": "prompt_injection", "runtime_config": {"threshold": 2}}),
            "`runtime_config.threshold` must be at most 1",
        ),
        (Method::POST, "/api/guardrails", json!({"name": "x", "kind": "http"}), "`http_url` is required"),
        (
            Method::POST,
            "/api/guardrails",
            json!({"name": "x", "kind": "http", "http_url": "https://u:p@h/"}),
            "must not contain credentials",
        ),
        (
            Method::POST,
            "/api/guardrails",
            json!({"name": "x", "kind": "secrets", "bearer_token": "abc"}),
            "`bearer_token` applies only to http",
        ),
        (
            Method::POST,
            "/api/guardrails",
            json!({"name": "x", "kind": "pii", "stages": ["later"]}),
            "unknown variant `later`",
        ),
        (Method::PATCH, "/api/guardrails/pii-redact", json!({"name": "pii"}), "`name` cannot be changed"),
        (Method::PATCH, "/api/guardrails/pii-redact", json!({"kind": "http"}), "`kind` cannot be changed"),
        (Method::PATCH, "/api/guardrails/acme-dlp", json!({"stages": ["during_call"]}), "not supported by http"),
        (Method::PATCH, "/api/guardrails/pii-redact", json!({"colour": 1}), "unknown field `colour`"),
    ] {
        let (status, response, _) = target.call(method.clone(), path, Some(body.clone())).await;
        assert_eq!(status, 400, "{method} {path} {body}: {response}");
        let message = response["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: `{message}` should mention `{needle}`");
    }
    let (status, body, _) = target.call(Method::PATCH, "/api/guardrails/nope", Some(json!({}))).await;
    assert_error(status, &body, 404, "not_found", "guardrail `nope` not found");

    let (status, _, _) = target.call(Method::DELETE, "/api/guardrails/acme-dlp", None).await;
    assert_eq!(status, 204);
    target.assert_published("acme-dlp").await;
    let (status, body, _) = target.call(Method::GET, "/api/guardrails/acme-dlp", None).await;
    assert_error(status, &body, 404, "not_found", "acme-dlp");
    let unauthenticated = http_client().get(format!("{}/api/guardrails", target.api)).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

async fn policy_crud(target: &Target) {
    let document = json!({"default": "allow", "rules": [
        {"name": "deny-injection", "when": {"finding": "prompt_injection", "min_score": 0.8}, "action": "deny",
         "reason": "prompt injection"},
        {"name": "local-for-pii", "when": {"finding": "email", "model": "gpt-4*"}, "action": "reroute",
         "reroute_model": "local-llm"},
    ]});
    let (status, created, _) =
        target.call(Method::POST, "/api/policies", Some(json!({"name": "strict", "document": document}))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["document"]["name"], "strict");
    assert_eq!(created["document"]["rules"][1]["reroute_model"], "local-llm");
    target.assert_published("strict").await;
    let (status, body, _) =
        target.call(Method::POST, "/api/policies", Some(json!({"name": "strict", "document": {}}))).await;
    assert_error(status, &body, 409, "conflict", "strict");

    let (status, patched, _) = target
        .call(Method::PATCH, "/api/policies/strict", Some(json!({"document": {"default": "deny", "rules": []}})))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["document"], json!({"name": "strict", "default": "deny", "rules": []}));
    target.assert_published("strict").await;
    let (_, again, _) = target.call(Method::PATCH, "/api/policies/strict", Some(json!({"document": {}}))).await;
    assert_eq!(again["version"], 3);
    let (_, list, _) = target.call(Method::GET, "/api/policies", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    for (body, needle) in [
        (
            json!({"name": "p", "document": {"rules": [{"name": "r", "action": "reroute"}]}}),
            "`document.rules[0].reroute_model` is required",
        ),
        (
            json!({"name": "p", "document": {"rules": [{"name": "r", "action": "explode"}]}}),
            "`document.rules[0].action` unknown variant `explode`",
        ),
        (
            json!({"name": "p", "document": {"rules": [{"name": "r", "action": "deny"}, {"name": "r", "action": "flag"}]}}),
            "`document.rules[1].name` `r` is used twice",
        ),
        (
            json!({"name": "p", "document": {"rules": [{"name": "r", "action": "deny", "when": {"min_count": 3}}]}}),
            "`document.rules[0].when` min_score/min_count need `finding`",
        ),
        (
            json!({"name": "p", "document": {"rules": [{"name": "r", "action": "deny", "when": {"finding": "x", "min_score": 1.5}}]}}),
            "`document.rules[0].when.min_score` must be between 0 and 1",
        ),
        (
            json!({"name": "p", "document": {"rules": [{"name": "r", "action": "deny", "when": {"user": "x"}}]}}),
            "`document.rules[0].when.user` unknown field `user`",
        ),
        (json!({"name": "p", "document": {"default": "maybe"}}), "`document.default` unknown variant `maybe`"),
        (json!({"name": "p", "document": {"name": "q"}}), "`document.name` must be `p`"),
        (json!({"name": "p"}), "missing field `document`"),
    ] {
        let (status, response, _) = target.call(Method::POST, "/api/policies", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {response}");
        let message = response["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: `{message}` should mention `{needle}`");
    }
    let (status, body, _) = target
        .call(
            Method::PATCH,
            "/api/policies/strict",
            Some(json!({"document": {"rules": [{"name": "", "action": "deny"}]}})),
        )
        .await;
    assert_error(status, &body, 400, "invalid_field", "`document.rules[0].name` must not be empty");
    let (_, unchanged, _) = target.call(Method::GET, "/api/policies/strict", None).await;
    assert_eq!(unchanged["version"], 3, "a rejected document changes nothing");

    let (status, _, _) = target.call(Method::DELETE, "/api/policies/strict", None).await;
    assert_eq!(status, 204);
    target.assert_published("strict").await;
    let (status, body, _) = target.call(Method::GET, "/api/policies/strict", None).await;
    assert_error(status, &body, 404, "not_found", "policy `strict` not found");
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{nanos:x}{:x}", std::process::id())
}

#[tokio::test]
async fn guardrail_catalog_and_policies_on_sqlite() {
    let target = sqlite_all().await;
    builtins_are_seeded(&target).await;
    guardrail_crud(&target).await;
    policy_crud(&target).await;

    // A restart seeds nothing new and keeps the built-ins' configuration.
    let Target { mut process, env, dir, .. } = target;
    process.sigterm();
    assert_eq!(process.wait(Duration::from_secs(20)).await, Some(0));
    let process = FlowgateProcess::spawn(&["all"], &env, &["api-server"]).await;
    let api = process.url("api-server");
    let target = Target {
        process,
        api,
        db: connect(None, &dir).await,
        secret: SecretString::from(String::new()),
        sqlite_files: Vec::new(),
        published: None,
        env,
        dir,
    };
    let (_, list, _) = target.call(Method::GET, "/api/guardrails", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 4);
    let (_, pii, _) = target.call(Method::GET, "/api/guardrails/pii-redact", None).await;
    assert_eq!(pii["runtime_config"], json!({"entities": ["email"], "restore_output": false}));
    assert!(!target.process.log_text().contains("built-in guardrails added"), "nothing was seeded again");
}

#[tokio::test]
async fn guardrail_catalog_and_policies_on_postgres() {
    guardrail_catalog_and_policies_on(Engine::Postgres).await;
}

#[tokio::test]
async fn guardrail_catalog_and_policies_on_mariadb() {
    guardrail_catalog_and_policies_on(Engine::MySql).await;
}

async fn guardrail_catalog_and_policies_on(engine: Engine) {
    let Some((target, pg)) = server_api_server(engine).await else { return };
    builtins_are_seeded(&target).await;
    guardrail_crud(&target).await;
    policy_crud(&target).await;
    drop(target);
    pg.drop_db().await;
}
