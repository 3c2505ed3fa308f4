//! HashiCorp Vault's Transit engine as a [`KekProvider`]: data keys are wrapped by
//! `POST /v1/{mount}/encrypt/{key}` and unwrapped by `.../decrypt/{key}`, so the KEK never leaves
//! Vault. The credential's name is sent as `associated_data` (Transit's AEAD keys bind it).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::CredentialError;
use super::kek::KekProvider;

/// One Transit key of one Vault.
pub struct VaultTransit {
    http: reqwest::Client,
    addr: String,
    token: SecretString,
    mount: String,
    key: String,
    id: String,
}

impl std::fmt::Debug for VaultTransit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTransit").field("addr", &self.addr).field("id", &self.id).finish_non_exhaustive()
    }
}

impl VaultTransit {
    /// Transit key `key` under `mount` of the Vault at `addr`, called with `token`.
    pub fn new(addr: &str, token: SecretString, mount: &str, key: &str) -> Result<Self, CredentialError> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| CredentialError::Vault(e.to_string()))?;
        let mount = mount.trim_matches('/').to_owned();
        Ok(Self {
            http,
            addr: addr.trim_end_matches('/').to_owned(),
            token,
            id: format!("vault:{mount}/{key}"),
            mount,
            key: key.to_owned(),
        })
    }

    async fn call(&self, operation: &str, body: Value) -> Result<Value, CredentialError> {
        let url = format!("{}/v1/{}/{operation}/{}", self.addr, self.mount, self.key);
        let response = self
            .http
            .post(&url)
            .header("X-Vault-Token", self.token.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| CredentialError::Vault(format!("{operation}: {e}")))?;
        let status = response.status();
        let value: Value = response.json().await.map_err(|e| CredentialError::Vault(format!("{operation}: {e}")))?;
        if !status.is_success() {
            let errors = value.get("errors").map(Value::to_string).unwrap_or_default();
            return Err(CredentialError::Vault(format!("{operation} answered {status} {errors}")));
        }
        Ok(value)
    }
}

#[async_trait::async_trait]
impl KekProvider for VaultTransit {
    fn key_id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, data_key: &[u8], context: &str) -> Result<String, CredentialError> {
        let mut plaintext = STANDARD.encode(data_key);
        let body = json!({"plaintext": plaintext, "associated_data": STANDARD.encode(context)});
        plaintext.zeroize();
        let value = self.call("encrypt", body).await?;
        value["data"]["ciphertext"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CredentialError::Vault("encrypt answered no ciphertext".into()))
    }

    async fn unwrap(&self, wrapped: &str, context: &str) -> Result<Vec<u8>, CredentialError> {
        let body = json!({"ciphertext": wrapped, "associated_data": STANDARD.encode(context)});
        let value = self.call("decrypt", body).await.map_err(|error| {
            tracing::warn!(%error, kek = %self.id, "Vault refused to unwrap a data key");
            CredentialError::Unwrap(self.id.clone())
        })?;
        let text = value["data"]["plaintext"].as_str().ok_or_else(|| CredentialError::Unwrap(self.id.clone()))?;
        STANDARD.decode(text).map_err(|_| CredentialError::Unwrap(self.id.clone()))
    }
}
