//! The registered MCP servers' documents: create and patch requests, checked as the config file's
//! servers are, the stored row and the view (which has no field that could carry a header's value).

use std::collections::BTreeMap;

use flowgate_common::settings::{ConfigError, McpServerSettings, McpTransport, validate_mcp_server};
use flowgate_contracts::mcp::McpServerOptions;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::fields::{present, rfc3339};

const MAX_DESCRIPTION_LEN: usize = 2048;
const MAX_URL_LEN: usize = 2048;
const MAX_HEADERS: usize = 32;
const MAX_HEADER_VALUE_LEN: usize = 8192;
const MAX_TIMEOUT_SECS: u64 = 3600;
/// Default seconds a call may take (the config file's default too).
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// A transport a registered server may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Transport {
    /// Streamable HTTP (`streamable_http` accepted too).
    #[serde(alias = "streamable_http", alias = "streamable-http")]
    Http,
    /// The older HTTP+SSE transport.
    Sse,
    /// Refused: a stdio server runs a command on the proxy's host.
    Stdio,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Sse => "sse",
            Self::Stdio => "stdio",
        }
    }

    fn settings(self) -> McpTransport {
        match self {
            Self::Http => McpTransport::Http,
            Self::Sse => McpTransport::Sse,
            Self::Stdio => McpTransport::Stdio,
        }
    }
}

/// `POST /api/admin/mcp/servers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateServer {
    name: String,
    url: String,
    transport: Option<Transport>,
    description: Option<String>,
    headers: Option<BTreeMap<String, SecretString>>,
    bearer_token: Option<SecretString>,
    #[serde(default)]
    allowed_tools: Vec<String>,
    #[serde(default)]
    disallowed_tools: Vec<String>,
    #[serde(default)]
    cacheable_tools: BTreeMap<String, u64>,
    #[serde(default)]
    tool_costs: BTreeMap<String, f64>,
    timeout_secs: Option<u64>,
}

/// A server's stored columns, validated; its headers still to be sealed.
pub(crate) struct ServerFields {
    pub(crate) name: String,
    pub(crate) transport: Transport,
    pub(crate) url: String,
    pub(crate) description: Option<String>,
    pub(crate) headers: BTreeMap<String, SecretString>,
    pub(crate) options: McpServerOptions,
    pub(crate) timeout_secs: u64,
}

/// A config-file check's error as the API's: the field named without `mcp_servers.{name}.`.
fn api_error(name: &str, error: ConfigError) -> ApiError {
    match error {
        ConfigError::Field { field, message } => {
            let prefix = format!("mcp_servers.{name}");
            let field = field.strip_prefix(&prefix).map(|rest| rest.trim_start_matches('.')).unwrap_or(&field);
            ApiError::field(if field.is_empty() { "name" } else { field }, message)
        }
        ConfigError::File { message, .. } => ApiError::InvalidRequest(message),
    }
}

/// `headers` and `bearer_token` as one header map.
pub(crate) fn merge_headers(
    headers: Option<BTreeMap<String, SecretString>>,
    bearer_token: Option<SecretString>,
) -> Result<BTreeMap<String, SecretString>, ApiError> {
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
    Ok(all)
}

impl ServerFields {
    /// Checks the fields as the config file's servers are checked, plus the API's own limits.
    pub(crate) fn validate(&self) -> Result<(), ApiError> {
        if self.transport == Transport::Stdio {
            return Err(ApiError::field(
                "transport",
                "must be `http` or `sse`: a stdio server runs a command on the proxy's host and is declared only in the config file",
            ));
        }
        if self.url.len() > MAX_URL_LEN {
            return Err(ApiError::field("url", format!("must be at most {MAX_URL_LEN} characters")));
        }
        if reqwest::Url::parse(&self.url).is_err() {
            return Err(ApiError::field("url", "is not a URL"));
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN) {
            return Err(ApiError::field("description", format!("must be at most {MAX_DESCRIPTION_LEN} characters")));
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(ApiError::field("timeout_secs", format!("must be between 1 and {MAX_TIMEOUT_SECS}")));
        }
        let settings = McpServerSettings {
            url: Some(self.url.clone()),
            transport: Some(self.transport.settings()),
            description: self.description.clone(),
            headers: self.headers.clone(),
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cacheable_tools: self.options.cacheable_tools.clone(),
            allowed_tools: self.options.allowed_tools.clone(),
            disallowed_tools: self.options.disallowed_tools.clone(),
            tool_costs: self.options.tool_costs.clone(),
            timeout_secs: self.timeout_secs,
        };
        validate_mcp_server(&self.name, &settings).map_err(|error| api_error(&self.name, error))
    }
}

impl CreateServer {
    pub(crate) fn validate(self) -> Result<ServerFields, ApiError> {
        let fields = ServerFields {
            transport: self.transport.unwrap_or(Transport::Http),
            url: self.url.trim().to_owned(),
            description: self.description.filter(|d| !d.is_empty()),
            headers: merge_headers(self.headers, self.bearer_token)?,
            options: McpServerOptions {
                allowed_tools: self.allowed_tools,
                disallowed_tools: self.disallowed_tools,
                cacheable_tools: self.cacheable_tools,
                tool_costs: self.tool_costs,
            },
            timeout_secs: self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
            name: self.name,
        };
        fields.validate()?;
        Ok(fields)
    }
}

/// `PATCH /api/admin/mcp/servers/{name}`: absent fields stay, `null` clears (or resets to the
/// default); `headers` or `bearer_token` replace every header.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchServer {
    url: Option<String>,
    transport: Option<Transport>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    headers: Option<Option<BTreeMap<String, SecretString>>>,
    #[serde(default, deserialize_with = "present")]
    bearer_token: Option<Option<SecretString>>,
    #[serde(default, deserialize_with = "present")]
    allowed_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    disallowed_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    cacheable_tools: Option<Option<BTreeMap<String, u64>>>,
    #[serde(default, deserialize_with = "present")]
    tool_costs: Option<Option<BTreeMap<String, f64>>>,
    #[serde(default, deserialize_with = "present")]
    timeout_secs: Option<Option<u64>>,
}

impl PatchServer {
    /// `current` with the patch applied (headers: `None` keeps them), validated.
    pub(crate) fn apply(self, current: ServerFields) -> Result<(ServerFields, bool), ApiError> {
        let headers_changed = self.headers.is_some() || self.bearer_token.is_some();
        let headers = if headers_changed {
            merge_headers(self.headers.flatten(), self.bearer_token.flatten())?
        } else {
            current.headers
        };
        let options = McpServerOptions {
            allowed_tools: self.allowed_tools.map_or(current.options.allowed_tools, Option::unwrap_or_default),
            disallowed_tools: self.disallowed_tools.map_or(current.options.disallowed_tools, Option::unwrap_or_default),
            cacheable_tools: self.cacheable_tools.map_or(current.options.cacheable_tools, Option::unwrap_or_default),
            tool_costs: self.tool_costs.map_or(current.options.tool_costs, Option::unwrap_or_default),
        };
        let fields = ServerFields {
            name: current.name,
            transport: self.transport.unwrap_or(current.transport),
            url: self.url.map_or(current.url, |u| u.trim().to_owned()),
            description: self.description.map_or(current.description, |d| d.filter(|d| !d.is_empty())),
            headers,
            options,
            timeout_secs: self.timeout_secs.map_or(current.timeout_secs, |t| t.unwrap_or(DEFAULT_TIMEOUT_SECS)),
        };
        fields.validate()?;
        Ok((fields, headers_changed))
    }
}

/// A server row (never its sealed headers).
#[derive(Debug, Clone)]
pub(crate) struct ServerRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) transport: String,
    pub(crate) url: String,
    pub(crate) description: Option<String>,
    pub(crate) header_names: Vec<String>,
    pub(crate) options: McpServerOptions,
    pub(crate) timeout_secs: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A server as the API shows it: the names of its headers, never their values.
#[derive(Debug, Serialize)]
pub(crate) struct ServerView {
    id: String,
    name: String,
    transport: String,
    url: String,
    description: Option<String>,
    header_names: Vec<String>,
    allowed_tools: Vec<String>,
    disallowed_tools: Vec<String>,
    cacheable_tools: BTreeMap<String, u64>,
    tool_costs: BTreeMap<String, f64>,
    timeout_secs: i64,
    created_at: String,
    updated_at: String,
}

impl From<ServerRow> for ServerView {
    fn from(row: ServerRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            transport: row.transport,
            url: row.url,
            description: row.description.filter(|d| !d.is_empty()),
            header_names: row.header_names,
            allowed_tools: row.options.allowed_tools,
            disallowed_tools: row.options.disallowed_tools,
            cacheable_tools: row.options.cacheable_tools,
            tool_costs: row.options.tool_costs,
            timeout_secs: row.timeout_secs.unwrap_or(60),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

/// `GET /api/admin/mcp/servers`.
#[derive(Debug, Serialize)]
pub(crate) struct ServerList {
    pub(crate) data: Vec<ServerView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: &str) -> Result<ServerFields, String> {
        let request: CreateServer = serde_json::from_str(json).map_err(|e| e.to_string())?;
        request.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn a_server_is_checked_as_the_config_files_are() {
        let fields = create(
            r#"{"name": "tools", "url": "http://tools:8000/mcp", "bearer_token": "t", "cacheable_tools": {"get": 60}}"#,
        );
        assert!(fields.is_err(), "`tools` is a reserved name");
        let fields = create(
            r#"{"name": "weather", "url": "http://w:8000/mcp", "bearer_token": "t", "cacheable_tools": {"get": 60}}"#,
        )
        .unwrap();
        assert_eq!(fields.headers["Authorization"].expose_secret(), "Bearer t");
        assert_eq!(fields.options.cacheable_tools["get"], 60);
        for (json, field) in [
            (r#"{"name": "a__b", "url": "http://x"}"#, "`name`"),
            (r#"{"name": "a", "url": "ftp://x"}"#, "`url`"),
            (r#"{"name": "a", "url": "http://x", "transport": "stdio"}"#, "transport"),
            (r#"{"name": "a", "url": "http://x", "cacheable_tools": {"t": 0}}"#, "`cacheable_tools.t`"),
            (r#"{"name": "a", "url": "http://x", "tool_costs": {"t": -1}}"#, "`tool_costs.t`"),
            (r#"{"name": "a", "url": "http://x", "headers": {"a b": "c"}}"#, "`headers.a b`"),
            (r#"{"name": "a", "url": "http://x", "timeout_secs": 0}"#, "`timeout_secs`"),
            (r#"{"name": "a", "url": "http://x", "command": "rm"}"#, "command"),
        ] {
            let error = create(json).err().unwrap_or_default();
            assert!(error.contains(field), "{json}: {error}");
        }
    }
}
