//! Single sign-on against a real OpenID Connect provider (npm `oidc-provider`, started by the
//! test from `tests/portal/oidc_provider.mjs`): sign-in through its login page with the gateway's
//! code flow (PKCE, state, nonce), a group claim mapped to `tenant-admin` who sees only their
//! tenant's keys, an unmapped user refused, bearer JWTs from the same provider accepted and
//! expired or wrongly signed ones refused, and a rotation of the provider's signing key picked up.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flowgate_test_utils::{TestApp, in_ci};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CLIENT_ID: &str = "flowgate-portal";
const CLIENT_SECRET: &str = "portal-test-secret";
const ID_TOKEN_TTL_SECS: u64 = 4;

/// Where `scripts/install-portal-test-deps.sh` put `oidc-provider`, installing it when needed;
/// `None` (skip) when it cannot be installed outside CI.
#[expect(clippy::print_stderr, reason = "a skipped test says why")]
fn provider_dir() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/install-portal-test-deps.sh");
    let installed = std::process::Command::new(&script).status().is_ok_and(|s| s.success());
    if !installed {
        assert!(!in_ci(), "oidc-provider could not be installed (scripts/install-portal-test-deps.sh)");
        eprintln!("skipped: oidc-provider is not installed (scripts/install-portal-test-deps.sh)");
        return None;
    }
    let output = std::process::Command::new(&script).arg("--print-dir").output().ok()?;
    let dir = std::path::PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    // ES modules resolve packages from the script's folder: run a copy beside node_modules.
    std::fs::copy(root.join("tests/portal/oidc_provider.mjs"), dir.join("oidc_provider.mjs")).ok()?;
    Some(dir)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The provider process (killed when dropped).
struct Provider {
    _child: Child,
    issuer: String,
}

impl Provider {
    async fn start(dir: &std::path::Path, port: u16, redirect: &str, kid: &str) -> Self {
        let mut child = Command::new("node")
            .current_dir(dir)
            .args(["oidc_provider.mjs", &port.to_string(), CLIENT_ID, CLIENT_SECRET, redirect, kid])
            .arg(ID_TOKEN_TTL_SECS.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.starts_with("listening") {
                    return;
                }
            }
            panic!("the provider exited before listening");
        })
        .await
        .expect("the provider starts");
        // Keep reading: the provider logs notices, and a closed pipe would end it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { _child: child, issuer: format!("http://127.0.0.1:{port}") }
    }
}

/// A browser, reduced to what these flows need: cookies per host, no automatic redirects.
struct Browser {
    client: reqwest::Client,
    cookies: HashMap<String, HashMap<String, String>>,
}

impl Browser {
    fn new() -> Self {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap();
        Self { client, cookies: HashMap::new() }
    }

    async fn send(&mut self, method: Method, url: &str, form: Option<&[(String, String)]>) -> reqwest::Response {
        let parsed = Url::parse(url).unwrap();
        let host = format!("{}:{}", parsed.host_str().unwrap(), parsed.port_or_known_default().unwrap());
        let mut request = self.client.request(method, url);
        let jar = self.cookies.entry(host.clone()).or_default();
        if !jar.is_empty() {
            let header: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", header.join("; "));
        }
        if let Some(form) = form {
            let encoded = Url::parse_with_params("http://x/", form).unwrap().query().unwrap_or_default().to_owned();
            request = request.header("content-type", "application/x-www-form-urlencoded").body(encoded);
        }
        let response = request.send().await.expect("reachable");
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (name, rest) = text.split_once('=').unwrap();
            let value = rest.split(';').next().unwrap();
            if value.is_empty() || text.contains("Max-Age=0") || text.contains("expires=Thu, 01 Jan 1970") {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
        response
    }

    fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let parsed = Url::parse(url).unwrap();
        let host = format!("{}:{}", parsed.host_str().unwrap(), parsed.port_or_known_default().unwrap());
        self.cookies.get(&host).and_then(|jar| jar.get(name).cloned())
    }

    /// Follows redirects and fills the provider's login and consent forms as `login`, until a
    /// redirect to a URL starting with `stop_at`, which is returned (not followed).
    async fn sign_in_at_provider(&mut self, start: &str, login: &str, stop_at: &str) -> String {
        let mut next = (Method::GET, start.to_owned(), None::<Vec<(String, String)>>);
        for _ in 0..12 {
            let response = self.send(next.0.clone(), &next.1, next.2.as_deref()).await;
            let base = Url::parse(&next.1).unwrap();
            if response.status().is_redirection() {
                let location = response.headers()["location"].to_str().unwrap();
                let location = base.join(location).unwrap().to_string();
                if location.starts_with(stop_at) {
                    return location;
                }
                next = (Method::GET, location, None);
                continue;
            }
            let status = response.status();
            let html = response.text().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{html}");
            let (action, fields) = form(&html).unwrap_or_else(|| panic!("no form on the provider's page: {html}"));
            let fields = fields
                .into_iter()
                .map(|(name, value)| match name.as_str() {
                    "login" => (name, login.to_owned()),
                    "password" => (name, "any password".to_owned()),
                    _ => (name, value),
                })
                .collect();
            next = (Method::POST, base.join(&action).unwrap().to_string(), Some(fields));
        }
        panic!("the sign-in did not come back");
    }
}

/// The value of `name="…"` in an HTML tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag.get(start..)?.find('"')? + start;
    Some(tag.get(start..end)?.replace("&amp;", "&"))
}

/// The first POST form of a page: its action and its named inputs.
fn form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let body = html.get(start..)?;
    let end = body.find("</form>")?;
    let body = body.get(..end)?;
    let action = attribute(body.get(..body.find('>')?)?, "action")?;
    let inputs = body
        .split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = rest.get(..rest.find('>')?)?;
            Some((attribute(tag, "name")?, attribute(tag, "value").unwrap_or_default()))
        })
        .collect();
    Some((action, inputs))
}

struct Setup {
    app: TestApp,
    provider: Provider,
    dir: std::path::PathBuf,
    op_port: u16,
    redirect: String,
    acme: String,
    acme_key: String,
    other_key: String,
}

async fn setup() -> Option<Setup> {
    let dir = provider_dir()?;
    let (op_port, api_port) = (free_port(), free_port());
    let redirect = format!("http://127.0.0.1:{api_port}/api/admin/oidc/callback");
    let provider = Provider::start(&dir, op_port, &redirect, "key-1").await;
    let config = format!(
        "model_list:\n  - {{model_name: m, litellm_params: {{model: mock/m}}}}\napi_server:\n  oidc:\n    redirect_url: \
         {redirect}\n    leeway_secs: 0\n    scopes: openid email profile\n    role_mapping:\n      flowgate-acme: \
         tenant-admin:acme\n      flowgate-ops: operator\n      everyone: viewer\n"
    );
    let app = TestApp::builder(config)
        .env("FLOWGATE__API_SERVER__PORT", &api_port.to_string())
        .env("OIDC_ISSUER_URL", &provider.issuer)
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("OIDC_ROLE_CLAIM", "groups")
        .spawn()
        .await;
    let (_, acme) = app.admin(Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "acme"}))).await;
    let (_, other) = app.admin(Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "other"}))).await;
    let acme = acme["id"].as_str().unwrap().to_owned();
    let (acme_key, _) = app.create_key(json!({"name": "acme key", "tenant_id": acme})).await;
    let (other_key, _) = app.create_key(json!({"name": "other key", "tenant_id": other["id"]})).await;
    Some(Setup { app, provider, dir, op_port, redirect, acme, acme_key, other_key })
}

/// An ID token for `login`, obtained as an automation client would: the code flow with this
/// gateway's client, the code exchanged by the test itself.
async fn id_token(setup: &Setup, login: &str) -> String {
    let mut browser = Browser::new();
    let verifier = "a-test-verifier-that-is-long-enough-for-pkce-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    let authorize = Url::parse_with_params(
        &format!("{}/auth", setup.provider.issuer),
        &[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", setup.redirect.as_str()),
            ("scope", "openid email profile"),
            ("state", "s"),
            ("nonce", "n"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let back = browser.sign_in_at_provider(authorize.as_str(), login, &setup.redirect).await;
    let code = Url::parse(&back).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", setup.redirect.as_str()),
        ("code_verifier", verifier),
    ];
    let body = Url::parse_with_params("http://x/", &form).unwrap().query().unwrap().to_owned();
    let answer: Value = browser
        .client
        .post(format!("{}/token", setup.provider.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["id_token"].as_str().unwrap_or_else(|| panic!("no id_token: {answer}")).to_owned()
}

async fn with_bearer(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response =
        reqwest::Client::new().get(format!("{}{path}", app.api_url)).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sso_maps_a_group_to_tenant_admin_who_sees_only_their_tenant() {
    let Some(setup) = setup().await else { return };
    let app = &setup.app;
    let mut browser = Browser::new();

    // Sign in through the gateway: to the provider's login page and back with a session.
    let login = format!("{}/api/admin/oidc/login?return_to=/ui/keys", app.api_url);
    let callback = browser.sign_in_at_provider(&login, "acme-admin", &setup.redirect).await;
    let response = browser.send(Method::GET, &callback, None).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{:?}", response.text().await);
    assert_eq!(response.headers()["location"], "/ui/keys");
    let session = browser.cookie(&app.api_url, "flowgate_session").expect("a session cookie");
    assert!(browser.cookie(&app.api_url, "flowgate_oidc").is_none(), "the sign-in's cookie is cleared");

    // The session is the user's, as tenant-admin of acme, and sees only acme's keys.
    let me = browser.send(Method::GET, &format!("{}/api/admin/session", app.api_url), None).await;
    let me: Value = me.json().await.unwrap();
    assert_eq!(
        (me["role"].as_str(), me["tenant_id"].as_str()),
        (Some("tenant-admin"), Some(setup.acme.as_str())),
        "{me}"
    );
    assert!(me["actor"].as_str().unwrap().starts_with("user:"));
    let keys: Value =
        browser.send(Method::GET, &format!("{}/api/enterprise/vkeys", app.api_url), None).await.json().await.unwrap();
    let ids: Vec<&str> = keys["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [setup.acme_key.as_str()], "{keys}");
    let theirs =
        browser.send(Method::GET, &format!("{}/api/enterprise/vkeys/{}", app.api_url, setup.other_key), None).await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    // Edits its tenant's key with the session's CSRF token.
    let patched = reqwest::Client::new()
        .patch(format!("{}/api/enterprise/vkeys/{}", app.api_url, setup.acme_key))
        .header("cookie", format!("flowgate_session={session}"))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .json(&json!({"rpm": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);

    // The user exists now, with the provider as issuer; the sign-in is in the admin audit log.
    let (_, users) = app.admin(Method::GET, "/api/admin/users", None).await;
    let user = &users["data"][0];
    assert_eq!(
        (user["issuer"].as_str(), user["email"].as_str()),
        (Some(setup.provider.issuer.as_str()), Some("acme-admin@example.com"))
    );
    let (_, log) = app.admin(Method::GET, "/api/admin/audit?action=session.create", None).await;
    assert_eq!(log["data"][0]["auth_method"], "oidc", "{log}");

    // A user whose groups map to no role is refused, and no session is made.
    let mut stranger = Browser::new();
    let callback = stranger.sign_in_at_provider(&login, "stranger", &setup.redirect).await;
    let response = stranger.send(Method::GET, &callback, None).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(stranger.cookie(&app.api_url, "flowgate_session").is_none());

    // A callback without the sign-in's cookie (another browser, a forged state) is refused.
    let mut forger = Browser::new();
    let response = forger.send(Method::GET, &format!("{}?code=x&state=y", setup.redirect), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bearer_jwts_from_the_provider_work_until_they_expire_and_key_rotation_is_picked_up() {
    let Some(mut setup) = setup().await else { return };

    // A valid ID token of an operator works on the management API.
    let token = id_token(&setup, "ops").await;
    let (status, keys) = with_bearer(&setup.app, &token, "/api/enterprise/vkeys").await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["data"].as_array().unwrap().len(), 2);
    let (status, answer) = with_bearer(&setup.app, &token, "/api/admin/users").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("forbidden")), "operators manage no users");

    // Wrongly signed: the claims changed under the provider's signature.
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["groups"] = json!(["flowgate-ops", "admins"]);
    let forged_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    parts[1] = &forged_claims;
    let (status, answer) = with_bearer(&setup.app, &parts.join("."), "/api/enterprise/vkeys").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("invalid_token")), "{answer}");
    // Unsigned (`alg: none`) is refused too.
    let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), parts[1]);
    let (status, _) = with_bearer(&setup.app, &none, "/api/enterprise/vkeys").await;
    assert_eq!(status, 401);

    // The provider rotates its signing key: a token signed with the new key is accepted at once.
    drop(setup.provider);
    setup.provider = Provider::start(&setup.dir, setup.op_port, &setup.redirect, "key-2").await;
    let rotated = id_token(&setup, "ops").await;
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(rotated.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["kid"], "key-2");
    let (status, answer) = with_bearer(&setup.app, &rotated, "/api/enterprise/vkeys").await;
    assert_eq!(status, 200, "{answer}");

    // Expired: the ID tokens live a few seconds, and no leeway is configured.
    tokio::time::sleep(Duration::from_secs(ID_TOKEN_TTL_SECS + 1)).await;
    let (status, answer) = with_bearer(&setup.app, &rotated, "/api/enterprise/vkeys").await;
    assert_eq!((status, answer["error"]["message"].as_str()), (401, Some("the token has expired")), "{answer}");
}
