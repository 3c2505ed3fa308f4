//! The management API for virtual keys and tenants, its OpenAPI document and the CLI, against the
//! real binary: on the embedded SQLite database (`all`) and on real PostgreSQL (`migrate` then
//! `api-server`, with Redis when it is running).

use std::path::PathBuf;
use std::time::Duration;

use flowgate_common::keys::KeyHasher;
use flowgate_db::Database;
use flowgate_db::sqlx::{self, Column, Row};
use flowgate_proto::keys::key_service_client::KeyServiceClient;
use flowgate_proto::keys::{ResolveKeyRequest, VirtualKey};
use flowgate_test_utils::{
    Engine, FlowgateProcess, TempDir, ThrowawayDb, base_env, http_client, internal_request, redis_url, require_redis,
};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const KEYS: &str = "/api/enterprise/vkeys";
const TENANTS: &str = "/api/enterprise/tenants";

/// A running server and what the test needs to look behind it.
struct Target {
    process: FlowgateProcess,
    api: String,
    admin: String,
    hasher: KeyHasher,
    db: Database,
    /// The SQLite file (and its WAL), scanned byte by byte for plaintext keys.
    sqlite_files: Vec<PathBuf>,
    /// Messages seen on Redis `{prefix}keys:invalidate`, when Redis is used.
    invalidations: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    dir: TempDir,
}

fn env_with(dir: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir.path());
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

fn read_secret(dir: &TempDir, file: &str) -> String {
    std::fs::read_to_string(dir.path().join(file)).unwrap().trim().to_owned()
}

async fn connect(url: Option<&str>, dir: &TempDir) -> Database {
    let url = url.map(|u| SecretString::from(u.to_owned()));
    Database::connect(url.as_ref(), dir.path(), 2, Duration::from_secs(5)).await.unwrap()
}

/// `flowgate all` on a fresh data directory: SQLite, generated admin key and hash secret.
async fn sqlite_all() -> Target {
    let dir = TempDir::new();
    let process = FlowgateProcess::spawn(&["all"], &env_with(&dir, &[]), &["api-server", "proxy"]).await;
    let admin = read_secret(&dir, "admin_api_key");
    let hasher = KeyHasher::new(&SecretString::from(read_secret(&dir, "key_hash_secret")));
    let db = connect(None, &dir).await;
    let file = dir.path().join("flowgate.db");
    let sqlite_files = vec![file.clone(), PathBuf::from(format!("{}-wal", file.display()))];
    let api = process.url("api-server");
    Target { process, api, admin, hasher, db, sqlite_files, invalidations: None, dir }
}

/// Subscribes to `channel` on Redis with a raw RESP connection; every line received is kept.
async fn subscribe(channel: &str) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let addr = redis_url().trim_start_matches("redis://").split('/').next().unwrap_or("127.0.0.1:6379").to_owned();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let command = format!("*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n", channel.len());
    writer.write_all(command.as_bytes()).await.unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut reader = BufReader::new(reader).lines();
    // The confirmation ends with the subscription count, `:1`.
    while let Some(line) = reader.next_line().await.unwrap() {
        if line.starts_with(':') {
            break;
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

/// `flowgate migrate`, then `flowgate api-server` alone, on a throwaway PostgreSQL database (with
/// Redis when it runs). `None` when PostgreSQL is not available outside CI.
async fn server_api_server(engine: Engine) -> Option<(Target, ThrowawayDb)> {
    let pg = ThrowawayDb::create_on(engine).await?;
    let dir = TempDir::new();
    let admin = "test-admin-key-for-postgres";
    let secret = "test-key-hash-secret-for-postgres";
    let mut extra = vec![
        ("DATABASE_URL", pg.url.as_str()),
        ("ADMIN_API_KEY", admin),
        ("FLOWGATE__SECURITY__KEY_HASH_SECRET", secret),
    ];
    let redis = redis_url();
    // A Redis key prefix of this test's own, so no other test's messages mix in.
    let prefix = format!("{}:", pg.name);
    let use_redis = require_redis().await;
    if use_redis {
        extra.push(("KEYSTORE_REDIS_URL", redis.as_str()));
        extra.push(("FLOWGATE__REDIS__PREFIX", prefix.as_str()));
    }
    let env = env_with(&dir, &extra);
    let migrate = FlowgateProcess::command(&["migrate"], &env).output().await.unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let invalidations = if use_redis { Some(subscribe(&format!("{prefix}keys:invalidate")).await) } else { None };
    let process = FlowgateProcess::spawn(&["api-server"], &env, &["api-server"]).await;
    let db = connect(Some(&pg.url), &dir).await;
    let api = process.url("api-server");
    let target = Target {
        process,
        api,
        admin: admin.to_owned(),
        hasher: KeyHasher::new(&SecretString::from(secret.to_owned())),
        db,
        sqlite_files: Vec::new(),
        invalidations,
        dir,
    };
    Some((target, pg))
}

impl Target {
    /// Sends `body` (raw, so malformed JSON can be sent) with the admin key.
    async fn call(&self, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call_as(Some(&self.admin), method, path, body).await
    }

    async fn call_as(&self, admin: Option<&str>, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut request = http_client().request(method, format!("{}{path}", self.api));
        if let Some(admin) = admin {
            request = request.bearer_auth(admin);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    async fn create_key(&self, body: Value) -> Value {
        let (status, created) = self.call(Method::POST, KEYS, Some(&body.to_string())).await;
        assert_eq!(status, 201, "{created}");
        created
    }

    async fn resolve(&self, plaintext: &str) -> Option<VirtualKey> {
        let mut client = KeyServiceClient::connect(self.api.clone()).await.unwrap();
        let request = ResolveKeyRequest { key_hash: self.hasher.hash(plaintext) };
        client.resolve_key(internal_request(request)).await.unwrap().into_inner().key
    }

    /// Asserts `needle` appears in no column of any `virtual_keys` row, nor anywhere in the SQLite
    /// file, nor in the process logs.
    async fn assert_stored_nowhere(&self, needle: &str) {
        let rows = sqlx::query(&self.db.sql("SELECT * FROM virtual_keys")).fetch_all(self.db.pool()).await.unwrap();
        assert!(!rows.is_empty());
        for row in &rows {
            for (index, column) in row.columns().iter().enumerate() {
                let text = if let Ok(text) = row.try_get::<Option<String>, _>(index) {
                    text.unwrap_or_default()
                } else if let Ok(bytes) = row.try_get::<Option<Vec<u8>>, _>(index) {
                    String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
                } else {
                    continue;
                };
                assert!(!text.contains(needle), "column {} holds the plaintext key", column.name());
            }
        }
        for file in &self.sqlite_files {
            if let Ok(bytes) = std::fs::read(file) {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} holds the key",
                    file.display()
                );
            }
        }
        assert!(!self.process.log_text().contains(needle), "the logs hold the plaintext key");
    }

    /// Waits up to two seconds for `key_id` to be published on `keys:invalidate` (when Redis is
    /// used), then forgets what was seen.
    async fn assert_invalidated(&self, key_id: &str) {
        let Some(lines) = &self.invalidations else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            if lines.lock().unwrap().iter().any(|line| line == key_id) {
                lines.lock().unwrap().clear();
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{key_id} was not published on keys:invalidate");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str, needle: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "`{message}` should mention `{needle}`");
}

/// Every rule of the key API, as a client meets it.
async fn exercise(target: &Target) {
    admin_key_is_required(target).await;
    let (key_id, plaintext) = created_key_is_shown_once(target).await;
    bad_requests_are_400s(target, &key_id).await;
    patch_updates_and_clears(target, &key_id).await;
    budget_reports_the_current_period(target, &key_id).await;
    paging_walks_every_key(target).await;
    rotation_honours_the_grace_period(target, &key_id, &plaintext).await;
    unknown_ids_are_404s(target).await;
    every_documented_route_is_served(target).await;
}

async fn admin_key_is_required(target: &Target) {
    for (admin, code) in [(None, "missing_admin_key"), (Some("wrong-admin-key"), "invalid_admin_key")] {
        for (method, path) in [(Method::GET, KEYS), (Method::POST, KEYS), (Method::GET, TENANTS)] {
            let (status, body) = target.call_as(admin, method, path, Some(r#"{"name": "x"}"#)).await;
            assert_error(status, &body, 401, code, "");
        }
    }
    // A known path with the wrong method: JSON 405.
    let (status, body) = target.call(Method::PUT, KEYS, Some("{}")).await;
    assert_error(status, &body, 405, "method_not_allowed", "PUT");
    // The document is public; health too.
    let (status, doc) = target.call_as(None, Method::GET, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
}

async fn created_key_is_shown_once(target: &Target) -> (String, String) {
    let created = target
        .create_key(json!({
            "name": "billing-service",
            "budget_usd": 25.5,
            "budget_period": "monthly",
            "rpm": 60, "tpm": 100000, "requests_per_hour": 1000, "max_parallel_requests": 4,
            "allowed_models": ["gpt-4o-mini", "claude-haiku"],
            "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"],
            "expires_at": "2099-01-01T00:00:00Z",
            "metadata": {"team": "billing"},
            "guardrail_policy": {"pii": "redact"}
        }))
        .await;
    let plaintext = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(flowgate_common::keys::parse(&plaintext).unwrap(), id);
    assert_eq!(created["name"], "billing-service");
    assert_eq!(created["status"], "active");
    assert_eq!(created["budget_usd"], 25.5);
    assert_eq!(created["budget_period"], "monthly");
    assert_eq!(created["rpm"], 60);
    assert_eq!(created["max_parallel_requests"], 4);
    assert_eq!(created["allowed_models"], json!(["gpt-4o-mini", "claude-haiku"]));
    assert_eq!(created["ip_allowlist"], json!(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]));
    assert_eq!(created["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(created["metadata"], json!({"team": "billing"}));
    assert_eq!(created["guardrail_policy"], json!({"pii": "redact"}));

    // The default tenant was created on demand and owns the key.
    let (status, tenants) = target.call(Method::GET, TENANTS, None).await;
    assert_eq!(status, 200);
    let default = tenants["data"].as_array().unwrap().iter().find(|t| t["name"] == "default").unwrap();
    assert_eq!(created["tenant_id"], default["id"]);

    // Never again: not by id, not in the list.
    let secret_part = &plaintext[plaintext.find('_').unwrap() + 1..];
    let (status, fetched) = target.call(Method::GET, &format!("{KEYS}/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(fetched.get("key").is_none() && fetched.get("key_hash").is_none(), "{fetched}");
    assert!(!fetched.to_string().contains(secret_part));
    let mut without_key = created.clone();
    without_key.as_object_mut().unwrap().remove("key");
    assert_eq!(fetched, without_key, "GET shows every field create showed, but the key");
    let (_, list) = target.call(Method::GET, KEYS, None).await;
    assert!(list["data"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str()));
    assert!(!list.to_string().contains(secret_part));

    // Stored only as HMAC-SHA256 under the server secret.
    let row = sqlx::query(&target.db.sql("SELECT key_hash, previous_key_hash FROM virtual_keys WHERE id = $1"))
        .bind(&id)
        .fetch_one(target.db.pool())
        .await
        .unwrap();
    assert_eq!(row.try_get::<Vec<u8>, _>("key_hash").unwrap(), target.hasher.hash(&plaintext));
    assert_eq!(row.try_get::<Option<Vec<u8>>, _>("previous_key_hash").unwrap(), None);
    target.assert_stored_nowhere(&plaintext).await;
    target.assert_stored_nowhere(secret_part).await;

    // The proxy's resolver finds it by that hash.
    let resolved = target.resolve(&plaintext).await.expect("the new key resolves");
    assert_eq!(resolved.id, id);
    assert_eq!(resolved.rpm, 60);
    assert_eq!(resolved.budget_usd, 25.5);
    assert_eq!(resolved.allowed_models, vec!["gpt-4o-mini", "claude-haiku"]);
    assert!(!resolved.revoked);
    (id, plaintext)
}

async fn bad_requests_are_400s(target: &Target, key_id: &str) {
    for (body, code, needle) in [
        (r#"{"name": "x""#, "invalid_json", "EOF"),
        ("not json", "invalid_json", "expected"),
        ("", "invalid_json", "empty"),
        (r#"{"name": 5}"#, "invalid_request", "name: invalid type"),
        (r#"{"name": "x", "rpm": "fast"}"#, "invalid_request", "rpm: invalid type"),
        (r#"{"name": "x", "budget_usd": "ten"}"#, "invalid_request", "budget_usd"),
        (r#"{"name": "x", "allowed_models": "gpt-4o"}"#, "invalid_request", "allowed_models"),
        (r#"{"name": "x", "budget_period": "hourly"}"#, "invalid_request", "unknown variant `hourly`"),
        (r#"{"name": "x", "colour": "red"}"#, "invalid_request", "unknown field `colour`"),
        (r#"{"rpm": 5}"#, "invalid_request", "missing field `name`"),
        (r#"{"name": "x", "ip_allowlist": ["10.0.0.0/33"]}"#, "invalid_field", "ip_allowlist[0]"),
        (r#"{"name": "x", "ip_allowlist": ["10.0.0.1", "example.com"]}"#, "invalid_field", "ip_allowlist[1]"),
        (r#"{"name": "x", "ip_allowlist": ["2001:db8::/129"]}"#, "invalid_field", "ip_allowlist[0]"),
        (r#"{"name": "x", "budget_usd": -5}"#, "invalid_field", "budget_usd"),
        (r#"{"name": "x", "rpm": 0}"#, "invalid_field", "rpm"),
        (r#"{"name": "x", "expires_at": "next tuesday"}"#, "invalid_request", "expires_at"),
        (r#"{"name": "x", "tenant_id": "no-such-tenant"}"#, "invalid_field", "tenant_id"),
        (r#"{"name": "  "}"#, "invalid_field", "name"),
    ] {
        let (status, response) = target.call(Method::POST, KEYS, Some(body)).await;
        assert_error(status, &response, 400, code, needle);
    }
    let path = format!("{KEYS}/{key_id}");
    for (body, needle) in [
        (r#"{"name": null}"#, "name"),
        (r#"{"tenant_id": null}"#, "tenant_id"),
        (r#"{"budget_period": "fortnightly"}"#, "fortnightly"),
        (r#"{"ip_allowlist": ["300.1.1.1"]}"#, "ip_allowlist[0]"),
        (r#"{"key": "sk-fg-x"}"#, "unknown field `key`"),
    ] {
        let (status, response) = target.call(Method::PATCH, &path, Some(body)).await;
        assert_eq!(status, 400, "{body}: {response}");
        assert!(response["error"]["message"].as_str().unwrap().contains(needle), "{body}: {response}");
    }
    let (status, response) =
        target.call(Method::POST, &format!("{path}/rotate"), Some(r#"{"grace_period_secs": "soon"}"#)).await;
    assert_error(status, &response, 400, "invalid_request", "grace_period_secs");
    let (status, response) = target.call(Method::GET, &format!("{KEYS}?limit=0"), None).await;
    assert_error(status, &response, 400, "invalid_field", "limit");
    let (status, response) = target.call(Method::GET, &format!("{KEYS}?cursor=garbage"), None).await;
    assert_error(status, &response, 400, "invalid_field", "cursor");
    let (status, response) = target.call(Method::GET, &format!("{KEYS}?colour=red"), None).await;
    assert_error(status, &response, 400, "invalid_request", "colour");
    let (status, response) =
        target.call(Method::POST, TENANTS, Some(r#"{"name": "t", "budget_period": "yearly"}"#)).await;
    assert_error(status, &response, 400, "invalid_request", "yearly");
}

async fn patch_updates_and_clears(target: &Target, key_id: &str) {
    let path = format!("{KEYS}/{key_id}");
    let (status, patched) = target
        .call(
            Method::PATCH,
            &path,
            Some(r#"{"rpm": 120, "tpm": null, "metadata": null, "allowed_models": ["gpt-4o"], "name": "billing-v2"}"#),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["rpm"], 120);
    assert!(patched["tpm"].is_null());
    assert_eq!(patched["metadata"], json!({}));
    assert_eq!(patched["allowed_models"], json!(["gpt-4o"]));
    assert_eq!(patched["name"], "billing-v2");
    assert_eq!(patched["budget_usd"], 25.5, "absent fields are left alone");
    assert_eq!(patched["ip_allowlist"].as_array().unwrap().len(), 3);
    assert!(patched.get("key").is_none());
    target.assert_invalidated(key_id).await;

    // Moving the key to another tenant.
    let (status, tenant) = target.call(Method::POST, TENANTS, Some(r#"{"name": "patch-target"}"#)).await;
    assert_eq!(status, 201, "{tenant}");
    let body = json!({"tenant_id": tenant["id"]}).to_string();
    let (status, moved) = target.call(Method::PATCH, &path, Some(&body)).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["tenant_id"], tenant["id"]);

    // A duplicate tenant name is a conflict; a tenant patch changes only what it names.
    let (status, response) = target.call(Method::POST, TENANTS, Some(r#"{"name": "patch-target"}"#)).await;
    assert_error(status, &response, 409, "conflict", "already exists");
    let tenant_path = format!("{TENANTS}/{}", tenant["id"].as_str().unwrap());
    let (status, patched) =
        target.call(Method::PATCH, &tenant_path, Some(r#"{"budget_usd": 500, "budget_period": "weekly"}"#)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!((patched["budget_usd"].as_f64(), patched["budget_period"].as_str()), (Some(500.0), Some("weekly")));
    assert_eq!(patched["name"], "patch-target");
    let (status, fetched) = target.call(Method::GET, &tenant_path, None).await;
    assert_eq!((status, fetched), (200, patched));
}

async fn budget_reports_the_current_period(target: &Target, key_id: &str) {
    let now = flowgate_db::now_millis();
    let (start, end) = flowgate_common::budget::period_bounds(flowgate_common::budget::BudgetPeriod::Monthly, now);
    let (status, before) = target.call(Method::GET, &format!("{KEYS}/{key_id}/budget"), None).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["budget_usd"], 25.5);
    assert_eq!(before["spent_usd"], 0.0);
    assert_eq!(before["remaining_usd"], 25.5);
    assert_eq!(before["budget_period"], "monthly");
    let period_start = before["period_start"].as_str().unwrap();
    assert!(period_start.ends_with("-01T00:00:00Z"), "{period_start}");
    assert!(before["period_end"].as_str().unwrap().ends_with("-01T00:00:00Z"), "{before}");

    // Spend settled by the proxy in this period (and some in the last one, which must not count).
    let tenant: String = sqlx::query(&target.db.sql("SELECT tenant_id FROM virtual_keys WHERE id = $1"))
        .bind(key_id)
        .fetch_one(target.db.pool())
        .await
        .unwrap()
        .try_get("tenant_id")
        .unwrap();
    for (period_start, nanos) in [(start, 10_250_000_000_i64), (start - 86_400_000, 99_000_000_000)] {
        sqlx::query(&target.db.sql(
            "INSERT INTO spend (key_id, tenant_id, period_start, spent_nanos, prompt_tokens, completion_tokens, \
             requests, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        ))
        .bind(key_id)
        .bind(&tenant)
        .bind(period_start)
        .bind(nanos)
        .bind(1200_i64)
        .bind(300_i64)
        .bind(7_i64)
        .bind(now)
        .execute(target.db.pool())
        .await
        .unwrap();
    }
    let (_, after) = target.call(Method::GET, &format!("{KEYS}/{key_id}/budget"), None).await;
    assert_eq!(after["spent_usd"], 10.25, "{after}");
    assert_eq!(after["remaining_usd"], 15.25);
    assert_eq!(after["requests"], 7);
    assert_eq!(after["period_start"], before["period_start"]);
    assert!(end.is_some());

    // A key without a budget: spend shown, nothing remaining to compute.
    let other = target.create_key(json!({"name": "no-budget"})).await;
    let (_, budget) = target.call(Method::GET, &format!("{KEYS}/{}/budget", other["id"].as_str().unwrap()), None).await;
    assert!(budget["budget_usd"].is_null() && budget["remaining_usd"].is_null(), "{budget}");
    assert_eq!(budget["budget_period"], "total");
    assert_eq!(budget["period_start"], "1970-01-01T00:00:00Z");
    assert!(budget["period_end"].is_null());
}

async fn paging_walks_every_key(target: &Target) {
    let (status, tenant) = target.call(Method::POST, TENANTS, Some(r#"{"name": "paging", "budget_usd": 100}"#)).await;
    assert_eq!(status, 201, "{tenant}");
    let tenant_id = tenant["id"].as_str().unwrap();
    let mut created = Vec::new();
    for n in 0..5 {
        let key = target.create_key(json!({"name": format!("page-{n}"), "tenant_id": tenant_id})).await;
        created.push(key["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("{KEYS}?tenant_id={tenant_id}&limit=2");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = target.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        for key in data {
            assert_eq!(key["tenant_id"], tenant_id);
            assert!(key.get("key").is_none());
            seen.push(key["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    // Every key once (keys created in the same millisecond are ordered by id).
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    sorted_seen.dedup();
    created.sort();
    assert_eq!(sorted_seen, created, "every key exactly once: {seen:?}");
}

async fn rotation_honours_the_grace_period(target: &Target, key_id: &str, first: &str) {
    let rotate = format!("{KEYS}/{key_id}/rotate");
    // With a grace period: both keys work until it ends, then only the new one.
    let (status, rotated) = target.call(Method::POST, &rotate, Some(r#"{"grace_period_secs": 2}"#)).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(rotated["id"], key_id, "rotation keeps the id");
    assert!(rotated["previous_key_expires_at"].is_string(), "{rotated}");
    target.assert_invalidated(key_id).await;
    assert_eq!(target.resolve(first).await.map(|k| k.id).as_deref(), Some(key_id), "old key during grace");
    assert_eq!(target.resolve(&second).await.map(|k| k.id).as_deref(), Some(key_id));
    let (_, fetched) = target.call(Method::GET, &format!("{KEYS}/{key_id}"), None).await;
    assert!(fetched.get("key").is_none());
    assert!(!fetched.to_string().contains(&second[second.find('_').unwrap() + 1..]));
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(target.resolve(first).await.is_none(), "old key after grace");
    assert!(target.resolve(&second).await.is_some());

    // Without one: the old key stops at once.
    let (status, rotated) = target.call(Method::POST, &rotate, None).await;
    assert_eq!(status, 200, "{rotated}");
    let third = rotated["key"].as_str().unwrap().to_owned();
    assert!(target.resolve(&second).await.is_none(), "old key right after a rotation without grace");
    assert!(target.resolve(&third).await.is_some());
    assert!(rotated["previous_key_expires_at"].is_null());
    let row = sqlx::query(&target.db.sql("SELECT key_hash FROM virtual_keys WHERE id = $1"))
        .bind(key_id)
        .fetch_one(target.db.pool())
        .await
        .unwrap();
    assert_eq!(row.try_get::<Vec<u8>, _>("key_hash").unwrap(), target.hasher.hash(&third));
    for key in [first, second.as_str(), third.as_str()] {
        target.assert_stored_nowhere(key).await;
    }

    // Revoke: at once, idempotent, and final.
    let (status, revoked) = target.call(Method::POST, &format!("{KEYS}/{key_id}/revoke"), None).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    target.assert_invalidated(key_id).await;
    assert!(target.resolve(&third).await.is_some_and(|k| k.revoked), "the proxy sees it revoked");
    let (status, again) = target.call(Method::POST, &format!("{KEYS}/{key_id}/revoke"), None).await;
    assert_eq!(status, 200);
    assert_eq!(again["revoked_at"], revoked["revoked_at"], "the first revocation time is kept");
    let (status, response) = target.call(Method::POST, &rotate, None).await;
    assert_error(status, &response, 409, "conflict", "revoked");
}

async fn unknown_ids_are_404s(target: &Target) {
    let missing = "zzzzzzzzzzzz";
    for (method, path, body) in [
        (Method::GET, format!("{KEYS}/{missing}"), None),
        (Method::PATCH, format!("{KEYS}/{missing}"), Some(r#"{"rpm": 5}"#)),
        (Method::DELETE, format!("{KEYS}/{missing}"), None),
        (Method::POST, format!("{KEYS}/{missing}/revoke"), None),
        (Method::POST, format!("{KEYS}/{missing}/rotate"), None),
        (Method::POST, format!("{KEYS}/not-a-key-id!/rotate"), None),
        (Method::GET, format!("{KEYS}/{missing}/budget"), None),
        (Method::GET, format!("{TENANTS}/{missing}"), None),
        (Method::PATCH, format!("{TENANTS}/{missing}"), Some(r#"{"name": "n"}"#)),
    ] {
        let (status, response) = target.call(method.clone(), &path, body).await;
        assert_error(status, &response, 404, "not_found", "not found");
        assert!(!response.to_string().contains("sk-fg-"), "{method} {path}");
    }

    // Delete: 204, then gone.
    let doomed = target.create_key(json!({"name": "doomed"})).await;
    let path = format!("{KEYS}/{}", doomed["id"].as_str().unwrap());
    let (status, body) = target.call(Method::DELETE, &path, None).await;
    assert_eq!((status, body), (204, Value::Null));
    target.assert_invalidated(doomed["id"].as_str().unwrap()).await;
    assert!(target.resolve(doomed["key"].as_str().unwrap()).await.is_none());
    let (status, _) = target.call(Method::GET, &path, None).await;
    assert_eq!(status, 404);
}

/// Every operation in the served OpenAPI document answers (not 404/405) with real ids.
async fn every_documented_route_is_served(target: &Target) {
    let (_, doc) = target.call(Method::GET, "/api/openapi.json", None).await;
    let key = target.create_key(json!({"name": "route-probe"})).await;
    let key_id = key["id"].as_str().unwrap();
    let (_, tenant) = target.call(Method::POST, TENANTS, Some(r#"{"name": "route-probe"}"#)).await;
    let tenant_id = tenant["id"].as_str().unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    assert!(operations.len() >= 16, "{operations:?}");
    // Deleting last keeps the key for the other probes.
    operations.sort_by_key(|(method, _)| method == "DELETE");
    for (method, path) in operations {
        let id = if path.starts_with(TENANTS) { tenant_id } else { key_id };
        let concrete = path.replace("{id}", id);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method != Method::GET && method != Method::DELETE).then_some("{}");
        let (status, response) = target.call(method.clone(), &concrete, body).await;
        // A 404 for a missing resource (a guardrail or policy named `{name}`) is an answer; only
        // the router's "no route" 404 means the route is not served.
        let unrouted =
            status == 404 && response["error"]["message"].as_str().is_some_and(|m| m.starts_with("no route for"));
        assert!(!unrouted && status != 405, "{method} {path} is documented but answered {status}: {response}");
    }
}

#[tokio::test]
async fn key_api_on_embedded_sqlite() {
    let target = sqlite_all().await;
    exercise(&target).await;
    // The SQLite file itself never held any plaintext key: checked inside `exercise`, on every
    // key; check once more for anything shaped like a key.
    for file in &target.sqlite_files {
        if let Ok(bytes) = std::fs::read(file) {
            assert!(!bytes.windows(6).any(|w| w == b"sk-fg-"), "{} holds a key", file.display());
        }
    }
    assert!(!target.process.log_text().contains("sk-fg-"));
    drop(target.dir);
}

#[tokio::test]
async fn key_api_on_postgres() {
    key_api_on(Engine::Postgres).await;
}

#[tokio::test]
async fn key_api_on_mariadb() {
    key_api_on(Engine::MySql).await;
}

async fn key_api_on(engine: Engine) {
    let Some((target, pg)) = server_api_server(engine).await else { return };
    exercise(&target).await;
    assert!(!target.process.log_text().contains("sk-fg-"));
    target.db.close().await;
    drop(target.process);
    pg.drop_db().await;
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

/// Runs `flowgate args…` as a client; returns (exit code, stdout JSON, stderr).
async fn cli(env: &[(String, String)], args: &[&str]) -> (i32, Value, String) {
    let output = FlowgateProcess::command(args, env).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), value, stderr)
}

#[tokio::test]
async fn cli_init_and_keys_against_a_running_all() {
    let target = sqlite_all().await;
    let mut env = env_with(&target.dir, &[]);
    env.push(("FLOWGATE_API_URL".to_owned(), target.api.clone()));

    // init: creates the default tenant and a first key, printed once...
    let (code, first, stderr) = cli(&env, &["init"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["status"], "created", "{first}");
    let plaintext = first["key"]["key"].as_str().unwrap().to_owned();
    let id = first["key"]["id"].as_str().unwrap().to_owned();
    assert!(stderr.contains("will not be shown again"), "{stderr}");
    assert!(!stderr.contains(&plaintext));
    let resolved = target.resolve(&plaintext).await.expect("the running server resolves the init key");
    assert_eq!(resolved.id, id);
    assert_eq!(resolved.tenant_id, first["tenant_id"].as_str().unwrap());
    // ... and a second init is a no-op that says so.
    let (code, second, stderr) = cli(&env, &["init"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(second, json!({"status": "already_initialised", "keys": 1}));
    assert!(stderr.contains("nothing to do"), "{stderr}");
    assert!(!second.to_string().contains("sk-fg-"));

    // keys create / list / revoke / rotate through the API.
    let (code, created, stderr) = cli(
        &env,
        &[
            "keys",
            "create",
            "--name",
            "cli-app",
            "--models",
            "gpt-4o,claude-haiku",
            "--budget-usd",
            "3.5",
            "--rpm",
            "30",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let cli_key = created["key"].as_str().unwrap().to_owned();
    let cli_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["allowed_models"], json!(["gpt-4o", "claude-haiku"]));
    assert_eq!(created["budget_usd"], 3.5);
    assert_eq!(created["tenant_id"], first["tenant_id"]);
    let (code, list, stderr) = cli(&env, &["keys", "list"]).await;
    assert_eq!(code, 0, "{stderr}");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().filter_map(|k| k["id"].as_str()).collect();
    assert_eq!(ids, vec![id.as_str(), cli_id.as_str()]);
    assert!(!list.to_string().contains("sk-fg-"), "list never shows keys");
    let (code, all, _) = cli(&env, &["keys", "list", "--all", "--limit", "1"]).await;
    assert_eq!(code, 0);
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let (code, revoked, stderr) = cli(&env, &["keys", "revoke", &cli_id]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(revoked["status"], "revoked");
    assert!(target.resolve(&cli_key).await.is_some_and(|k| k.revoked));
    let (code, rotated, stderr) = cli(&env, &["keys", "rotate", &id, "--grace-secs", "60"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(target.resolve(rotated["key"].as_str().unwrap()).await.is_some());
    assert!(target.resolve(&plaintext).await.is_some(), "the init key works during the grace period");

    // tenants create / list.
    let (code, tenant, stderr) = cli(&env, &["tenants", "create", "--name", "acme", "--budget-usd", "100"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(tenant["budget_usd"], 100.0);
    assert_eq!(tenant["store_prompts"], false);
    let (code, keeps, stderr) = cli(&env, &["tenants", "create", "--name", "keeps", "--store-prompts"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(keeps["store_prompts"], true);
    let (code, tenants, _) = cli(&env, &["tenants", "list"]).await;
    assert_eq!(code, 0);
    let names: Vec<&str> = tenants["data"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, vec!["default", "acme", "keeps"]);

    // Errors: non-zero, on stderr, with the API's code.
    let (code, _, stderr) = cli(&env, &["keys", "revoke", "zzzzzzzzzzzz"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("404") && stderr.contains("not_found"), "{stderr}");
    let mut wrong = env.clone();
    wrong.push(("ADMIN_API_KEY".to_owned(), "not-the-admin-key".to_owned()));
    let (code, _, stderr) = cli(&wrong, &["keys", "list"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("401") && stderr.contains("invalid_admin_key"), "{stderr}");
    let (code, _, stderr) = cli(&env, &["keys", "list", "--url", "http://127.0.0.1:1"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach the api-server"), "{stderr}");

    for key in [&plaintext, &cli_key] {
        target.assert_stored_nowhere(key).await;
    }
}

#[tokio::test]
async fn init_on_postgres_migrates_and_needs_the_hash_secret() {
    let Some(pg) = ThrowawayDb::create().await else { return };
    let dir = TempDir::new();
    // Without a hash secret a key would be useless to the servers: refuse.
    let env = env_with(&dir, &[("DATABASE_URL", &pg.url)]);
    let (code, _, stderr) = cli(&env, &["init"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("key_hash_secret"), "{stderr}");

    let secret = "init-test-hash-secret";
    let env = env_with(&dir, &[("DATABASE_URL", &pg.url), ("FLOWGATE__SECURITY__KEY_HASH_SECRET", secret)]);
    let (code, first, stderr) = cli(&env, &["init"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["status"], "created");
    let plaintext = first["key"]["key"].as_str().unwrap();
    let db = connect(Some(&pg.url), &dir).await;
    let row =
        sqlx::query(&db.sql("SELECT k.key_hash, t.name FROM virtual_keys k JOIN tenants t ON t.id = k.tenant_id"))
            .fetch_one(db.pool())
            .await
            .unwrap();
    let hasher = KeyHasher::new(&SecretString::from(secret.to_owned()));
    assert_eq!(row.try_get::<Vec<u8>, _>("key_hash").unwrap(), hasher.hash(plaintext));
    assert_eq!(row.try_get::<String, _>("name").unwrap(), "default");
    let (code, second, stderr) = cli(&env, &["init"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(second["status"], "already_initialised");
    db.close().await;
    pg.drop_db().await;
}
