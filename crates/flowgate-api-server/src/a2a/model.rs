//! The registered agents' documents: create and patch requests with their validation, the stored
//! row and the view (which has no field that could carry a header's value).

use std::collections::BTreeMap;

use flowgate_common::settings::{MAX_AGENT_NAME_LEN, valid_agent_name, valid_header_name};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::fields::{Change, present, rfc3339};

const MAX_DESCRIPTION_LEN: usize = 2048;
const MAX_URL_LEN: usize = 2048;
const MAX_HEADERS: usize = 32;
const MAX_HEADER_VALUE_LEN: usize = 8192;
const MAX_TIMEOUT_SECS: u64 = 3600;

/// `POST /api/admin/a2a/agents`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAgent {
    name: String,
    card_url: String,
    description: Option<String>,
    /// Headers sent with every request to the agent (write-only).
    headers: Option<BTreeMap<String, SecretString>>,
    /// Shorthand for an `Authorization: Bearer` header (write-only).
    bearer_token: Option<SecretString>,
    timeout_secs: Option<u64>,
}

/// A new agent, validated; its headers still to be sealed.
pub(crate) struct AgentFields {
    pub(crate) name: String,
    pub(crate) card_url: String,
    pub(crate) description: Option<String>,
    pub(crate) headers: Option<BTreeMap<String, SecretString>>,
    pub(crate) timeout_secs: Option<i64>,
}

fn validate_card_url(url: &str) -> Result<String, ApiError> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url).map_err(|e| ApiError::field("card_url", format!("is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || url.len() > MAX_URL_LEN {
        return Err(ApiError::field(
            "card_url",
            format!("must be an http:// or https:// URL of at most {MAX_URL_LEN} characters"),
        ));
    }
    Ok(url.to_owned())
}

fn validate_description(description: Option<String>) -> Result<Option<String>, ApiError> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_LEN => {
            Err(ApiError::field("description", format!("must be at most {MAX_DESCRIPTION_LEN} characters")))
        }
        other => Ok(other),
    }
}

fn validate_timeout(secs: u64) -> Result<i64, ApiError> {
    if secs == 0 || secs > MAX_TIMEOUT_SECS {
        return Err(ApiError::field("timeout_secs", format!("must be between 1 and {MAX_TIMEOUT_SECS}")));
    }
    i64::try_from(secs).map_err(|_| ApiError::field("timeout_secs", "is too large"))
}

/// `headers` and `bearer_token` as one header map, validated; `None` when neither is given.
fn validate_headers(
    headers: Option<BTreeMap<String, SecretString>>,
    bearer_token: Option<SecretString>,
) -> Result<Option<BTreeMap<String, SecretString>>, ApiError> {
    if headers.is_none() && bearer_token.is_none() {
        return Ok(None);
    }
    let mut all = headers.unwrap_or_default();
    if let Some(token) = bearer_token {
        if all.keys().any(|k| k.eq_ignore_ascii_case("authorization")) {
            return Err(ApiError::field("bearer_token", "cannot be given with an Authorization header"));
        }
        all.insert("Authorization".to_owned(), SecretString::from(format!("Bearer {}", token.expose_secret())));
    }
    if all.len() > MAX_HEADERS {
        return Err(ApiError::field("headers", format!("must have at most {MAX_HEADERS} headers")));
    }
    for (name, value) in &all {
        if !valid_header_name(name) {
            return Err(ApiError::field(format!("headers.{name}"), "is not a valid header name"));
        }
        let value = value.expose_secret();
        if value.is_empty()
            || value.len() > MAX_HEADER_VALUE_LEN
            || value.chars().any(|c| c.is_control() || !c.is_ascii())
        {
            return Err(ApiError::field(
                format!("headers.{name}"),
                format!("must be 1 to {MAX_HEADER_VALUE_LEN} printable ASCII characters"),
            ));
        }
    }
    Ok(Some(all))
}

impl CreateAgent {
    pub(crate) fn validate(self) -> Result<AgentFields, ApiError> {
        if !valid_agent_name(&self.name) {
            return Err(ApiError::field(
                "name",
                format!(
                    "must be 1 to {MAX_AGENT_NAME_LEN} letters, digits, `-` or `_` (it is a path segment of /a2a/{{agent}})"
                ),
            ));
        }
        Ok(AgentFields {
            card_url: validate_card_url(&self.card_url)?,
            description: validate_description(self.description)?,
            headers: validate_headers(self.headers, self.bearer_token)?,
            timeout_secs: self.timeout_secs.map(validate_timeout).transpose()?,
            name: self.name,
        })
    }
}

/// `PATCH /api/admin/a2a/agents/{name}`: absent fields stay, `null` clears.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchAgent {
    card_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    /// Replaces every header (`null`: none).
    #[serde(default, deserialize_with = "present")]
    headers: Option<Option<BTreeMap<String, SecretString>>>,
    /// Replaces every header with `Authorization: Bearer <token>` (`null`: none).
    #[serde(default, deserialize_with = "present")]
    bearer_token: Option<Option<SecretString>>,
    #[serde(default, deserialize_with = "present")]
    timeout_secs: Option<Option<u64>>,
}

/// What a patch does to the sealed headers.
pub(crate) enum HeadersChange {
    Keep,
    Clear,
    Set(BTreeMap<String, SecretString>),
}

impl PatchAgent {
    /// The column changes and what happens to the headers.
    pub(crate) fn changes(self) -> Result<(Vec<Change>, HeadersChange), ApiError> {
        let mut changes = Vec::new();
        if let Some(url) = self.card_url {
            changes.push(Change::Text("card_url", validate_card_url(&url)?));
        }
        if let Some(description) = self.description {
            // Cleared as the empty text, read back as none.
            changes.push(Change::Text("description", validate_description(description)?.unwrap_or_default()));
        }
        if let Some(timeout) = self.timeout_secs {
            changes.push(Change::Int("timeout_secs", timeout.map(validate_timeout).transpose()?));
        }
        let headers = match (self.headers, self.bearer_token) {
            (None, None) => HeadersChange::Keep,
            (headers, token) => match validate_headers(headers.flatten(), token.flatten())? {
                Some(all) => HeadersChange::Set(all),
                None => HeadersChange::Clear,
            },
        };
        Ok((changes, headers))
    }
}

/// An agent row (never its sealed headers).
#[derive(Debug, Clone)]
pub(crate) struct AgentRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) card_url: String,
    pub(crate) description: Option<String>,
    pub(crate) timeout_secs: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// An agent as the API shows it: the names of its headers, never their values.
#[derive(Debug, Serialize)]
pub(crate) struct AgentView {
    id: String,
    name: String,
    card_url: String,
    description: Option<String>,
    header_names: Vec<String>,
    timeout_secs: i64,
    /// Where the gateway serves it.
    url: String,
    created_at: String,
    updated_at: String,
}

impl AgentView {
    pub(crate) fn new(row: AgentRow, header_names: Vec<String>) -> Self {
        Self {
            url: format!("/a2a/{}", row.name),
            id: row.id,
            name: row.name,
            card_url: row.card_url,
            description: row.description.filter(|d| !d.is_empty()),
            header_names,
            timeout_secs: row.timeout_secs.unwrap_or(300),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// `GET /api/admin/a2a/agents`.
#[derive(Debug, Serialize)]
pub(crate) struct AgentList {
    pub(crate) data: Vec<AgentView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: &str) -> Result<AgentFields, String> {
        let request: CreateAgent = serde_json::from_str(json).map_err(|e| e.to_string())?;
        request.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn an_agent_is_validated_field_by_field() {
        let fields = create(
            r#"{"name": "helper", "card_url": "http://agent:9999/.well-known/agent-card.json", "bearer_token": "t0k"}"#,
        )
        .unwrap();
        let headers = fields.headers.unwrap();
        assert_eq!(headers["Authorization"].expose_secret(), "Bearer t0k");
        for (json, field) in [
            (r#"{"name": "a/b", "card_url": "http://x"}"#, "`name`"),
            (r#"{"name": "a", "card_url": "ftp://x"}"#, "`card_url`"),
            (r#"{"name": "a", "card_url": "http://x", "timeout_secs": 0}"#, "`timeout_secs`"),
            (r#"{"name": "a", "card_url": "http://x", "headers": {"a b": "c"}}"#, "`headers.a b`"),
            (r#"{"name": "a", "card_url": "http://x", "headers": {"X": "a\nb"}}"#, "`headers.X`"),
            (
                r#"{"name": "a", "card_url": "http://x", "headers": {"authorization": "x"}, "bearer_token": "y"}"#,
                "`bearer_token`",
            ),
            (r#"{"name": "a", "card_url": "http://x", "colour": "red"}"#, "colour"),
        ] {
            let error = create(json).err().unwrap_or_default();
            assert!(error.contains(field), "{json}: {error}");
        }
    }
}
