//! `/api/health/comprehensive` (database, Redis, every service's `/readyz`, the proxy's provider
//! summary) and `/api/metacache/stats` (cache counters from the process's metrics registry).

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use flowgate_db::{Backend, now_millis};
use serde_json::{Value, json};

use crate::fields::rfc3339;
use crate::state::AppState;
pub(crate) use crate::targets::HealthTargets;

/// Longest any one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

fn millis_since(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

async fn check_database(state: &AppState) -> Value {
    let backend = match state.database.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
        Backend::MySql => "mysql",
    };
    let start = Instant::now();
    match tokio::time::timeout(CHECK_TIMEOUT, state.database.ping()).await {
        Ok(Ok(())) => json!({"status": "ok", "backend": backend, "latency_ms": millis_since(start)}),
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: database check failed");
            json!({"status": "down", "backend": backend, "reason": "the database did not answer SELECT 1"})
        }
        Err(_) => json!({"status": "down", "backend": backend, "reason": "timed out after 2s"}),
    }
}

async fn check_redis(state: &AppState) -> Value {
    if !state.shared.is_shared() {
        return json!({"status": "in_process"});
    }
    let start = Instant::now();
    match tokio::time::timeout(CHECK_TIMEOUT, state.shared.ping()).await {
        Ok(Ok(())) => json!({"status": "ok", "latency_ms": millis_since(start)}),
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: Redis check failed");
            json!({"status": "down", "reason": "Redis did not answer PING"})
        }
        Err(_) => json!({"status": "down", "reason": "timed out after 2s"}),
    }
}

fn request_failure(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out after 2s"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    }
}

/// `GET {url}/readyz`: `ok` on 200, `not_ready` (with the service's own checks) otherwise, `down`
/// when it does not answer, `unknown` when its address is not known.
async fn check_service(client: &reqwest::Client, url: Option<&str>) -> Value {
    let Some(url) = url else {
        return json!({
            "status": "unknown",
            "reason": "no address known to the api-server (an ephemeral port, or proxies deployed elsewhere); see docs/management-api.md",
        });
    };
    let start = Instant::now();
    match client.get(format!("{url}/readyz")).timeout(CHECK_TIMEOUT).send().await {
        Ok(response) if response.status().is_success() => {
            json!({"status": "ok", "url": url, "latency_ms": millis_since(start)})
        }
        Ok(response) => {
            let status = response.status().as_u16();
            let checks = response.json::<Value>().await.ok().and_then(|body| body.get("checks").cloned());
            json!({"status": "not_ready", "url": url, "http_status": status, "checks": checks})
        }
        Err(error) => json!({"status": "down", "url": url, "reason": request_failure(&error)}),
    }
}

/// The proxy's provider summary from its `/health` (deployments, cooldowns), when it answers.
async fn providers(client: &reqwest::Client, url: Option<&str>) -> Value {
    let Some(url) = url else { return Value::Null };
    match client.get(format!("{url}/health")).timeout(CHECK_TIMEOUT).send().await {
        Ok(response) if response.status().is_success() => {
            response.json::<Value>().await.ok().and_then(|body| body.get("providers").cloned()).unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

/// `ok` when everything answers; `down` when the database does not (the management plane cannot
/// work); `degraded` when Redis or a service does not. `unknown` services do not count.
fn overall(database: &Value, redis: &Value, services: &serde_json::Map<String, Value>) -> &'static str {
    let status = |value: &Value| value["status"].as_str().unwrap_or("down").to_owned();
    if status(database) != "ok" {
        return "down";
    }
    let redis_ok = matches!(status(redis).as_str(), "ok" | "in_process");
    let services_ok = services.values().all(|s| matches!(status(s).as_str(), "ok" | "unknown"));
    if redis_ok && services_ok { "ok" } else { "degraded" }
}

/// `GET /api/health/comprehensive`: 200 when `ok` or `degraded`, 503 when `down`.
#[tracing::instrument(name = "health.comprehensive", skip_all, fields(status))]
pub(crate) async fn comprehensive(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let proxy_url = state.targets.services.iter().find(|(name, _)| *name == "proxy").and_then(|(_, url)| url.clone());
    let service_checks = futures_util::future::join_all(
        state.targets.services.iter().map(|(_, url)| check_service(&state.http, url.as_deref())),
    );
    let (database, redis, checks, providers) = tokio::join!(
        check_database(&state),
        check_redis(&state),
        service_checks,
        providers(&state.http, proxy_url.as_deref()),
    );
    let services: serde_json::Map<String, Value> =
        state.targets.services.iter().map(|(name, _)| (*name).to_owned()).zip(checks).collect();
    let status = overall(&database, &redis, &services);
    tracing::Span::current().record("status", status);
    let code = if status == "down" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let body = json!({
        "status": status,
        "checked_at": rfc3339(now_millis()),
        "version": env!("CARGO_PKG_VERSION"),
        "database": database,
        "redis": redis,
        "services": services,
        "providers": providers,
    });
    (code, Json(body))
}

#[cfg(test)]
mod tests {
    use flowgate_common::Settings;

    use super::*;

    #[test]
    fn targets_follow_configured_urls_then_local_ports() {
        let mut settings = Settings::default();
        settings.proxy.port = 8775;
        settings.compliance.port = 8777;
        settings.policy.port = 0;
        let targets = HealthTargets::from_settings(&settings);
        assert_eq!(
            targets.services,
            vec![
                ("proxy", Some("http://127.0.0.1:8775".to_owned())),
                ("compliance", Some("http://127.0.0.1:8777".to_owned())),
                ("policy", None),
            ]
        );
        settings.server.host = "::1".to_owned();
        let targets = HealthTargets::from_settings(&settings);
        assert_eq!(targets.services[0].1.as_deref(), Some("http://[::1]:8775"));
        // Split deployment: the peers' URLs are configured; proxies run elsewhere.
        settings.proxy.compliance_url = "http://compliance:7777/".to_owned();
        settings.proxy.api_server_url = "http://api-server:7778".to_owned();
        let targets = HealthTargets::from_settings(&settings);
        assert_eq!(targets.services[0].1, None);
        assert_eq!(targets.services[1].1.as_deref(), Some("http://compliance:7777"));
    }

    #[test]
    fn overall_status_weighs_the_database_above_the_rest() {
        let ok = json!({"status": "ok"});
        let down = json!({"status": "down"});
        let mut services = serde_json::Map::new();
        services.insert("policy".into(), json!({"status": "unknown"}));
        assert_eq!(overall(&ok, &json!({"status": "in_process"}), &services), "ok");
        assert_eq!(overall(&ok, &down, &services), "degraded");
        services.insert("proxy".into(), json!({"status": "not_ready"}));
        assert_eq!(overall(&ok, &ok, &services), "degraded");
        assert_eq!(overall(&down, &ok, &services), "down");
    }
}
