//! Google service-account credentials and the OAuth2 access tokens minted from them, for Vertex
//! AI. A leaf: it depends on nothing else in the crate.
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

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// The token endpoint did not answer in time.
    #[error("the token endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// The token endpoint could not be reached.
    #[error("cannot reach the token endpoint: {0}")]
    Connect(String),
    /// The token endpoint refused the service account.
    #[error("the token endpoint refused the service account: {0}")]
    Refused(String),
    /// The request could not be signed.
    #[error("signing the token request failed")]
    Sign,
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
    fn assertion(&self, now: u64) -> Result<String, TokenError> {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + 3600})
                .to_string(),
        );
        let signed = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signed.as_bytes(), &mut signature)
            .map_err(|_| TokenError::Sign)?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// A valid access token: the kept one, or a new one from the token endpoint.
    #[tracing::instrument(name = "vertex_token", skip_all, fields(account = %self.client_email))]
    pub(crate) async fn token(&self, client: &reqwest::Client, timeout: Duration) -> Result<SecretString, TokenError> {
        let mut kept = self.token.lock().await;
        if let Some((token, refresh_at)) = kept.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let assertion = self.assertion(now)?;
        let body = form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &assertion)]);
        let request = client
            .post(&self.token_uri)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send();
        let response = match tokio::time::timeout(timeout, request).await {
            Err(_) => return Err(TokenError::Timeout(timeout)),
            Ok(Err(error)) => return Err(TokenError::Connect(error.without_url().to_string())),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let Some(token) = answer.get("access_token").and_then(Value::as_str).filter(|_| status.is_success()) else {
            let reason = answer
                .get("error_description")
                .or_else(|| answer.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no access_token");
            return Err(TokenError::Refused(reason.to_owned()));
        };
        let lifetime = Duration::from_secs(answer.get("expires_in").and_then(Value::as_u64).unwrap_or(3600));
        let token = SecretString::from(token.to_owned());
        *kept = Some((token.clone(), Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN)));
        Ok(token)
    }
}

/// `application/x-www-form-urlencoded` of `pairs`: everything outside the unreserved set
/// percent-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
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
}
