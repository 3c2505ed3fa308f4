//! The portal's pages. Each one calls the management API through the gated router and renders
//! what it answers; a change sends the form's CSRF token as `x-csrf-token`, so a form posted
//! without it is refused by the gate like any other request.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::access::gate::{SESSION_COOKIE, cookie};

/// Where the portal's pages send their API calls: the management router, gate included.
pub(crate) type Api = Router;

const STYLESHEET: &str = include_str!("portal.css");

/// What an API call answered.
struct Answer {
    status: StatusCode,
    body: Value,
    set_cookies: Vec<HeaderValue>,
}

/// Calls the API as the browser: its session cookie, the CSRF token for a change, and where it
/// came from (for the admin audit log).
async fn call(
    api: &Api,
    browser: &HeaderMap,
    peer: Option<SocketAddr>,
    method: Method,
    path: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = axum::http::Request::builder().method(method).uri(path);
    if let Some(session) = cookie(browser, SESSION_COOKIE) {
        request = request.header(header::COOKIE, format!("{SESSION_COOKIE}={session}"));
    }
    if let Some(csrf) = csrf.filter(|c| !c.is_empty()) {
        request = request.header("x-csrf-token", csrf);
    }
    for name in ["user-agent", "x-forwarded-for", "x-forwarded-proto"] {
        if let Some(value) = browser.get(name) {
            request = request.header(name, value);
        }
    }
    let body = match body {
        Some(value) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(value.to_string())
        }
        None => Body::empty(),
    };
    let Ok(mut request) = request.body(body) else {
        return Answer { status: StatusCode::BAD_REQUEST, body: Value::Null, set_cookies: Vec::new() };
    };
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    let Ok(response) = api.clone().oneshot(request).await;
    let status = response.status();
    let set_cookies = response.headers().get_all(header::SET_COOKIE).iter().cloned().collect();
    let bytes = axum::body::to_bytes(response.into_body(), 4 * 1024 * 1024).await.unwrap_or_default();
    Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), set_cookies }
}

fn peer_of(info: Option<axum::Extension<ConnectInfo<SocketAddr>>>) -> Option<SocketAddr> {
    info.map(|c| c.0.0)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or("")
}

/// The page frame: navigation, who is signed in, sign-out.
fn layout(title: &str, me: Option<&Value>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Flowgate" }
                link rel="stylesheet" href="/ui/assets/portal.css";
            }
            body {
                header {
                    strong { "Flowgate" }
                    @if let Some(me) = me {
                        nav aria-label="Sections" {
                            @let role = text(me, "role");
                            @if role != "viewer" {
                                a href="/ui/keys" { "Keys" }
                                a href="/ui/tenants" { "Tenants" }
                            }
                            @if role == "admin" || role == "auditor" {
                                a href="/ui/audit" { "Audit" }
                            }
                            @if role == "admin" {
                                a href="/ui/users" { "Users" }
                            }
                        }
                        span.who { (text(me, "actor")) " · " (text(me, "role")) }
                        form.inline method="post" action="/ui/sign-out" {
                            input type="hidden" name="csrf_token" value=(text(me, "csrf_token"));
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (content) }
            }
        }
    }
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

fn error_page(me: Option<&Value>, answer: &Answer) -> Response {
    let message = answer.body["error"]["message"].as_str().unwrap_or("the request failed");
    let status = if answer.status.is_success() { StatusCode::BAD_GATEWAY } else { answer.status };
    page(
        status,
        layout("Not done", me, html! { p.error role="alert" { (message) } p { a href="/ui/keys" { "Back" } } }),
    )
}

/// Who is signed in, or a redirect to the sign-in page.
async fn signed_in(api: &Api, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<Value, Response> {
    let me = call(api, headers, peer, Method::GET, "/api/admin/session", None, None).await;
    if me.status == StatusCode::OK && me.body.get("csrf_token").is_some() {
        Ok(me.body)
    } else {
        Err(Redirect::to("/ui/sign-in").into_response())
    }
}

fn form<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> T {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// `GET /ui`.
pub(crate) async fn home(headers: HeaderMap) -> Redirect {
    if cookie(&headers, SESSION_COOKIE).is_some() { Redirect::to("/ui/keys") } else { Redirect::to("/ui/sign-in") }
}

/// `GET /ui/assets/portal.css`.
pub(crate) async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLESHEET)
        .into_response()
}

fn sign_in_form(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/ui/sign-in" {
                label for="admin_key" { "Admin key" }
                input #admin_key type="password" name="admin_key" autocomplete="current-password" required;
                p { button type="submit" { "Sign in" } }
            }
            p { a href="/api/admin/oidc/login?return_to=/ui/keys" { "Sign in with single sign-on" } }
        },
    )
}

/// `GET /ui/sign-in`.
pub(crate) async fn sign_in_page() -> Response {
    page(StatusCode::OK, sign_in_form(None))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct SignInForm {
    admin_key: String,
}

/// `POST /ui/sign-in`: the admin key exchanged for a session; 303 to the keys.
pub(crate) async fn sign_in(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let SignInForm { admin_key } = form(&body);
    let answer = call(
        &api,
        &headers,
        peer_of(info),
        Method::POST,
        "/api/admin/session",
        None,
        Some(json!({"admin_key": admin_key})),
    )
    .await;
    if answer.status != StatusCode::CREATED {
        return page(StatusCode::UNAUTHORIZED, sign_in_form(Some("That admin key is not valid.")));
    }
    let mut response = Redirect::to("/ui/keys").into_response();
    for set in answer.set_cookies {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    response
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /ui/sign-out`.
pub(crate) async fn sign_out(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let CsrfForm { csrf_token } = form(&body);
    let answer =
        call(&api, &headers, peer_of(info), Method::DELETE, "/api/admin/session", Some(&csrf_token), None).await;
    if answer.status != StatusCode::NO_CONTENT {
        return error_page(None, &answer);
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    for set in answer.set_cookies {
        response.headers_mut().append(header::SET_COOKIE, set);
    }
    response
}

/// Whether the signed-in role changes keys (the API decides; the portal hides what it would refuse).
fn writes_keys(me: &Value) -> bool {
    matches!(text(me, "role"), "admin" | "operator" | "tenant-admin")
}

fn keys_page(me: &Value, keys: &Answer, notice: Option<Markup>) -> Markup {
    let csrf = text(me, "csrf_token");
    let writes = writes_keys(me);
    layout(
        "Keys",
        Some(me),
        html! {
            @if let Some(notice) = notice { (notice) }
            @if keys.status == StatusCode::OK {
                table {
                    thead { tr { th { "Name" } th { "Id" } th { "Tenant" } th { "Status" } th { "Budget (USD)" } th { "" } } }
                    tbody {
                        @for key in keys.body["data"].as_array().into_iter().flatten() {
                            tr {
                                td { a href=(format!("/ui/keys/{}", text(key, "id"))) { (text(key, "name")) } }
                                td { code { (text(key, "id")) } }
                                td { (text(key, "tenant_id")) }
                                td { (text(key, "status")) }
                                td { (key.get("budget_usd").filter(|b| !b.is_null()).map_or_else(|| "—".to_owned(), Value::to_string)) }
                                td {
                                    @if writes && text(key, "status") != "revoked" {
                                        form.inline method="post" action=(format!("/ui/keys/{}/rotate", text(key, "id"))) {
                                            input type="hidden" name="csrf_token" value=(csrf);
                                            button type="submit" aria-label=(format!("Rotate {}", text(key, "name"))) { "Rotate" }
                                        }
                                        " "
                                        form.inline method="post" action=(format!("/ui/keys/{}/revoke", text(key, "id"))) {
                                            input type="hidden" name="csrf_token" value=(csrf);
                                            button type="submit" aria-label=(format!("Revoke {}", text(key, "name"))) { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            } @else {
                p.error role="alert" { (keys.body["error"]["message"].as_str().unwrap_or("the keys cannot be listed")) }
            }
            @if writes { form method="post" action="/ui/keys" {
                fieldset {
                    legend { "Create a key" }
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="name" { "Name" }
                    input #name type="text" name="name" required maxlength="200";
                    label for="tenant_id" { "Tenant id " span.muted { "(empty: default, or your tenant)" } }
                    input #tenant_id type="text" name="tenant_id";
                    label for="budget_usd" { "Budget, USD " span.muted { "(empty: none)" } }
                    input #budget_usd type="number" name="budget_usd" min="0" step="0.01";
                    p { button type="submit" { "Create" } }
                }
            } }
        },
    )
}

/// `GET /ui/keys`.
pub(crate) async fn keys(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    let keys = call(&api, &headers, peer, Method::GET, "/api/enterprise/vkeys?limit=200", None, None).await;
    page(StatusCode::OK, keys_page(&me, &keys, None))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CreateKeyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    budget_usd: String,
}

/// `POST /ui/keys`: creates the key and shows it this once.
pub(crate) async fn create_key(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    let fields: CreateKeyForm = form(&body);
    let mut request = json!({"name": fields.name});
    if !fields.tenant_id.trim().is_empty() {
        request["tenant_id"] = json!(fields.tenant_id.trim());
    }
    if let Ok(budget) = fields.budget_usd.trim().parse::<f64>() {
        request["budget_usd"] = json!(budget);
    }
    let created =
        call(&api, &headers, peer, Method::POST, "/api/enterprise/vkeys", Some(&fields.csrf_token), Some(request))
            .await;
    if created.status != StatusCode::CREATED {
        return error_page(Some(&me), &created);
    }
    let notice = shown_once(&created.body, "created");
    let keys = call(&api, &headers, peer, Method::GET, "/api/enterprise/vkeys?limit=200", None, None).await;
    page(StatusCode::CREATED, keys_page(&me, &keys, Some(notice)))
}

/// `POST /ui/keys/{id}/revoke`.
pub(crate) async fn revoke_key(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let peer = peer_of(info);
    let CsrfForm { csrf_token } = form(&body);
    if id.contains(['/', '?', '#']) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = format!("/api/enterprise/vkeys/{id}/revoke");
    let answer = call(&api, &headers, peer, Method::POST, &path, Some(&csrf_token), None).await;
    if answer.status == StatusCode::OK {
        return Redirect::to("/ui/keys").into_response();
    }
    let me = signed_in(&api, &headers, peer).await.ok();
    error_page(me.as_ref(), &answer)
}

/// The page that shows a new key's plaintext this once.
fn shown_once(created: &Value, what: &str) -> Markup {
    html! {
        div.secret role="status" {
            p { strong { "Key “" (text(created, "name")) "” " (what) ". Copy it now: it is shown only this once." } }
            p { code #new-key { (text(created, "key")) } }
        }
    }
}

/// A value for a form field: a string as is, a number or list as text, nothing for null.
fn field_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn key_page(me: &Value, key: &Value, error: Option<&str>) -> Markup {
    let csrf = text(me, "csrf_token");
    let id = text(key, "id");
    let input = |name: &'static str, label: &'static str, kind: &'static str, hint: &'static str| {
        html! {
            label for=(name) { (label) " " span.muted { (hint) } }
            input id=(name) type=(kind) name=(name) value=(field_text(&key[name])) step=[(kind == "number").then_some("any")];
        }
    };
    layout(
        &format!("Key {}", text(key, "name")),
        Some(me),
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            p { "Id " code { (id) } " · tenant " code { (text(key, "tenant_id")) } " · " (text(key, "status")) }
            @if writes_keys(me) {
                form method="post" action=(format!("/ui/keys/{id}")) {
                    input type="hidden" name="csrf_token" value=(csrf);
                    fieldset {
                        legend { "Limits and access" }
                        (input("name", "Name", "text", ""))
                        (input("budget_usd", "Budget, USD", "number", "(empty: none)"))
                        label for="budget_period" { "Budget period" }
                        select #budget_period name="budget_period" {
                            @for period in ["total", "daily", "weekly", "monthly"] {
                                option value=(period) selected[text(key, "budget_period") == period] { (period) }
                            }
                        }
                        (input("rpm", "Requests per minute", "number", "(empty: none)"))
                        (input("tpm", "Tokens per minute", "number", "(empty: none)"))
                        (input("requests_per_hour", "Requests per hour", "number", "(empty: the server default)"))
                        (input("allowed_models", "Allowed models", "text", "(comma-separated; empty: all)"))
                        (input("ip_allowlist", "IP allowlist", "text", "(CIDRs, comma-separated; empty: any)"))
                        (input("expires_at", "Expires at", "text", "(RFC 3339; empty: never)"))
                        p { button type="submit" { "Save" } }
                    }
                }
            }
            p { a href="/ui/keys" { "All keys" } }
        },
    )
}

/// `GET /ui/keys/{id}`: one key, and its edit form for roles that change keys.
pub(crate) async fn key_detail(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    if id.contains(['/', '?', '#']) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let key = call(&api, &headers, peer, Method::GET, &format!("/api/enterprise/vkeys/{id}"), None, None).await;
    if key.status != StatusCode::OK {
        return error_page(Some(&me), &key);
    }
    page(StatusCode::OK, key_page(&me, &key.body, None))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct EditKeyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    budget_usd: String,
    #[serde(default)]
    budget_period: String,
    #[serde(default)]
    rpm: String,
    #[serde(default)]
    tpm: String,
    #[serde(default)]
    requests_per_hour: String,
    #[serde(default)]
    allowed_models: String,
    #[serde(default)]
    ip_allowlist: String,
    #[serde(default)]
    expires_at: String,
}

/// A number field: empty is `null` (cleared); anything else is sent as typed, for the API to judge.
fn number(text: &str) -> Value {
    let text = text.trim();
    if text.is_empty() {
        return Value::Null;
    }
    text.parse::<u64>()
        .map(Value::from)
        .or_else(|_| text.parse::<f64>().map(Value::from))
        .unwrap_or_else(|_| Value::from(text))
}

fn list(text: &str) -> Value {
    Value::from(text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>())
}

/// `POST /ui/keys/{id}`: saves the edit form (a `PATCH` of every field on it).
pub(crate) async fn edit_key(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    if id.contains(['/', '?', '#']) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let f: EditKeyForm = form(&body);
    let expires = f.expires_at.trim();
    let patch = json!({
        "name": f.name.trim(),
        "budget_usd": number(&f.budget_usd),
        "budget_period": if f.budget_period.is_empty() { Value::Null } else { Value::from(f.budget_period.clone()) },
        "rpm": number(&f.rpm),
        "tpm": number(&f.tpm),
        "requests_per_hour": number(&f.requests_per_hour),
        "allowed_models": list(&f.allowed_models),
        "ip_allowlist": list(&f.ip_allowlist),
        "expires_at": if expires.is_empty() { Value::Null } else { Value::from(expires) },
    });
    let path = format!("/api/enterprise/vkeys/{id}");
    let saved = call(&api, &headers, peer, Method::PATCH, &path, Some(&f.csrf_token), Some(patch)).await;
    if saved.status == StatusCode::OK {
        return Redirect::to(&format!("/ui/keys/{id}")).into_response();
    }
    let message = saved.body["error"]["message"].as_str().unwrap_or("the key was not saved").to_owned();
    let key = call(&api, &headers, peer, Method::GET, &path, None, None).await;
    if key.status != StatusCode::OK {
        return error_page(Some(&me), &saved);
    }
    let status = if saved.status.is_client_error() { saved.status } else { StatusCode::BAD_GATEWAY };
    page(status, key_page(&me, &key.body, Some(&message)))
}

/// `POST /ui/keys/{id}/rotate`: a new key for the same id, shown this once (the old one stops
/// at once; a grace period is set through the API).
pub(crate) async fn rotate_key(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    let CsrfForm { csrf_token } = form(&body);
    if id.contains(['/', '?', '#']) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = format!("/api/enterprise/vkeys/{id}/rotate");
    let rotated = call(&api, &headers, peer, Method::POST, &path, Some(&csrf_token), None).await;
    if rotated.status != StatusCode::OK {
        return error_page(Some(&me), &rotated);
    }
    let keys = call(&api, &headers, peer, Method::GET, "/api/enterprise/vkeys?limit=200", None, None).await;
    page(StatusCode::OK, keys_page(&me, &keys, Some(shown_once(&rotated.body, "rotated"))))
}

/// `GET /ui/tenants`: the tenants the role may see (a tenant-admin: its own).
pub(crate) async fn tenants(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    let list = call(&api, &headers, peer, Method::GET, "/api/enterprise/tenants?limit=200", None, None).await;
    if list.status != StatusCode::OK {
        return error_page(Some(&me), &list);
    }
    let markup = layout(
        "Tenants",
        Some(&me),
        html! {
            table {
                thead { tr { th { "Name" } th { "Id" } th { "Budget (USD)" } th { "Period" } th { "Stores prompts" } } }
                tbody {
                    @for tenant in list.body["data"].as_array().into_iter().flatten() {
                        tr {
                            td { (text(tenant, "name")) }
                            td { code { (text(tenant, "id")) } }
                            td { (tenant.get("budget_usd").filter(|b| !b.is_null()).map_or_else(|| "—".to_owned(), Value::to_string)) }
                            td { (text(tenant, "budget_period")) }
                            td { (if tenant["store_prompts"].as_bool().unwrap_or(false) { "yes" } else { "no" }) }
                        }
                    }
                }
            }
        },
    );
    page(StatusCode::OK, markup)
}

fn users_page(me: &Value, users: &Answer, notice: Option<Markup>) -> Markup {
    let csrf = text(me, "csrf_token");
    layout(
        "Users and roles",
        Some(me),
        html! {
            @if let Some(notice) = notice { (notice) }
            table {
                thead { tr { th { "Name" } th { "Email" } th { "Role" } th { "Tenant" } th { "Signs in with" } th { "" } } }
                tbody {
                    @for user in users.body["data"].as_array().into_iter().flatten() {
                        tr {
                            td { (text(user, "name")) }
                            td { (text(user, "email")) }
                            td { (text(user, "role")) }
                            td { (text(user, "tenant_id")) }
                            td { (if text(user, "issuer") == "local" { "API tokens" } else { text(user, "issuer") }) }
                            td {
                                form.inline method="post" action=(format!("/ui/users/{}/tokens", text(user, "id"))) {
                                    input type="hidden" name="csrf_token" value=(csrf);
                                    button type="submit" aria-label=(format!("New API token for {}", text(user, "name"))) { "New API token" }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/ui/users" {
                fieldset {
                    legend { "Add a user" }
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="name" { "Name" }
                    input #name type="text" name="name" required maxlength="200";
                    label for="email" { "Email" }
                    input #email type="text" name="email";
                    label for="role" { "Role" }
                    select #role name="role" {
                        @for role in ["viewer", "auditor", "tenant-admin", "operator", "admin"] { option value=(role) { (role) } }
                    }
                    label for="tenant_id" { "Tenant id " span.muted { "(tenant-admin only)" } }
                    input #tenant_id type="text" name="tenant_id";
                    p { button type="submit" { "Add" } }
                }
            }
        },
    )
}

/// `GET /ui/users` (admin).
pub(crate) async fn users(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    let users = call(&api, &headers, peer, Method::GET, "/api/admin/users?limit=200", None, None).await;
    if users.status != StatusCode::OK {
        return error_page(Some(&me), &users);
    }
    page(StatusCode::OK, users_page(&me, &users, None))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct UserForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    tenant_id: String,
}

/// `POST /ui/users`: adds a user.
pub(crate) async fn create_user(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer_of(info);
    let f: UserForm = form(&body);
    let optional = |text: &str| if text.trim().is_empty() { Value::Null } else { Value::from(text.trim()) };
    let request =
        json!({"name": f.name, "email": optional(&f.email), "role": f.role, "tenant_id": optional(&f.tenant_id)});
    let created =
        call(&api, &headers, peer, Method::POST, "/api/admin/users", Some(&f.csrf_token), Some(request)).await;
    if created.status == StatusCode::CREATED {
        return Redirect::to("/ui/users").into_response();
    }
    let me = signed_in(&api, &headers, peer).await.ok();
    error_page(me.as_ref(), &created)
}

/// `POST /ui/users/{id}/tokens`: a new API token for the user, shown this once.
pub(crate) async fn create_token(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    if id.contains(['/', '?', '#']) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let CsrfForm { csrf_token } = form(&body);
    let path = format!("/api/admin/users/{id}/tokens");
    let token = call(&api, &headers, peer, Method::POST, &path, Some(&csrf_token), None).await;
    if token.status != StatusCode::CREATED {
        return error_page(Some(&me), &token);
    }
    let notice = html! {
        div.secret role="status" {
            p { strong { "API token created (until " (text(&token.body, "expires_at")) "). Copy it now: it is shown only this once." } }
            p { code #new-token { (text(&token.body, "token")) } }
        }
    };
    let users = call(&api, &headers, peer, Method::GET, "/api/admin/users?limit=200", None, None).await;
    page(StatusCode::CREATED, users_page(&me, &users, Some(notice)))
}

#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct AuditQuery {
    cursor: Option<String>,
    actor: Option<String>,
}

/// `GET /ui/audit`: the admin audit log, newest first, with paging.
pub(crate) async fn audit(
    State(api): State<Api>,
    info: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Response {
    let peer = peer_of(info);
    let me = match signed_in(&api, &headers, peer).await {
        Ok(me) => me,
        Err(redirect) => return redirect,
    };
    let mut params = vec![("limit", "50".to_owned())];
    if let Some(cursor) = query.cursor.filter(|c| !c.is_empty()) {
        params.push(("cursor", cursor));
    }
    if let Some(actor) = query.actor.clone().filter(|a| !a.is_empty()) {
        params.push(("actor", actor));
    }
    let path = format!("/api/admin/audit?{}", serde_urlencoded::to_string(&params).unwrap_or_default());
    let log = call(&api, &headers, peer, Method::GET, &path, None, None).await;
    if log.status != StatusCode::OK {
        return error_page(Some(&me), &log);
    }
    let next = log.body["next_cursor"].as_str().map(|cursor| {
        let mut next = vec![("cursor", cursor.to_owned())];
        if let Some(actor) = query.actor.clone().filter(|a| !a.is_empty()) {
            next.push(("actor", actor));
        }
        format!("/ui/audit?{}", serde_urlencoded::to_string(&next).unwrap_or_default())
    });
    let markup = layout(
        "Audit",
        Some(&me),
        html! {
            form method="get" action="/ui/audit" {
                label for="actor" { "Actor" }
                input #actor type="text" name="actor" value=(query.actor.unwrap_or_default());
                button type="submit" { "Filter" }
            }
            table {
                thead { tr { th { "Time" } th { "Actor" } th { "Action" } th { "Status" } th { "Target" } th { "From" } } }
                tbody {
                    @for record in log.body["data"].as_array().into_iter().flatten() {
                        tr {
                            td { (text(record, "time")) }
                            td { (text(record, "actor")) " " span.muted { (text(record, "role")) } }
                            td { code { (text(record, "action")) } }
                            td { (record["status"].as_i64().unwrap_or_default()) }
                            td { (text(record, "target")) }
                            td { (text(record, "source_ip")) }
                        }
                    }
                }
            }
            @if let Some(next) = next { p { a href=(next) { "Older" } } }
        },
    );
    page(StatusCode::OK, markup)
}
