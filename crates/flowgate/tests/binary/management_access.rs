//! The management plane's access control, over HTTP as its users call it: every route × role
//! allowed or refused as the role table says; a tenant-admin confined to its tenant; the portal's
//! session (cookie attributes, CSRF, sign-out, no fixation, only a hash stored); and the admin
//! audit log of every change, with the resource before and after. On SQLite and PostgreSQL.

use flowgate_api_server::routes::{ADMIN_ROUTES, PUBLIC_ADMIN_ROUTES};
use flowgate_test_utils::{TestApp, ThrowawayDb, http_client};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// How a request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    /// The session cookie, and the CSRF token to send (if any).
    Cookie(&'a str, Option<&'a str>),
    None,
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
) -> (u16, Value, HeaderMap) {
    call_with(app, method, path, auth, body, &[]).await
}

async fn call_with(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, HeaderMap) {
    let mut request = http_client().request(method, format!("{}{path}", app.api_url));
    match auth {
        Auth::Bearer(token) => request = request.bearer_auth(token),
        Auth::Cookie(session, csrf) => {
            request = request.header("cookie", format!("flowgate_session={session}"));
            if let Some(csrf) = csrf {
                request = request.header("x-csrf-token", csrf);
            }
        }
        Auth::None => {}
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("management API reachable");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap_or(Value::Null), headers)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// What each role may do, per area of the API, written out independently of the code's table:
/// `W` reads and writes, `R` reads only, `-` nothing. Columns: admin, operator, tenant-admin,
/// auditor, viewer.
const MATRIX: &[(&str, &str)] = &[
    ("/api/enterprise/vkeys", "W W W R -"),
    ("/api/enterprise/tenants", "W W R R -"),
    ("/api/guardrails", "W W - R -"),
    ("/api/policies", "W W - R -"),
    ("/api/audit", "W R - R -"),
    ("/api/analytics", "W R - R R"),
    ("/api/providers", "W R - R R"),
    ("/api/health", "W R - R R"),
    ("/api/metacache", "W R - R R"),
    ("/api/admin/session", "W W W W W"),
    ("/api/admin/users", "W - - - -"),
    ("/api/admin/audit", "W - - R -"),
    ("/api/routing", "W W - R -"),
    ("/api/credentials", "W R - - -"),
    ("/api/alerts", "W W - R -"),
    ("/api/admin/a2a", "W W - R -"),
    ("/api/admin/mcp", "W W - R -"),
    ("/api/mcp/tools", "W W - R -"),
];
const ROLES: [&str; 5] = ["admin", "operator", "tenant-admin", "auditor", "viewer"];

fn expected(role_index: usize, method: &str, path: &str) -> bool {
    let (_, row) = MATRIX
        .iter()
        .filter(|(prefix, _)| path == *prefix || path.starts_with(&format!("{prefix}/")))
        .max_by_key(|(prefix, _)| prefix.len())
        .unwrap_or_else(|| panic!("{method} {path} is not in the test's matrix: add it"));
    let cell = row.split(' ').nth(role_index).unwrap();
    match cell {
        "W" => true,
        "R" => method == "GET",
        _ => false,
    }
}

/// A user with `role` (and tenant) and an API token of theirs.
async fn user_token(app: &TestApp, role: &str, tenant: Option<&str>) -> (String, String) {
    let (status, user) = app
        .admin(
            Method::POST,
            "/api/admin/users",
            Some(&json!({"name": format!("{role} user"), "role": role, "tenant_id": tenant})),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let (status, token) = app.admin(Method::POST, &format!("/api/admin/users/{id}/tokens"), Some(&json!({}))).await;
    assert_eq!(status, 201, "{token}");
    let token = token["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fgm-"));
    (id, token)
}

async fn spawn(db: Option<&ThrowawayDb>) -> TestApp {
    let builder = TestApp::builder("model_list:\n  - {model_name: m, litellm_params: {model: mock/m}}\n");
    match db {
        Some(db) => builder.postgres(db).spawn().await,
        None => builder.spawn().await,
    }
}

async fn every_route_and_role(app: &TestApp) {
    // Arrange: two tenants with a key each, and a user (with an API token) for every role.
    let (_, acme) = app.admin(Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "acme"}))).await;
    let (_, other) = app.admin(Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "other"}))).await;
    let (acme, other) = (acme["id"].as_str().unwrap().to_owned(), other["id"].as_str().unwrap().to_owned());
    let (theirs, _) = app.create_key(json!({"name": "theirs", "tenant_id": other})).await;
    let mut tokens = Vec::new();
    for role in ROLES {
        let tenant = (role == "tenant-admin").then_some(acme.as_str());
        tokens.push(user_token(app, role, tenant).await.1);
    }
    let tenant_admin = Auth::Bearer(&tokens[2]);

    // Out of tenant: another tenant's key is invisible, naming another tenant is refused.
    for (method, path) in [
        (Method::GET, format!("/api/enterprise/vkeys/{theirs}")),
        (Method::GET, format!("/api/enterprise/vkeys/{theirs}/budget")),
        (Method::PATCH, format!("/api/enterprise/vkeys/{theirs}")),
        (Method::POST, format!("/api/enterprise/vkeys/{theirs}/revoke")),
        (Method::POST, format!("/api/enterprise/vkeys/{theirs}/rotate")),
        (Method::DELETE, format!("/api/enterprise/vkeys/{theirs}")),
        (Method::GET, format!("/api/enterprise/tenants/{other}")),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"name": "taken over"}));
        let (status, answer, _) = call(app, method.clone(), &path, tenant_admin, body.as_ref()).await;
        assert_eq!((status, code(&answer)), (404, "not_found"), "{method} {path}: {answer}");
    }
    let (status, answer, _) =
        call(app, Method::GET, &format!("/api/enterprise/vkeys?tenant_id={other}"), tenant_admin, None).await;
    assert_eq!((status, code(&answer)), (403, "out_of_tenant"), "{answer}");
    let (status, answer, _) =
        call(app, Method::POST, "/api/enterprise/vkeys", tenant_admin, Some(&json!({"name": "x", "tenant_id": other})))
            .await;
    assert_eq!((status, code(&answer)), (403, "out_of_tenant"), "{answer}");
    let (own, _) = app.create_key(json!({"name": "own", "tenant_id": acme})).await;
    let (status, answer, _) = call(
        app,
        Method::PATCH,
        &format!("/api/enterprise/vkeys/{own}"),
        tenant_admin,
        Some(&json!({"tenant_id": other})),
    )
    .await;
    assert_eq!((status, code(&answer)), (403, "out_of_tenant"), "moving a key out: {answer}");
    // In tenant: its keys, created in its tenant without naming it, and only its tenant listed.
    let (status, created, _) =
        call(app, Method::POST, "/api/enterprise/vkeys", tenant_admin, Some(&json!({"name": "mine"}))).await;
    assert_eq!((status, created["tenant_id"].as_str()), (201, Some(acme.as_str())), "{created}");
    let (status, listed, _) = call(app, Method::GET, "/api/enterprise/vkeys", tenant_admin, None).await;
    assert_eq!(status, 200);
    let tenants_of: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|k| k["tenant_id"].as_str().unwrap()).collect();
    assert!(!tenants_of.is_empty() && tenants_of.iter().all(|t| *t == acme), "{listed}");
    let (_, listed, _) = call(app, Method::GET, "/api/enterprise/tenants", tenant_admin, None).await;
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [acme.as_str()]);
    let (status, answer, _) =
        call(app, Method::POST, &format!("/api/enterprise/vkeys/{own}/revoke"), tenant_admin, None).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("revoked")), "{answer}");
    let (_, still) = app.admin(Method::GET, &format!("/api/enterprise/vkeys/{theirs}"), None).await;
    assert_eq!(still["status"], "active", "the other tenant's key was not touched: {still}");

    // Every route × role: refused with 403 `forbidden` exactly where the matrix says so.
    let fill = |path: &str| {
        path.replace("/vkeys/{id}", &format!("/vkeys/{own}"))
            .replace("/tenants/{id}", &format!("/tenants/{acme}"))
            .replace("{id}", "nobody")
            .replace("{name}", "nothing")
    };
    let mut checked = 0;
    for (index, role) in ROLES.iter().enumerate() {
        for (method, template) in ADMIN_ROUTES.iter().filter(|route| !PUBLIC_ADMIN_ROUTES.contains(route)) {
            if *template == "/api/admin/session" && *method == "DELETE" {
                continue; // signing out: any caller; checked in the session test
            }
            let path = fill(template);
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let (status, answer, _) =
                call(app, method.clone(), &path, Auth::Bearer(&tokens[index]), body.as_ref()).await;
            let allowed = expected(index, method.as_str(), template);
            if allowed {
                assert!(status != 401 && status != 403, "{role} may {method} {template}: {status} {answer}");
            } else {
                assert_eq!((status, code(&answer)), (403, "forbidden"), "{role} may not {method} {template}: {answer}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5 * 35, "{checked}");

    // A role change applies to the user's tokens at once.
    let (viewer_id, viewer) = user_token(app, "viewer", None).await;
    let (status, _, _) = call(app, Method::GET, "/api/enterprise/vkeys", Auth::Bearer(&viewer), None).await;
    assert_eq!(status, 403);
    let (status, _) =
        app.admin(Method::PATCH, &format!("/api/admin/users/{viewer_id}"), Some(&json!({"role": "operator"}))).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(app, Method::GET, "/api/enterprise/vkeys", Auth::Bearer(&viewer), None).await;
    assert_eq!(status, 200);
    // A deleted user's tokens stop working; an unknown token is refused.
    let (status, _) = app.admin(Method::DELETE, &format!("/api/admin/users/{viewer_id}"), None).await;
    assert_eq!(status, 204);
    let (status, answer, _) = call(app, Method::GET, "/api/enterprise/vkeys", Auth::Bearer(&viewer), None).await;
    assert_eq!((status, code(&answer)), (401, "invalid_token"));
    // The admin key keeps full access; a wrong one is refused.
    let (status, answer, _) = call(app, Method::GET, "/api/admin/users", Auth::Bearer("not-the-key"), None).await;
    assert_eq!((status, code(&answer)), (401, "invalid_admin_key"));
    // A tenant-admin needs a tenant that exists.
    let (status, answer) =
        app.admin(Method::POST, "/api/admin/users", Some(&json!({"name": "x", "role": "tenant-admin"}))).await;
    assert_eq!((status, code(&answer)), (400, "invalid_field"), "{answer}");
}

#[tokio::test]
async fn every_route_and_role_is_allowed_or_refused_as_the_table_says() {
    let app = spawn(None).await;
    every_route_and_role(&app).await;
}

#[tokio::test]
async fn every_route_and_role_on_postgres() {
    let Some(db) = ThrowawayDb::create().await else { return };
    let app = spawn(Some(&db)).await;
    every_route_and_role(&app).await;
    app.shutdown().await;
    db.drop_db().await;
}

fn session_from(headers: &HeaderMap) -> (String, String) {
    let cookie = headers.get("set-cookie").expect("a session cookie").to_str().unwrap().to_owned();
    let value = cookie.split(';').next().unwrap().strip_prefix("flowgate_session=").unwrap().to_owned();
    (value, cookie)
}

#[tokio::test]
async fn a_browser_session_needs_its_csrf_token_and_ends_at_sign_out() {
    let app = spawn(None).await;
    let admin_key = flowgate_test_utils::TEST_ADMIN_KEY;

    // A wrong admin key gets no session.
    let (status, answer, headers) =
        call(&app, Method::POST, "/api/admin/session", Auth::None, Some(&json!({"admin_key": "wrong"}))).await;
    assert_eq!((status, code(&answer)), (401, "invalid_admin_key"));
    assert!(headers.get("set-cookie").is_none());

    // Sign in: an HttpOnly, SameSite=Strict cookie, and the CSRF token.
    let (status, signed_in, headers) =
        call(&app, Method::POST, "/api/admin/session", Auth::None, Some(&json!({"admin_key": admin_key}))).await;
    assert_eq!(status, 201, "{signed_in}");
    let (session, cookie) = session_from(&headers);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(signed_in["role"], "admin");
    let csrf = signed_in["csrf_token"].as_str().unwrap().to_owned();
    assert!(csrf.len() >= 40);

    // Reads need only the cookie; changes need the CSRF token too.
    let (status, _, _) = call(&app, Method::GET, "/api/enterprise/vkeys", Auth::Cookie(&session, None), None).await;
    assert_eq!(status, 200);
    let body = json!({"name": "made in the portal"});
    for bad in [None, Some("forged"), Some("")] {
        let (status, answer, _) =
            call(&app, Method::POST, "/api/enterprise/vkeys", Auth::Cookie(&session, bad), Some(&body)).await;
        assert_eq!((status, code(&answer)), (403, "csrf_failed"), "{bad:?}");
    }
    let (status, created, _) =
        call(&app, Method::POST, "/api/enterprise/vkeys", Auth::Cookie(&session, Some(&csrf)), Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let (_, me, _) = call(&app, Method::GET, "/api/admin/session", Auth::Cookie(&session, None), None).await;
    assert_eq!((me["actor"].as_str(), me["csrf_token"].as_str()), (Some("admin-key"), Some(csrf.as_str())));
    // Another session's CSRF token does not fit this one.
    let (_, second, headers) = call_with(
        &app,
        Method::POST,
        "/api/admin/session",
        Auth::None,
        Some(&json!({"admin_key": admin_key})),
        &[("x-forwarded-proto", "https")],
    )
    .await;
    let (second_session, second_cookie) = session_from(&headers);
    assert!(second_cookie.contains("; Secure"), "behind TLS: {second_cookie}");
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/enterprise/vkeys",
        Auth::Cookie(&session, second["csrf_token"].as_str()),
        Some(&body),
    )
    .await;
    assert_eq!(status, 403);

    // The database holds only a hash of the session id.
    let files: Vec<Vec<u8>> = std::fs::read_dir(app.data_dir())
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.unwrap().path()).ok())
        .collect();
    assert!(!files.is_empty());
    for bytes in &files {
        assert!(!bytes.windows(session.len()).any(|w| w == session.as_bytes()), "a session id is stored in plaintext");
    }

    // Signing in while holding a session ends the old one (no session fixation).
    let (status, _, headers) = call(
        &app,
        Method::POST,
        "/api/admin/session",
        Auth::Cookie(&second_session, None),
        Some(&json!({"admin_key": admin_key})),
    )
    .await;
    assert_eq!(status, 201);
    let (third_session, _) = session_from(&headers);
    assert_ne!(third_session, second_session);
    let (status, answer, _) =
        call(&app, Method::GET, "/api/enterprise/vkeys", Auth::Cookie(&second_session, None), None).await;
    assert_eq!((status, code(&answer)), (401, "invalid_session"));

    // Sign out: needs the CSRF token, then the session is over and the cookie cleared.
    let (status, _, _) = call(&app, Method::DELETE, "/api/admin/session", Auth::Cookie(&session, None), None).await;
    assert_eq!(status, 403);
    let (status, _, headers) =
        call(&app, Method::DELETE, "/api/admin/session", Auth::Cookie(&session, Some(&csrf)), None).await;
    assert_eq!(status, 204);
    assert!(headers.get("set-cookie").unwrap().to_str().unwrap().contains("Max-Age=0"));
    let (status, answer, _) =
        call(&app, Method::GET, "/api/enterprise/vkeys", Auth::Cookie(&session, None), None).await;
    assert_eq!((status, code(&answer)), (401, "invalid_session"));
    let (status, _, _) =
        call(&app, Method::GET, "/api/enterprise/vkeys", Auth::Cookie(&third_session, None), None).await;
    assert_eq!(status, 200, "other sessions live on");
}

#[tokio::test]
async fn every_change_is_in_the_admin_audit_log_with_before_and_after() {
    let app = spawn(None).await;
    let (id, plaintext) = app.create_key(json!({"name": "before"})).await;
    let (status, _) =
        app.admin(Method::PATCH, &format!("/api/enterprise/vkeys/{id}"), Some(&json!({"name": "after"}))).await;
    assert_eq!(status, 200);
    let (status, _) = app.admin(Method::POST, &format!("/api/enterprise/vkeys/{id}/revoke"), None).await;
    assert_eq!(status, 200);
    let (status, rotated) = app.admin(Method::POST, &format!("/api/enterprise/vkeys/{id}/rotate"), None).await;
    assert_eq!(status, 409, "a revoked key cannot rotate: {rotated}");
    let (_, viewer) = user_token(&app, "viewer", None).await;
    let (status, _, _) =
        call(&app, Method::POST, "/api/enterprise/vkeys", Auth::Bearer(&viewer), Some(&json!({"name": "nope"}))).await;
    assert_eq!(status, 403);
    let (status, _, _) = call_with(
        &app,
        Method::POST,
        "/api/admin/session",
        Auth::None,
        Some(&json!({"admin_key": "guess"})),
        &[("x-forwarded-for", "203.0.113.9"), ("user-agent", "curious/1.0")],
    )
    .await;
    assert_eq!(status, 401);

    let (status, page) = app.admin(Method::GET, &format!("/api/admin/audit?target={id}"), None).await;
    assert_eq!(status, 200, "{page}");
    let records = page["data"].as_array().unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "POST /api/enterprise/vkeys/{id}/rotate",
            "POST /api/enterprise/vkeys/{id}/revoke",
            "PATCH /api/enterprise/vkeys/{id}",
            "POST /api/enterprise/vkeys",
        ],
        "newest first, reads not recorded"
    );
    let (rotate, revoke, patch, create) = (&records[0], &records[1], &records[2], &records[3]);
    assert_eq!((rotate["status"].as_i64(), rotate["after"].is_null()), (Some(409), true));
    assert_eq!(
        (revoke["before"]["status"].as_str(), revoke["after"]["status"].as_str()),
        (Some("active"), Some("revoked"))
    );
    assert_eq!((patch["before"]["name"].as_str(), patch["after"]["name"].as_str()), (Some("before"), Some("after")));
    assert_eq!((create["before"].is_null(), create["after"]["name"].as_str()), (true, Some("before")));
    for record in records {
        assert_eq!((record["actor"].as_str(), record["auth_method"].as_str()), (Some("admin-key"), Some("admin_key")));
        assert_eq!(record["source_ip"], "127.0.0.1");
    }
    let (_, everything) = app.admin(Method::GET, "/api/admin/audit?limit=200", None).await;
    assert!(!everything.to_string().contains(&plaintext), "a key's plaintext never reaches the log");

    // The refused attempt and the failed sign-in are there too, with where they came from.
    let (_, refused) = app.admin(Method::GET, "/api/admin/audit?status=403", None).await;
    let refused = &refused["data"][0];
    assert_eq!(
        (refused["role"].as_str(), refused["action"].as_str()),
        (Some("viewer"), Some("POST /api/enterprise/vkeys"))
    );
    let (_, failed) = app.admin(Method::GET, "/api/admin/audit?action=session.create_failed", None).await;
    let failed = &failed["data"][0];
    assert_eq!((failed["actor"].as_str(), failed["status"].as_i64()), (Some("anonymous"), Some(401)));
    assert_eq!(
        (failed["forwarded_for"].as_str(), failed["user_agent"].as_str()),
        (Some("203.0.113.9"), Some("curious/1.0"))
    );

    // Cursor paging walks the whole log once; bad filters are 400s.
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/admin/audit?limit=2&cursor={c}"),
            None => "/api/admin/audit?limit=2".to_owned(),
        };
        let (status, page) = app.admin(Method::GET, &path, None).await;
        assert_eq!(status, 200);
        seen.extend(page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let total = everything["data"].as_array().unwrap().len();
    assert_eq!(seen.len(), total);
    seen.dedup();
    assert_eq!(seen.len(), total);
    for bad in ["cursor=x", "from=yesterday", "actor=", "colour=red"] {
        let (status, answer) = app.admin(Method::GET, &format!("/api/admin/audit?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
}
