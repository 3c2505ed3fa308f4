//! Credential documents: the write requests (the value is taken, never shown) and the view.

use flowgate_db::credentials::CredentialInfo;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::fields::{rfc3339, validate_kebab};

/// Longest value accepted (a service-account JSON fits).
const MAX_VALUE_BYTES: usize = 64 * 1024;

fn check_value(value: &SecretString) -> Result<(), ApiError> {
    use secrecy::ExposeSecret;
    let text = value.expose_secret();
    if text.trim().is_empty() {
        return Err(ApiError::field("value", "must not be empty"));
    }
    if text.len() > MAX_VALUE_BYTES {
        return Err(ApiError::field("value", format!("must be at most {MAX_VALUE_BYTES} bytes")));
    }
    Ok(())
}

/// `POST /api/credentials`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCredential {
    name: String,
    value: SecretString,
    #[serde(default)]
    description: Option<String>,
}

impl CreateCredential {
    /// The name, value and description.
    pub(crate) fn validate(self) -> Result<(String, SecretString, Option<String>), ApiError> {
        let name = validate_kebab("name", &self.name)?;
        check_value(&self.value)?;
        Ok((name, self.value, self.description))
    }
}

/// `PUT /api/credentials/{name}`: a new value (a rotated provider key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplaceCredential {
    value: SecretString,
    #[serde(default)]
    description: Option<String>,
}

impl ReplaceCredential {
    /// The value and description.
    pub(crate) fn validate(self) -> Result<(SecretString, Option<String>), ApiError> {
        check_value(&self.value)?;
        Ok((self.value, self.description))
    }
}

/// A credential as the API shows it: never its value.
#[derive(Debug, Serialize)]
pub(crate) struct CredentialView {
    name: String,
    /// What deployments write to use it.
    reference: String,
    description: String,
    /// The key-encryption key that wraps its data key.
    kek_id: String,
    created_at: String,
    updated_at: String,
}

impl From<CredentialInfo> for CredentialView {
    fn from(info: CredentialInfo) -> Self {
        Self {
            reference: format!("{}{}", flowgate_contracts::routing::CREDENTIAL_PREFIX, info.name),
            name: info.name,
            description: info.description,
            kek_id: info.kek_id,
            created_at: rfc3339(info.created_at),
            updated_at: rfc3339(info.updated_at),
        }
    }
}

/// `GET /api/credentials`.
#[derive(Debug, Serialize)]
pub(crate) struct CredentialList {
    pub(crate) data: Vec<CredentialView>,
}
