//! OpenID Connect: the browser sign-in (authorization code flow with PKCE) and bearer JWTs from
//! the same provider. The provider's metadata comes from its discovery document, read on first
//! use; its signing keys (JWKS) are cached and fetched again when a token names a key the cache
//! does not hold (key rotation), at most once a second. ID tokens and bearer JWTs are checked
//! here: RS256 or ES256 signature (with `ring`), `iss`, `aud`, `exp`, `nbf`, and the `nonce` of
//! the sign-in that asked for them.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flowgate_common::settings::OidcSettings;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use super::roles::Role;

/// How long fetched keys are trusted before they are read again.
const KEYS_TTL: Duration = Duration::from_secs(600);
/// The least time between two fetches of the keys (a token naming an unknown key waits for it).
const REFETCH_GAP: Duration = Duration::from_secs(1);

/// Why a token or a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OidcError {
    /// The token is not a well-formed JWT, or its signature, issuer, audience, times or nonce
    /// are wrong.
    #[error("{0}")]
    Invalid(String),
    /// The provider could not be reached or answered something unreadable.
    #[error("the identity provider is unavailable: {0}")]
    Provider(String),
    /// The user's claims map to no role.
    #[error("{0}")]
    NoRole(String),
}

fn invalid(message: impl Into<String>) -> OidcError {
    OidcError::Invalid(message.into())
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Debug, Default)]
struct KeySet {
    fetched_at: Option<Instant>,
    keys: Vec<Jwk>,
}

/// The provider, its metadata and keys.
#[derive(Debug)]
pub(crate) struct Oidc {
    pub(crate) settings: OidcSettings,
    issuer: String,
    client_id: String,
    http: reqwest::Client,
    discovery: RwLock<Option<Discovery>>,
    keys: RwLock<KeySet>,
}

/// A verified token's claims.
pub(crate) type Claims = Map<String, Value>;

/// What the claims make of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) subject: String,
    pub(crate) email: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) role: Role,
    pub(crate) tenant_id: Option<String>,
}

impl Oidc {
    /// The provider of `settings`, or `None` when single sign-on is off.
    pub(crate) fn from_settings(settings: &OidcSettings, http: reqwest::Client) -> Option<Self> {
        let issuer = settings.issuer_url.as_deref()?.trim_end_matches('/').to_owned();
        let client_id = settings.client_id.clone()?;
        Some(Self {
            settings: settings.clone(),
            issuer,
            client_id,
            http,
            discovery: RwLock::new(None),
            keys: RwLock::new(KeySet::default()),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let response = self.http.get(url).send().await.map_err(|e| OidcError::Provider(format!("{url}: {e}")))?;
        if !response.status().is_success() {
            return Err(OidcError::Provider(format!("{url} answered {}", response.status())));
        }
        response.json().await.map_err(|e| OidcError::Provider(format!("{url}: {e}")))
    }

    async fn discovery(&self) -> Result<Discovery, OidcError> {
        if let Some(found) = self.discovery.read().await.clone() {
            return Ok(found);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let found: Discovery = self.get_json(&url).await?;
        if found.issuer.trim_end_matches('/') != self.issuer {
            return Err(OidcError::Provider(format!(
                "the discovery document names issuer `{}`, not `{}`",
                found.issuer, self.issuer
            )));
        }
        *self.discovery.write().await = Some(found.clone());
        Ok(found)
    }

    /// The key `kid` (or the only key, for a token without `kid`), fetching the keys again when
    /// they are stale or do not hold it (at most once a second).
    async fn key(&self, kid: Option<&str>, kty: &str) -> Result<Jwk, OidcError> {
        let pick = |set: &KeySet| -> Option<Jwk> {
            let mut fitting = set.keys.iter().filter(|k| k.kty == kty);
            match kid {
                Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)).cloned(),
                None => {
                    let first = fitting.next().cloned();
                    if fitting.next().is_some() { None } else { first }
                }
            }
        };
        {
            let set = self.keys.read().await;
            let fresh = set.fetched_at.is_some_and(|at| at.elapsed() < KEYS_TTL);
            if fresh && let Some(key) = pick(&set) {
                return Ok(key);
            }
        }
        let mut set = self.keys.write().await;
        // Another caller may have fetched the keys while this one waited for the lock.
        if set.fetched_at.is_some_and(|at| at.elapsed() < KEYS_TTL)
            && let Some(key) = pick(&set)
        {
            return Ok(key);
        }
        // At most one fetch a second: a caller that comes sooner waits for its turn (holding the
        // lock, so a burst of unknown key ids costs one fetch a second, not one each).
        if let Some(at) = set.fetched_at {
            let wait = REFETCH_GAP.saturating_sub(at.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        {
            #[derive(Deserialize)]
            struct JwkSet {
                keys: Vec<Jwk>,
            }
            let discovery = self.discovery().await?;
            let fetched: JwkSet = self.get_json(&discovery.jwks_uri).await?;
            tracing::info!(keys = fetched.keys.len(), "identity provider keys fetched");
            *set = KeySet { fetched_at: Some(Instant::now()), keys: fetched.keys };
        }
        pick(&set).ok_or_else(|| invalid("the token is signed with a key the identity provider does not publish"))
    }

    /// Verifies a JWT from the provider and returns its claims. `nonce`: the one the sign-in
    /// sent, which the ID token must carry.
    pub(crate) async fn verify(&self, token: &str, nonce: Option<&str>) -> Result<Claims, OidcError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT"));
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid("not a JWT (bad base64url)"));
        let header: Map<String, Value> =
            serde_json::from_slice(&decode(header)?).map_err(|_| invalid("not a JWT (bad header)"))?;
        let signature = decode(signature)?;
        let kid = header.get("kid").and_then(Value::as_str);
        let signed = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
        let message = token.get(..signed).ok_or_else(|| invalid("not a JWT"))?.as_bytes();
        match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => {
                let key = self.key(kid, "RSA").await?;
                let (Some(n), Some(e)) = (key.n.as_deref(), key.e.as_deref()) else {
                    return Err(OidcError::Provider("an RSA key without n or e".to_owned()));
                };
                let components = ring::signature::RsaPublicKeyComponents {
                    n: URL_SAFE_NO_PAD.decode(n).map_err(|_| OidcError::Provider("bad RSA key".to_owned()))?,
                    e: URL_SAFE_NO_PAD.decode(e).map_err(|_| OidcError::Provider("bad RSA key".to_owned()))?,
                };
                components
                    .verify(&ring::signature::RSA_PKCS1_2048_8192_SHA256, message, &signature)
                    .map_err(|_| invalid("the token's signature is not valid"))?;
            }
            Some("ES256") => {
                let key = self.key(kid, "EC").await?;
                let (Some("P-256"), Some(x), Some(y)) = (key.crv.as_deref(), key.x.as_deref(), key.y.as_deref()) else {
                    return Err(OidcError::Provider("an EC key that is not P-256".to_owned()));
                };
                let mut point = vec![4u8];
                for coordinate in [x, y] {
                    point.extend(
                        URL_SAFE_NO_PAD.decode(coordinate).map_err(|_| OidcError::Provider("bad EC key".to_owned()))?,
                    );
                }
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &signature)
                    .map_err(|_| invalid("the token's signature is not valid"))?;
            }
            Some(other) => {
                return Err(invalid(format!("tokens signed with `{other}` are not accepted (RS256, ES256)")));
            }
            None => return Err(invalid("the token names no algorithm")),
        }
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| invalid("not a JWT (bad claims)"))?;
        self.check_claims(&claims, nonce, now_secs())?;
        Ok(claims)
    }

    fn check_claims(&self, claims: &Claims, nonce: Option<&str>, now: i64) -> Result<(), OidcError> {
        let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
        if issuer.trim_end_matches('/') != self.issuer {
            return Err(invalid("the token is from another issuer"));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let accepted = |aud: &&str| *aud == self.client_id || self.settings.audiences.iter().any(|a| a == aud);
        if !audiences.iter().any(accepted) {
            return Err(invalid("the token is not meant for this gateway (audience)"));
        }
        #[expect(clippy::cast_possible_wrap, reason = "a leeway of seconds")]
        let leeway = self.settings.leeway_secs as i64;
        match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) if exp + leeway > now => {}
            Some(_) => return Err(invalid("the token has expired")),
            None => return Err(invalid("the token has no expiry")),
        }
        if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| nbf - leeway > now) {
            return Err(invalid("the token is not valid yet"));
        }
        if let Some(expected) = nonce {
            let found = claims.get("nonce").and_then(Value::as_str).unwrap_or_default();
            if !flowgate_common::auth::constant_time_eq(found.as_bytes(), expected.as_bytes()) {
                return Err(invalid("the ID token's nonce is not the sign-in's"));
            }
        }
        Ok(())
    }

    /// Who the claims say the user is, with the role the mapping gives them (the most powerful
    /// when several values match).
    pub(crate) fn identity(&self, claims: &Claims) -> Result<Identity, OidcError> {
        let subject = claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty());
        let subject = subject.ok_or_else(|| invalid("the token has no subject"))?.to_owned();
        let values: Vec<&str> = match claims.get(&self.settings.role_claim) {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let rank = |role: Role| Role::ALL.iter().position(|r| *r == role).unwrap_or(usize::MAX);
        let best = values
            .iter()
            .filter_map(|value| self.settings.role_mapping.get(*value))
            .filter_map(|mapped| parse_mapping(mapped))
            .min_by_key(|(role, _)| rank(*role));
        let Some((role, tenant_id)) = best else {
            return Err(OidcError::NoRole(format!(
                "no value of the `{}` claim is mapped to a role; ask an administrator",
                self.settings.role_claim
            )));
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(Identity { subject, email: text("email"), name: text("name"), role, tenant_id })
    }

    /// The provider's issuer (as configured, without a trailing slash).
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The URL that starts a sign-in at the provider.
    pub(crate) async fn authorization_url(
        &self,
        redirect_url: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let discovery = self.discovery().await?;
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
        let url = reqwest::Url::parse_with_params(
            &discovery.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", redirect_url),
                ("scope", self.settings.scopes.as_str()),
                ("state", state),
                ("nonce", nonce),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| OidcError::Provider(format!("authorization_endpoint: {e}")))?;
        Ok(url.to_string())
    }

    /// Exchanges an authorization code (with its PKCE verifier) for the ID token.
    pub(crate) async fn exchange(&self, code: &str, redirect_url: &str, verifier: &str) -> Result<String, OidcError> {
        let discovery = self.discovery().await?;
        let secret = self.settings.client_secret.as_ref().map(|s| s.expose_secret().to_owned()).unwrap_or_default();
        let form = reqwest::Url::parse_with_params(
            "http://form.invalid/",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_url),
                ("code_verifier", verifier),
                ("client_id", self.client_id.as_str()),
            ],
        )
        .map_err(|e| OidcError::Provider(e.to_string()))?;
        let response = self
            .http
            .post(&discovery.token_endpoint)
            .basic_auth(&self.client_id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.query().unwrap_or_default().to_owned())
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            let reason = body.get("error").and_then(Value::as_str).unwrap_or("error");
            return Err(invalid(format!("the identity provider refused the code: {reason}")));
        }
        body.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| OidcError::Provider("the token endpoint sent no id_token".to_owned()))
    }
}

/// The API's answer to a refused token or sign-in.
pub(crate) fn into_api_error(error: OidcError) -> crate::error::ApiError {
    use crate::error::ApiError;
    match error {
        OidcError::Invalid(message) => ApiError::Unauthorized { code: "invalid_token", message },
        OidcError::NoRole(message) => ApiError::Forbidden { code: "forbidden", message },
        OidcError::Provider(message) => {
            tracing::warn!(%message, "the identity provider failed");
            ApiError::IdentityProvider(message)
        }
    }
}

/// `admin` or `tenant-admin:<tenant>` → the role and its tenant.
fn parse_mapping(mapped: &str) -> Option<(Role, Option<String>)> {
    match mapped.strip_prefix("tenant-admin:") {
        Some(tenant) if !tenant.trim().is_empty() => Some((Role::TenantAdmin, Some(tenant.trim().to_owned()))),
        Some(_) => None,
        None => Role::parse(mapped).filter(|role| *role != Role::TenantAdmin).map(|role| (role, None)),
    }
}

fn now_secs() -> i64 {
    flowgate_db::now_millis() / 1000
}

/// True when `token` has the shape of a JWT (three dot-separated parts).
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(mapping: &[(&str, &str)]) -> Oidc {
        let settings = OidcSettings {
            issuer_url: Some("https://idp.example/".into()),
            client_id: Some("gw".into()),
            role_mapping: mapping.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..OidcSettings::default()
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        Oidc::from_settings(&settings, reqwest::Client::new()).unwrap()
    }

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn claims_are_checked_for_issuer_audience_times_and_nonce() {
        let oidc = oidc(&[]);
        let good = json_claims(1000);
        assert!(oidc.check_claims(&good, Some("n1"), 1000).is_ok());
        let mut other = good.clone();
        other.insert("iss".into(), "https://evil.example".into());
        assert!(oidc.check_claims(&other, None, 1000).is_err());
        let mut aud = good.clone();
        aud.insert("aud".into(), serde_json::json!(["someone-else"]));
        assert!(oidc.check_claims(&aud, None, 1000).is_err());
        assert!(oidc.check_claims(&good, None, 1000 + 60 + 31).is_err(), "expired beyond the leeway");
        assert!(oidc.check_claims(&good, Some("n2"), 1000).is_err(), "another sign-in's nonce");
        let mut early = good.clone();
        early.insert("nbf".into(), 2000.into());
        assert!(oidc.check_claims(&early, None, 1000).is_err());
    }

    fn json_claims(now: i64) -> Claims {
        claims(
            serde_json::json!({"iss": "https://idp.example", "aud": "gw", "exp": now + 60, "sub": "u1", "nonce": "n1"}),
        )
    }

    #[test]
    fn the_most_powerful_mapped_role_wins_and_unmapped_users_are_refused() {
        let oidc = oidc(&[("ops", "operator"), ("acme", "tenant-admin:acme"), ("all", "viewer")]);
        let who = |groups: Value| oidc.identity(&claims(serde_json::json!({"sub": "u", "groups": groups})));
        assert_eq!(who(serde_json::json!(["all", "ops"])).unwrap().role, Role::Operator);
        let acme = who(serde_json::json!("acme")).unwrap();
        assert_eq!((acme.role, acme.tenant_id.as_deref()), (Role::TenantAdmin, Some("acme")));
        assert!(matches!(who(serde_json::json!(["nobody"])), Err(OidcError::NoRole(_))));
        assert!(oidc.identity(&claims(serde_json::json!({"groups": ["ops"]}))).is_err(), "no subject");
    }

    #[test]
    fn malformed_tokens_are_refused_without_a_network_call() {
        let oidc = oidc(&[]);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for bad in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            assert!(matches!(runtime.block_on(oidc.verify(bad, None)), Err(OidcError::Invalid(_))), "{bad}");
        }
    }
}
