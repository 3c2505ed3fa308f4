//! The management plane's read side of the audit trail, against the real binary: `/api/audit`
//! (filters, cursor paging over 10 000 rows, CSV/NDJSON export), `/api/analytics/spend`,
//! `/api/providers/perf`, `/api/health/comprehensive` and `/api/metacache/stats`.
//!
//! Rows are inserted straight into the database (SQLite file of `flowgate all`, or a throwaway
//! PostgreSQL behind `flowgate api-server`), so the expectations are computed from known data.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use flowgate_db::Database;
use flowgate_db::sqlx;
use flowgate_test_utils::{
    Engine, FlowgateProcess, TempDir, ThrowawayDb, base_env, http_client, redis_url, require_redis,
};
use secrecy::SecretString;
use serde_json::Value;

const ADMIN: &str = "test-admin-key-audit";
/// 2026-01-10T23:30:00Z: the generated rows run for about 55 minutes, across a UTC midnight.
const BASE_TS: i64 = 1_768_087_800_000;
const ROWS: usize = 10_000;

/// A running server and a direct connection to its database.
struct Target {
    process: FlowgateProcess,
    api: String,
    db: Database,
    _dir: TempDir,
}

async fn connect(url: Option<&str>, dir: &TempDir) -> Database {
    let url = url.map(|u| SecretString::from(u.to_owned()));
    Database::connect(url.as_ref(), dir.path(), 4, Duration::from_secs(5)).await.unwrap()
}

fn env(dir: &TempDir, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(dir.path());
    env.push(("ADMIN_API_KEY".into(), ADMIN.into()));
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// A free local port (bound and released; good enough for a test).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `flowgate all` on SQLite. With `fixed_ports`, every service gets a known port so the
/// api-server can reach the others for the comprehensive health check.
async fn sqlite_all(fixed_ports: bool) -> Target {
    let dir = TempDir::new();
    let ports: Vec<String> = (0..4).map(|_| if fixed_ports { free_port().to_string() } else { "0".into() }).collect();
    let extra = [
        ("FLOWGATE__PROXY__PORT", ports[0].as_str()),
        ("FLOWGATE__API_SERVER__PORT", ports[1].as_str()),
        ("FLOWGATE__COMPLIANCE__PORT", ports[2].as_str()),
        ("FLOWGATE__POLICY__PORT", ports[3].as_str()),
    ];
    let process = FlowgateProcess::spawn(&["all"], &env(&dir, &extra), &["api-server", "proxy"]).await;
    let db = connect(None, &dir).await;
    let api = process.url("api-server");
    Target { process, api, db, _dir: dir }
}

/// `flowgate migrate` then `flowgate api-server` on a throwaway PostgreSQL or MariaDB database
/// (with Redis when it runs). `None` when the server is unreachable outside CI.
async fn server_api_server(engine: Engine) -> Option<(Target, ThrowawayDb)> {
    let pg = ThrowawayDb::create_on(engine).await?;
    let dir = TempDir::new();
    let redis = redis_url();
    let prefix = format!("{}:", pg.name);
    let mut extra =
        vec![("DATABASE_URL", pg.url.as_str()), ("FLOWGATE__SECURITY__KEY_HASH_SECRET", "audit-api-secret")];
    if require_redis().await {
        extra.push(("KEYSTORE_REDIS_URL", redis.as_str()));
        extra.push(("FLOWGATE__REDIS__PREFIX", prefix.as_str()));
    }
    let env = env(&dir, &extra);
    let migrate = FlowgateProcess::command(&["migrate"], &env).output().await.unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let process = FlowgateProcess::spawn(&["api-server"], &env, &["api-server"]).await;
    let db = connect(Some(&pg.url), &dir).await;
    let api = process.url("api-server");
    Some((Target { process, api, db, _dir: dir }, pg))
}

impl Target {
    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response =
            http_client().get(format!("{}{path_and_query}", self.api)).bearer_auth(ADMIN).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get_raw(&self, path_and_query: &str) -> reqwest::Response {
        http_client().get(format!("{}{path_and_query}", self.api)).bearer_auth(ADMIN).send().await.unwrap()
    }

    /// Every item of `/api/audit?{query}`, following `next_cursor`.
    async fn page_all(&self, query: &str, limit: usize) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("/api/audit?limit={limit}");
            if !query.is_empty() {
                url.push('&');
                url.push_str(query);
            }
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let (status, page) = self.get(&url).await;
            assert_eq!(status, 200, "{url}: {page}");
            let page_items = page["items"].as_array().unwrap();
            assert!(page_items.len() <= limit);
            items.extend(page_items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(page_items.len(), limit, "only a full page has a next page");
                    cursor = Some(next.to_owned());
                }
                None => return items,
            }
        }
    }
}

/// One generated audit row (the columns tests look at).
#[derive(Debug, Clone)]
struct Row {
    request_id: String,
    ts: i64,
    key_id: Option<&'static str>,
    tenant_id: &'static str,
    model_requested: &'static str,
    model_used: Option<&'static str>,
    deployment: Option<&'static str>,
    provider: &'static str,
    status: i64,
    error_code: Option<&'static str>,
    latency_ms: f64,
    upstream_latency_ms: Option<f64>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_nanos: i64,
    cache_hit: bool,
    guardrail_actions: &'static str,
    prompt: Option<&'static str>,
}

const REDACT: &str = r#"[{"guardrail":"pii-redact","action":"redact","count":1}]"#;
const BLOCK: &str = r#"[{"guardrail":"secrets-detect","action":"block","count":1}]"#;
const BOTH: &str = r#"[{"guardrail":"pii-redact","action":"redact","count":2},{"guardrail":"blocked-terms","action":"flag","count":1}]"#;

fn generated(i: usize) -> Row {
    let model = if i.is_multiple_of(2) { "gpt-4o" } else { "claude" };
    let status = match i % 10 {
        0 => 500,
        1 => 429,
        _ => 200,
    };
    Row {
        request_id: format!("req-{i:05}"),
        // Three rows share each millisecond, so ordering needs the request id as tie-break.
        ts: BASE_TS + i64::try_from(i / 3).unwrap() * 1000,
        key_id: if i.is_multiple_of(17) { None } else { Some(["key-a", "key-b", "key-c"][i % 3]) },
        tenant_id: ["t1", "t2"][i % 2],
        model_requested: model,
        model_used: if status == 429 {
            None
        } else if i.is_multiple_of(5) {
            Some("fallback-model")
        } else {
            Some(model)
        },
        deployment: if status == 429 { None } else { Some(["dep-1", "dep-2"][i % 2]) },
        provider: "openai",
        status,
        error_code: if status == 500 { Some("upstream_error") } else { None },
        latency_ms: f64::from(u32::try_from(i % 100).unwrap()) + 0.5,
        upstream_latency_ms: Some(f64::from(u32::try_from(i % 50).unwrap())),
        prompt_tokens: 10 + i64::try_from(i % 7).unwrap(),
        completion_tokens: 5,
        cost_nanos: 1000 * (i64::try_from(i % 4).unwrap() + 1),
        cache_hit: i.is_multiple_of(13),
        guardrail_actions: match (i % 7, i % 11) {
            (0, 0) => BOTH,
            (0, _) => REDACT,
            (_, 0) => BLOCK,
            _ => "[]",
        },
        prompt: if i == 42 { Some("summarise <EMAIL_1>, please") } else { None },
    }
}

/// Inserts rows in multi-row statements, in one transaction per batch.
async fn insert(db: &Database, rows: &[Row]) {
    const COLUMNS: &str = "request_id, ts, tenant_id, key_id, client_ip, route, model_requested, model_used, \
        deployment, provider, status, error_code, latency_ms, upstream_latency_ms, prompt_tokens, completion_tokens, \
        cost_nanos, cache_hit, guardrail_actions, prompt";
    const PER_ROW: usize = 20;
    for batch in rows.chunks(200) {
        let mut sql = format!("INSERT INTO audit_records ({COLUMNS}) VALUES ");
        for (index, _) in batch.iter().enumerate() {
            if index > 0 {
                sql.push_str(", ");
            }
            let placeholders: Vec<String> = (1..=PER_ROW).map(|n| format!("${}", index * PER_ROW + n)).collect();
            sql.push_str(&format!("({})", placeholders.join(", ")));
        }
        let sql = db.sql(&sql);
        let mut query = sqlx::query(&sql);
        for row in batch {
            query = query
                .bind(row.request_id.clone())
                .bind(row.ts)
                .bind(row.tenant_id)
                .bind(row.key_id)
                .bind("10.0.0.1")
                .bind("/v1/chat/completions")
                .bind(row.model_requested)
                .bind(row.model_used)
                .bind(row.deployment)
                .bind(row.provider)
                .bind(row.status)
                .bind(row.error_code)
                .bind(row.latency_ms)
                .bind(row.upstream_latency_ms)
                .bind(row.prompt_tokens)
                .bind(row.completion_tokens)
                .bind(row.cost_nanos)
                .bind(i64::from(row.cache_hit))
                .bind(row.guardrail_actions)
                .bind(row.prompt);
        }
        query.execute(db.pool()).await.unwrap();
    }
}

/// Which generated rows a filter should keep.
type Keep = Box<dyn Fn(&Row) -> bool>;
/// The spend group of a generated row.
type Group = Box<dyn Fn(&Row) -> Option<String>>;

/// Request ids of `rows` in the API's order: newest first, then request id descending.
fn expected_order<'a>(rows: impl Iterator<Item = &'a Row>) -> Vec<String> {
    let mut rows: Vec<&Row> = rows.collect();
    rows.sort_by(|a, b| b.ts.cmp(&a.ts).then_with(|| b.request_id.cmp(&a.request_id)));
    rows.into_iter().map(|r| r.request_id.clone()).collect()
}

/// Equal lists, or a short report of where they part.
fn assert_same(got: &[String], expected: &[String], what: &str) {
    if got != expected {
        let at = got.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(got.len().min(expected.len()));
        panic!(
            "{what}: got {} ids, expected {}; first difference at {at}: {:?} vs {:?}",
            got.len(),
            expected.len(),
            got.get(at),
            expected.get(at)
        );
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|item| item["request_id"].as_str().unwrap().to_owned()).collect()
}

/// The item of `request_id` (rows `req-{i}` are at their generated time).
async fn item_of(target: &Target, request_id: &str) -> Value {
    let index: usize = request_id.trim_start_matches("req-").parse().unwrap();
    let ts = generated(index).ts;
    let (status, page) = target.get(&format!("/api/audit?from={ts}&to={}", ts + 1)).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().iter().find(|i| i["request_id"] == request_id).unwrap().clone()
}

/// Pages over every row (with rows arriving mid-paging), checks each filter, the export and the
/// spend report.
async fn exercise_audit(target: &Target) {
    let rows: Vec<Row> = (0..ROWS).map(generated).collect();
    insert(&target.db, &rows).await;

    // Every row exactly once, in order, in pages of 1000 and of an awkward 777; rows written
    // while a client pages (newer than the first page) do not shift or repeat a page.
    let all = expected_order(rows.iter());
    let (status, first) = target.get("/api/audit?limit=1000").await;
    assert_eq!(status, 200, "{first}");
    let late: Vec<Row> = (0..50)
        .map(|i| Row { request_id: format!("late-{i:03}"), ts: BASE_TS + 10_000_000 + i, ..generated(i as usize) })
        .collect();
    insert(&target.db, &late).await;
    let mut seen = ids(first["items"].as_array().unwrap());
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(next) = cursor {
        let (status, page) = target.get(&format!("/api/audit?limit=1000&cursor={next}")).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(page["items"].as_array().unwrap()));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), ROWS);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), ROWS, "a row was returned twice");
    assert_same(&seen, &all, "pages follow (ts, request_id) descending");
    let everything = expected_order(rows.iter().chain(&late));
    assert_same(&ids(&target.page_all("", 777).await), &everything, "pages of 777");
    let (_, default_page) = target.get("/api/audit").await;
    assert_eq!(default_page["items"].as_array().unwrap().len(), 100, "default limit is 100");

    // Every filter, alone and combined, against the same rows filtered here.
    let from = BASE_TS + 600_000;
    let to = BASE_TS + 1_800_000;
    let cases: Vec<(String, Keep)> = vec![
        ("key_id=key-b".into(), Box::new(|r: &Row| r.key_id == Some("key-b"))),
        ("tenant_id=t2".into(), Box::new(|r: &Row| r.tenant_id == "t2")),
        ("model=claude".into(), Box::new(|r: &Row| r.model_requested == "claude" || r.model_used == Some("claude"))),
        ("model=fallback-model".into(), Box::new(|r: &Row| r.model_used == Some("fallback-model"))),
        ("status=429".into(), Box::new(|r: &Row| r.status == 429)),
        ("status=5xx".into(), Box::new(|r: &Row| r.status >= 500)),
        ("status=2xx".into(), Box::new(|r: &Row| (200..300).contains(&r.status))),
        (format!("from={from}&to={to}"), Box::new(move |r: &Row| r.ts >= from && r.ts < to)),
        (
            "from=2026-01-10T23:40:00Z&to=2026-01-11T01:00:00%2B01:00".into(),
            Box::new(move |r: &Row| r.ts >= from && r.ts < to),
        ),
        ("guardrail_action=block".into(), Box::new(|r: &Row| r.guardrail_actions.contains(r#""action":"block""#))),
        ("guardrail_action=redact".into(), Box::new(|r: &Row| r.guardrail_actions.contains(r#""action":"redact""#))),
        ("guardrail_action=flag".into(), Box::new(|r: &Row| r.guardrail_actions.contains(r#""action":"flag""#))),
        (
            format!("tenant_id=t1&status=5xx&guardrail_action=redact&from={from}"),
            Box::new(move |r: &Row| {
                r.tenant_id == "t1" && r.status >= 500 && r.guardrail_actions.contains("redact") && r.ts >= from
            }),
        ),
    ];
    for (query, keep) in &cases {
        let expected = expected_order(rows.iter().chain(&late).filter(|r| keep(r)));
        assert!(!expected.is_empty(), "{query} should match rows");
        assert_same(&ids(&target.page_all(query, 1000).await), &expected, query);
    }
    assert!(target.page_all("key_id=nobody", 10).await.is_empty());

    // Items show every column with friendly types; prompts only where stored.
    let item = item_of(target, "req-00002").await;
    assert_eq!(item["ts"], "2026-01-10T23:30:00Z");
    assert_eq!(item["ts_ms"], BASE_TS);
    assert_eq!(item["tenant_id"], "t1");
    assert_eq!(item["key_id"], "key-c");
    assert_eq!(item["client_ip"], "10.0.0.1");
    assert_eq!(item["route"], "/v1/chat/completions");
    assert_eq!(item["model_requested"], "gpt-4o");
    assert_eq!(item["deployment"], "dep-1");
    assert_eq!(item["cost_nanos"], 3000);
    assert_eq!(item["cost_usd"].as_f64().unwrap(), 3e-6);
    assert_eq!(item["total_tokens"], 17);
    assert_eq!(item["cache_hit"], false);
    assert_eq!(item["stream"], false);
    assert_eq!(item["guardrail_actions"], serde_json::json!([]));
    assert_eq!(item["fallbacks"], serde_json::json!([]));
    assert_eq!(item["latency_ms"], 2.5);
    assert_eq!(item["upstream_latency_ms"], 2.0);
    assert!(item["ttft_ms"].is_null() && item["error_code"].is_null());
    assert!(item.get("prompt").is_none() && item.get("response").is_none());
    let first = item_of(target, "req-00000").await;
    assert_eq!(first["cache_hit"], true);
    assert_eq!(first["status"], 500);
    assert_eq!(first["error_code"], "upstream_error");
    assert!(first["key_id"].is_null());
    assert_eq!(
        first["guardrail_actions"][1],
        serde_json::json!({"guardrail": "blocked-terms", "action": "flag", "count": 1})
    );
    assert_eq!(item_of(target, "req-00042").await["prompt"], "summarise <EMAIL_1>, please");

    // Bad input is a 400 naming the parameter, never a 500.
    for (query, needle) in [
        ("status=6xx", "`status`"),
        ("status=20", "`status`"),
        ("from=yesterday", "`from`"),
        ("to=2026-13-01T00:00:00Z", "`to`"),
        ("from=2000&to=1000", "`from`"),
        ("limit=0", "`limit`"),
        ("limit=1001", "`limit`"),
        ("limit=many", "limit"),
        ("cursor=not-a-cursor", "`cursor`"),
        ("guardrail_action=%25", "`guardrail_action`"),
        ("key_id=", "`key_id`"),
        ("colour=red", "unknown field `colour`"),
    ] {
        let (status, body) = target.get(&format!("/api/audit?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }
    let unauthenticated = http_client().get(format!("{}/api/audit", target.api)).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);

    exercise_export(target, &rows, &late).await;
    exercise_spend(target, &rows).await;
}

async fn exercise_export(target: &Target, rows: &[Row], late: &[Row]) {
    // Everything, as NDJSON (the default): the items of /api/audit, one per line, in order.
    let response = target.get_raw("/api/audit/export").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment; filename=\"flowgate-audit-") && disposition.ends_with(".ndjson\""));
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_same(&ids(&lines), &expected_order(rows.iter().chain(late)), "NDJSON export");

    // Filtered, as CSV: a header and one line per matching row.
    let response = target.get_raw("/api/audit/export?format=csv&status=5xx&tenant_id=t1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(response.headers()["content-disposition"].to_str().unwrap().ends_with(".csv\""));
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("request_id,ts,ts_ms,tenant_id,key_id,"), "{}", lines[0]);
    let expected = expected_order(rows.iter().chain(late).filter(|r| r.status >= 500 && r.tenant_id == "t1"));
    assert_eq!(lines.len() - 1, expected.len());
    let exported: Vec<String> = lines[1..].iter().map(|l| l.split(',').next().unwrap().to_owned()).collect();
    assert_same(&exported, &expected, "CSV export");

    // The same count as NDJSON, and an empty result is an empty body (CSV: the header alone).
    let ndjson = target.get_raw("/api/audit/export?format=ndjson&status=5xx&tenant_id=t1").await.text().await.unwrap();
    assert_eq!(ndjson.lines().count(), expected.len());
    let empty = target.get_raw("/api/audit/export?format=csv&key_id=nobody").await.text().await.unwrap();
    assert_eq!(empty.split("\r\n").filter(|l| !l.is_empty()).count(), 1);
    let (status, body) = target.get("/api/audit/export?format=xml").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = target.get("/api/audit/export?limit=5").await;
    assert_eq!(status, 400, "{body}");
}

async fn exercise_spend(target: &Target, rows: &[Row]) {
    let to = BASE_TS + 10_000_000; // the late rows are left out
    let expected = |group: &dyn Fn(&Row) -> Option<String>| {
        let mut sums: BTreeMap<Option<String>, (i64, i64, i64, i64)> = BTreeMap::new();
        for row in rows {
            let entry = sums.entry(group(row)).or_default();
            entry.0 += 1;
            entry.1 += row.prompt_tokens;
            entry.2 += row.completion_tokens;
            entry.3 += row.cost_nanos;
        }
        sums
    };
    // Midnight UTC falls 30 minutes after BASE_TS.
    let day = |r: &Row| Some(if r.ts < BASE_TS + 1_800_000 { "2026-01-10" } else { "2026-01-11" }.to_owned());
    let groups: [(&str, Group); 4] = [
        ("key", Box::new(|r: &Row| r.key_id.map(str::to_owned))),
        ("tenant", Box::new(|r: &Row| Some(r.tenant_id.to_owned()))),
        ("model", Box::new(|r: &Row| Some(r.model_used.unwrap_or(r.model_requested).to_owned()))),
        ("day", Box::new(day)),
    ];
    for (group_by, group) in &groups {
        let (status, report) = target.get(&format!("/api/analytics/spend?group_by={group_by}&to={to}")).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["group_by"], *group_by);
        let mut got = BTreeMap::new();
        for item in report["items"].as_array().unwrap() {
            let key = item["group"].as_str().map(str::to_owned);
            let sums = (
                item["requests"].as_i64().unwrap(),
                item["prompt_tokens"].as_i64().unwrap(),
                item["completion_tokens"].as_i64().unwrap(),
                item["cost_nanos"].as_i64().unwrap(),
            );
            assert!((item["cost_usd"].as_f64().unwrap() - sums.3 as f64 / 1e9).abs() < 1e-12);
            got.insert(key, sums);
        }
        assert_eq!(got, expected(group.as_ref()), "group_by={group_by}");
        assert_eq!(report["totals"]["requests"], ROWS);
        if *group_by == "day" {
            assert_eq!(got.len(), 2, "the rows cross a UTC midnight");
            let days: Vec<&str> =
                report["items"].as_array().unwrap().iter().map(|i| i["group"].as_str().unwrap()).collect();
            assert_eq!(days, ["2026-01-10", "2026-01-11"]);
        }
    }
    // Filters narrow the sums; the default grouping is by key.
    let (_, report) = target.get(&format!("/api/analytics/spend?tenant_id=t1&from={BASE_TS}&to={to}")).await;
    assert_eq!(report["group_by"], "key");
    let t1_requests = rows.iter().filter(|r| r.tenant_id == "t1").count();
    assert_eq!(report["totals"]["requests"], t1_requests);
    for (query, needle) in
        [("group_by=week", "unknown variant `week`"), ("from=nope", "`from`"), ("status=200", "unknown field")]
    {
        let (status, body) = target.get(&format!("/api/analytics/spend?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{query}: {body}");
    }
}

/// Known latencies a minute ago: percentiles, rates and error rates per deployment.
async fn exercise_perf(target: &Target) {
    let now = flowgate_db::now_millis();
    let mut rows = Vec::new();
    for i in 0..100usize {
        rows.push(Row {
            request_id: format!("perf-a-{i:03}"),
            ts: now - 60_000 + i64::try_from(i).unwrap(),
            deployment: Some("perf-a"),
            model_used: Some("gpt-perf"),
            provider: "openai",
            // 1..=100, inserted in a shuffled order
            latency_ms: f64::from(u32::try_from((i * 37) % 100 + 1).unwrap()),
            upstream_latency_ms: Some(f64::from(u32::try_from((i * 37) % 100 + 1).unwrap()) / 2.0),
            status: if i < 5 { 503 } else { 200 },
            error_code: None,
            ..generated(3)
        });
    }
    for i in 0..10usize {
        rows.push(Row {
            request_id: format!("perf-b-{i:03}"),
            ts: now - 30_000,
            deployment: Some("perf-b"),
            provider: "anthropic",
            latency_ms: 10.0,
            upstream_latency_ms: None,
            status: 200,
            error_code: if i < 2 { Some("guardrail_blocked") } else { None },
            ..generated(3)
        });
    }
    insert(&target.db, &rows).await;
    let (status, report) = target.get("/api/providers/perf").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["window"], "15m");
    assert_eq!(report["window_secs"], 900);
    let deployments = report["deployments"].as_array().unwrap();
    let names: Vec<&str> = deployments.iter().map(|d| d["deployment"].as_str().unwrap()).collect();
    assert_eq!(names, ["perf-a", "perf-b"], "only deployments with requests in the window");
    let a = &deployments[0];
    assert_eq!(a["requests"], 100);
    assert_eq!(a["provider"], "openai");
    assert_eq!(a["errors"], 5);
    assert!((a["error_rate"].as_f64().unwrap() - 0.05).abs() < 1e-9);
    assert!((a["requests_per_minute"].as_f64().unwrap() - 100.0 / 15.0).abs() < 1e-9);
    assert_eq!(a["latency_ms"], serde_json::json!({"p50": 50.0, "p95": 95.0, "p99": 99.0}));
    assert_eq!(a["upstream_latency_ms"], serde_json::json!({"p50": 25.0, "p95": 47.5, "p99": 49.5}));
    assert_eq!(a["samples"], 100);
    let b = &deployments[1];
    assert_eq!(b["errors"], 2);
    assert!((b["error_rate"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert_eq!(b["latency_ms"]["p99"], 10.0);
    assert_eq!(b["upstream_latency_ms"], serde_json::json!({"p50": null, "p95": null, "p99": null}));
    // A 45-second window only sees perf-b (30 s ago).
    let (_, recent) = target.get("/api/providers/perf?window=45s").await;
    let names: Vec<&str> =
        recent["deployments"].as_array().unwrap().iter().map(|d| d["deployment"].as_str().unwrap()).collect();
    assert_eq!(names, ["perf-b"]);
    for bad in ["15", "0m", "8d", "999h", "abc"] {
        let (status, body) = target.get(&format!("/api/providers/perf?window={bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("`window`"), "{body}");
    }
}

#[tokio::test]
async fn audit_query_export_and_analytics_on_sqlite() {
    let target = sqlite_all(false).await;
    exercise_audit(&target).await;
    exercise_perf(&target).await;
    assert!(!target.process.log_text().contains("\"level\":\"ERROR\""), "{}", target.process.log_text());
}

#[tokio::test]
async fn audit_query_export_and_analytics_on_postgres() {
    audit_query_export_and_analytics_on(Engine::Postgres, "postgres").await;
}

#[tokio::test]
async fn audit_query_export_and_analytics_on_mariadb() {
    audit_query_export_and_analytics_on(Engine::MySql, "mysql").await;
}

async fn audit_query_export_and_analytics_on(engine: Engine, backend: &str) {
    let Some((target, pg)) = server_api_server(engine).await else { return };
    exercise_audit(&target).await;
    exercise_perf(&target).await;
    let (status, health) = target.get("/api/health/comprehensive").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["database"]["status"], "ok");
    assert_eq!(health["database"]["backend"], backend);
    if require_redis().await {
        assert_eq!(health["redis"]["status"], "ok", "{health}");
    }
    // Alone, with every port ephemeral, the api-server cannot know where the others are.
    for service in ["proxy", "compliance", "policy"] {
        assert_eq!(health["services"][service]["status"], "unknown", "{health}");
    }
    assert_eq!(health["status"], "ok");
    drop(target);
    pg.drop_db().await;
}

#[tokio::test]
async fn comprehensive_health_checks_every_service_and_cache_stats_are_real_zeros() {
    let target = sqlite_all(true).await;
    let (status, health) = target.get("/api/health/comprehensive").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"]["status"], "ok");
    assert_eq!(health["database"]["backend"], "sqlite");
    assert!(health["database"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(health["redis"]["status"], "in_process");
    for service in ["proxy", "compliance", "policy"] {
        let check = &health["services"][service];
        assert_eq!(check["status"], "ok", "{service}: {health}");
        assert!(check["url"].as_str().unwrap().starts_with("http://127.0.0.1:"));
        assert!(check["latency_ms"].is_number());
    }
    assert!(health["providers"].is_object(), "the proxy's provider summary: {health}");
    assert!(health["checked_at"].as_str().unwrap().ends_with('Z'));

    // No cache exists yet: real zeros, and a flag that says nothing reports.
    let (status, stats) = target.get("/api/metacache/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["exact"], serde_json::json!({"hits": 0, "misses": 0, "entries": 0, "bytes": 0}), "{stats}");
    assert_eq!(stats["semantic"], serde_json::json!({"hits": 0, "misses": 0, "entries": 0, "bytes": 0}), "{stats}");
    assert_eq!((stats["hit_rate"].as_f64(), &stats["cache_metrics_present"]), (Some(0.0), &serde_json::json!(false)));
    for phase in ["exact", "exact_shared", "semantic", "semantic_shared"] {
        assert_eq!(stats["phases"][phase]["lookups"], 0, "{stats}");
    }
    assert_eq!(stats["savings"]["hits"], 0, "{stats}");

    // Without the admin key, neither answers.
    for path in ["/api/health/comprehensive", "/api/metacache/stats"] {
        let response = http_client().get(format!("{}{path}", target.api)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
}
