//! Vertex AI: service-account credentials and the OAuth2 access tokens minted from them.
//!
//! A service-account key (`vertex_credentials`: the JSON itself, or the path of its file) holds an
//! RSA private key (PKCS#8 PEM), the account's email and its token endpoint. An access token is
//! obtained with the JWT bearer grant (RFC 7523): a JWT signed RS256 with that key
//! (`iss` = the account, `scope` = cloud-platform, `aud` = the token endpoint, one hour), posted to
//! the token endpoint. The token is kept and used until five minutes before it expires, then a new
//! one is minted; concurrent requests wait for the one refresh.
//!
//! RS256 is signed with `ring` (already in the tree); no JWT or Google auth crate is needed.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::upstream::AttemptError;

/// Where a Vertex AI deployment lives, and its service account.
#[derive(Debug)]
pub(crate) struct Target {
    /// The Google Cloud project.
    pub(crate) project: String,
    /// The region (`us-central1`, `global`, ...).
    pub(crate) location: String,
    /// The service account, or why its key could not be read.
    pub(crate) credentials: Result<std::sync::Arc<Credentials>, String>,
}

/// What a token is minted for.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A token is replaced this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A service account, read from its key.
pub(crate) struct Credentials {
    client_email: String,
    token_uri: String,
    key: RsaKeyPair,
    /// The current token and when it is to be replaced.
    token: tokio::sync::Mutex<Option<(SecretString, Instant)>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("client_email", &self.client_email).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads a service-account key: `source` is its JSON, or the path of a file holding it.
    pub(crate) fn read(source: &SecretString) -> Result<Self, String> {
        let text = source.expose_secret().trim();
        let json_text = if text.starts_with('{') {
            text.to_owned()
        } else {
            std::fs::read_to_string(text).map_err(|e| format!("cannot read the service-account file {text}: {e}"))?
        };
        let account: Value =
            serde_json::from_str(&json_text).map_err(|_| "the service-account key is not JSON".to_owned())?;
        let field = |name: &str| {
            account
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("the service-account key has no `{name}`"))
        };
        let pem = field("private_key")?;
        let der = pem_body(&pem).ok_or_else(|| "`private_key` is not a PEM PRIVATE KEY".to_owned())?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("`private_key` is not a PKCS#8 RSA key: {e}"))?;
        Ok(Self {
            client_email: field("client_email")?,
            token_uri: account
                .get("token_uri")
                .and_then(Value::as_str)
                .unwrap_or("https://oauth2.googleapis.com/token")
                .to_owned(),
            key,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The JWT of the bearer grant, issued at `now` (seconds since the epoch).
    fn assertion(&self, now: u64) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + 3600})
                .to_string(),
        );
        let signed = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signed.as_bytes(), &mut signature)
            .map_err(|_| "signing the token request failed".to_owned())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// A valid access token: the kept one, or a new one from the token endpoint.
    #[tracing::instrument(name = "vertex_token", skip_all, fields(account = %self.client_email))]
    pub(crate) async fn token(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<SecretString, AttemptError> {
        let mut kept = self.token.lock().await;
        if let Some((token, refresh_at)) = kept.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let assertion = self.assertion(crate::wire::unix_now()).map_err(AttemptError::Unsupported)?;
        let form = [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())];
        let body = serde_urlencoded(&form);
        let request = client
            .post(&self.token_uri)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send();
        let response = match tokio::time::timeout(timeout, request).await {
            Err(_) => return Err(AttemptError::Timeout(timeout)),
            Ok(Err(error)) => return Err(AttemptError::Connect(format!("token endpoint: {}", error.without_url()))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let Some(token) = answer.get("access_token").and_then(Value::as_str).filter(|_| status.is_success()) else {
            // The token endpoint refusing the service account is the deployment's credentials.
            let reason = answer
                .get("error_description")
                .or_else(|| answer.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no access_token");
            return Err(AttemptError::Status {
                status: 401,
                message: format!("the Vertex AI token endpoint refused the service account: {reason}"),
                code: Some("upstream_auth_failed".to_owned()),
                retry_after: None,
                headers: crate::rate_headers::ProviderHeaders::default(),
            });
        };
        let lifetime = Duration::from_secs(answer.get("expires_in").and_then(Value::as_u64).unwrap_or(3600));
        let token = SecretString::from(token.to_owned());
        *kept = Some((token.clone(), Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN)));
        Ok(token)
    }
}

/// `application/x-www-form-urlencoded` of `pairs` (values of the JWT alphabet and a URN need only
/// `:` encoded, but everything outside the unreserved set is).
fn serde_urlencoded(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", super::sigv4::uri_encode(k, false), super::sigv4::uri_encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The DER bytes inside a PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The URL of `model`'s `method` on Vertex AI: Google's models under `publishers/google`,
/// Claude under `publishers/anthropic`.
pub(crate) fn url(base: &str, project: &str, location: &str, model: &str, method: &str) -> String {
    let publisher = if model.starts_with("claude") { "anthropic" } else { "google" };
    format!("{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}")
}

/// Whether `model` is served by Anthropic's API on Vertex AI.
pub(crate) fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_key_signs_a_jwt_its_public_key_verifies() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../flowgate/tests/fixtures/vertex/service_account.json");
        let credentials = Credentials::read(&SecretString::from(path.display().to_string())).unwrap();
        let jwt = credentials.assertion(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "flowgate-test@flowgate-test.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["exp"], 1_700_003_600);
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            credentials.key.public().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        // The same key as JSON text, as `os.environ/` would give it.
        let text = std::fs::read_to_string(path).unwrap();
        assert!(Credentials::read(&SecretString::from(text)).is_ok());
        let error = Credentials::read(&SecretString::from("{\"client_email\": \"x\"}".to_owned())).unwrap_err();
        assert!(error.contains("private_key"), "{error}");
    }

    #[test]
    fn claude_and_gemini_models_have_their_publishers() {
        assert_eq!(
            url(
                "https://us-east5-aiplatform.googleapis.com",
                "p",
                "us-east5",
                "claude-3-5-haiku@20241022",
                "rawPredict"
            ),
            "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-3-5-haiku@20241022:rawPredict"
        );
        assert!(
            url("b", "p", "l", "gemini-2.0-flash", "generateContent")
                .contains("/publishers/google/models/gemini-2.0-flash:")
        );
    }
}
