//! The portal at `/ui`, over HTTP as a browser uses it (forms, the session cookie, redirects):
//! security headers, sign-in, a key created and shown once, used through the proxy, rotated,
//! revoked and then refused, the tenants page, the audit page, sign-out; a key named `<script>…` rendered escaped; a form
//! posted without its CSRF token refused.

use flowgate_test_utils::{TEST_ADMIN_KEY, spawn_app};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

struct Browser {
    client: reqwest::Client,
    base: String,
    session: Option<String>,
}

impl Browser {
    async fn send(&mut self, method: Method, path: &str, form: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.base));
        if let Some(session) = &self.session {
            request = request.header("cookie", format!("flowgate_session={session}"));
        }
        if method == Method::POST {
            let body = serde_urlencoded::to_string(form).unwrap();
            request = request.header("content-type", "application/x-www-form-urlencoded").body(body);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            if let Some(rest) = text.strip_prefix("flowgate_session=") {
                let value = rest.split(';').next().unwrap();
                self.session = (!value.is_empty() && !text.contains("Max-Age=0")).then(|| value.to_owned());
            }
        }
        (status, headers, response.text().await.unwrap())
    }
}

/// The value of the first `name="csrf_token"` hidden field.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf_token\" value=\"").expect("a CSRF field") + "name=\"csrf_token\" value=\"".len();
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn the_portal_signs_in_creates_a_key_once_revokes_it_and_signs_out() {
    let app = spawn_app("model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n").await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
    let mut browser = Browser { client, base: app.api_url.clone(), session: None };

    // Not signed in: to the sign-in page, which carries the security headers.
    let (status, headers, _) = browser.send(Method::GET, "/ui", &[]).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/ui/sign-in"));
    let (status, headers, html) = browser.send(Method::GET, "/ui/sign-in", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    for part in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(html.contains("type=\"password\"") && !html.contains("<script"), "no inline script");
    let (status, _, _) = browser.send(Method::GET, "/ui/keys", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the keys need a session");

    // Sign in: a wrong key is refused, the right one gives a session.
    let (status, _, html) = browser.send(Method::POST, "/ui/sign-in", &[("admin_key", "wrong")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("not valid"));
    assert!(browser.session.is_none());
    let (status, headers, _) = browser.send(Method::POST, "/ui/sign-in", &[("admin_key", TEST_ADMIN_KEY)]).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/ui/keys"));
    assert!(browser.session.is_some());
    let (status, _, html) = browser.send(Method::GET, "/ui/keys", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let token = csrf(&html);

    // A form posted without its CSRF token is refused, and nothing is created.
    let (status, _, _) = browser.send(Method::POST, "/ui/keys", &[("name", "forged")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = browser.send(Method::POST, "/ui/keys", &[("name", "forged"), ("csrf_token", "guess")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, listed) = app.admin(Method::GET, "/api/enterprise/vkeys", None).await;
    assert!(listed["data"].as_array().unwrap().is_empty());

    // Create a key named like a script: shown once, rendered escaped.
    let name = "<script>alert(1)</script>";
    let (status, _, html) = browser.send(Method::POST, "/ui/keys", &[("name", name), ("csrf_token", &token)]).await;
    assert_eq!(status, StatusCode::CREATED, "{html}");
    assert!(!html.contains(name), "the name is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let at = html.find("<code id=\"new-key\">").unwrap() + "<code id=\"new-key\">".len();
    let key = html[at..at + html[at..].find('<').unwrap()].to_owned();
    assert!(key.starts_with("sk-fg-"), "{key}");
    let (_, _, html) = browser.send(Method::GET, "/ui/keys", &[]).await;
    assert!(!html.contains(&key), "the key is shown only once");

    // The key works through the proxy; rotated in the portal, the new one (shown once) works
    // and the old one is refused.
    assert_eq!(app.chat(&key, "m", "hello").await.status(), 200);
    let (_, listed) = app.admin(Method::GET, "/api/enterprise/vkeys", None).await;
    let id = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, _, html) =
        browser.send(Method::POST, &format!("/ui/keys/{id}/rotate"), &[("csrf_token", &token)]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let at = html.find("<code id=\"new-key\">").unwrap() + "<code id=\"new-key\">".len();
    let old_key = key;
    let key = html[at..at + html[at..].find('<').unwrap()].to_owned();
    assert_ne!(key, old_key);
    assert_eq!(app.chat(&key, "m", "hello").await.status(), 200);
    let mut old_refused = false;
    for _ in 0..20 {
        if app.chat(&old_key, "m", "hello").await.status() == 401 {
            old_refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(old_refused, "the rotated-out key is refused");
    let (status, _, html) = browser.send(Method::GET, "/ui/tenants", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<td>default</td>"), "{html}");

    // Edit the key's limits: a bad CIDR is refused with the API's message, good values are saved.
    let (status, _, html) = browser.send(Method::GET, &format!("/ui/keys/{id}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"ip_allowlist\""), "{html}");
    let edit = |cidrs: &'static str| {
        vec![
            ("csrf_token", token.clone()),
            ("name", "renamed".to_owned()),
            ("rpm", "30".to_owned()),
            ("allowed_models", "m".to_owned()),
            ("ip_allowlist", cidrs.to_owned()),
            ("budget_period", "monthly".to_owned()),
        ]
    };
    let bad = edit("10.0.0.0/8, not-a-cidr");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, html) = browser.send(Method::POST, &format!("/ui/keys/{id}"), &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("ip_allowlist[1]"), "{html}");
    let good = edit("10.0.0.0/8, 127.0.0.1/32");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _, _) = browser.send(Method::POST, &format!("/ui/keys/{id}"), &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, saved) = app.admin(Method::GET, &format!("/api/enterprise/vkeys/{id}"), None).await;
    assert_eq!((saved["name"].as_str(), saved["rpm"].as_u64()), (Some("renamed"), Some(30)), "{saved}");
    assert_eq!(saved["ip_allowlist"], serde_json::json!(["10.0.0.0/8", "127.0.0.1/32"]));
    assert_eq!((saved["budget_period"].as_str(), saved["allowed_models"][0].as_str()), (Some("monthly"), Some("m")));

    // Revoked in the portal, the key is refused.
    let (status, _, _) = browser.send(Method::POST, &format!("/ui/keys/{id}/revoke"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "revoking needs the CSRF token too");
    let (status, _, _) = browser.send(Method::POST, &format!("/ui/keys/{id}/revoke"), &[("csrf_token", &token)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let mut refused = 0;
    for _ in 0..20 {
        if app.chat(&key, "m", "hello").await.status() == 401 {
            refused += 1;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(refused, 1, "a revoked key is refused");

    // The audit page shows the portal's actions, by the signed-in admin, from the browser.
    let (status, _, html) = browser.send(Method::GET, "/ui/audit", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("POST /api/enterprise/vkeys/{id}/revoke"), "{html}");
    assert!(html.contains("session.create"));
    let (_, log) = app.admin(Method::GET, "/api/admin/audit?action=revoke", None).await;
    assert_eq!(
        (log["data"][0]["auth_method"].as_str(), log["data"][0]["source_ip"].as_str()),
        (Some("session"), Some("127.0.0.1"))
    );

    // Users and roles: add a viewer, give them an API token (shown once) that acts as a viewer.
    let (status, _, _) = browser.send(Method::GET, "/ui/users", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) =
        browser.send(Method::POST, "/ui/users", &[("name", "Ada"), ("role", "viewer"), ("csrf_token", &token)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, users) = app.admin(Method::GET, "/api/admin/users", None).await;
    let user = users["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, _, html) =
        browser.send(Method::POST, &format!("/ui/users/{user}/tokens"), &[("csrf_token", &token)]).await;
    assert_eq!(status, StatusCode::CREATED, "{html}");
    let at = html.find("<code id=\"new-token\">").unwrap() + "<code id=\"new-token\">".len();
    let api_token = html[at..at + html[at..].find('<').unwrap()].to_owned();
    assert!(api_token.starts_with("fgm-"));
    let viewer = reqwest::Client::new();
    let spend =
        viewer.get(format!("{}/api/analytics/spend", app.api_url)).bearer_auth(&api_token).send().await.unwrap();
    assert_eq!(spend.status(), 200);
    let keys =
        viewer.get(format!("{}/api/enterprise/vkeys", app.api_url)).bearer_auth(&api_token).send().await.unwrap();
    assert_eq!(keys.status(), 403);

    // Sign out: the session ends.
    let (status, headers, _) = browser.send(Method::POST, "/ui/sign-out", &[("csrf_token", &token)]).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/ui/sign-in"));
    assert!(browser.session.is_none());
    let (status, _, _) = browser.send(Method::GET, "/ui/keys", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

/// Runs one phase of `tests/portal/browser.mjs` (Debian's Chromium through playwright-core) and
/// returns the JSON line it prints.
async fn browser_phase(
    dir: &std::path::Path,
    phase: &str,
    base: &str,
    profile: &std::path::Path,
    shots: &std::path::Path,
) -> serde_json::Value {
    let output = tokio::process::Command::new("node")
        .current_dir(dir)
        .arg("browser.mjs")
        .args([phase, base, TEST_ADMIN_KEY])
        .arg(profile)
        .arg(shots)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{phase}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{phase}: {e}: {stdout}"))
}

/// playwright-core's folder (installed by `scripts/install-portal-test-deps.sh`) with the browser
/// script beside it, when it and Chromium are there; `None` (skip) outside CI when they are not.
#[expect(clippy::print_stderr, reason = "a skipped test says why")]
fn browser_dir() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/install-portal-test-deps.sh");
    let ready = std::process::Command::new(&script).status().is_ok_and(|s| s.success())
        && std::path::Path::new("/usr/bin/chromium").exists();
    if !ready {
        assert!(!flowgate_test_utils::in_ci(), "playwright-core or Chromium is missing (scripts/install-chromium.sh)");
        eprintln!("skipped: playwright-core or Chromium is missing");
        return None;
    }
    let output = std::process::Command::new(&script).arg("--print-dir").output().ok()?;
    let dir = std::path::PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    std::fs::copy(root.join("tests/portal/browser.mjs"), dir.join("browser.mjs")).ok()?;
    Some(dir)
}

#[tokio::test]
async fn the_portal_works_in_a_real_browser() {
    let Some(dir) = browser_dir() else { return };
    let app = spawn_app("model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n").await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shots = root.join("test-artefacts/portal");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = flowgate_test_utils::TempDir::new();

    // Sign in, create a key named like a script: shown once, escaped, no dialog.
    let created = browser_phase(&dir, "create", &app.api_url, profile.path(), &shots).await;
    assert_eq!(created["dialogs"], serde_json::json!([]), "{created}");
    let key = created["key"].as_str().unwrap();
    // The key works through the proxy (a streamed answer).
    let response = app
        .post(
            "/v1/chat/completions",
            key,
            &serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = flowgate_test_utils::sse_events(response).await;
    assert!(events.len() > 1, "{events:?}");

    // CSRF refused, revoke, tenants, audit, sign out.
    let finished = browser_phase(&dir, "finish", &app.api_url, profile.path(), &shots).await;
    assert_eq!(finished["csrf_status"], 403, "{finished}");
    assert_eq!(finished["after_sign_out"], "/ui/sign-in", "{finished}");
    assert_eq!(finished["dialogs"], serde_json::json!([]));
    let mut refused = false;
    for _ in 0..20 {
        if app.chat(key, "m", "hello").await.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the revoked key is refused");
    for shot in ["01-sign-in", "02-keys", "03-key-created", "04-revoked", "05-tenants", "06-audit", "07-signed-out"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}");
    }
}
