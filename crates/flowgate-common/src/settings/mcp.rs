//! `mcp_servers`: the upstream MCP servers the gateway aggregates at `/api/mcp`, by name.
//!
//! Flowgate's shape (`url`, `transport`, `headers`, `command`/`args`/`env`, `cacheable_tools`)
//! is typed here; LiteLLM's shape of the same section (`static_headers`, `auth_type` and
//! `auth_value`, `mcp_info`, `spec_version`, ...) is mapped onto it by the compatibility pass
//! (`litellm::mcp_server`) before it is typed, so the struct stays strict.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

use super::ConfigError;

/// How the gateway reaches an upstream MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpTransport {
    /// Streamable HTTP (POST JSON-RPC, JSON or SSE answers). `streamable_http` is accepted too.
    #[serde(alias = "streamable_http", alias = "streamable-http")]
    Http,
    /// The older HTTP+SSE transport (protocol 2024-11-05): an event stream and a POST endpoint.
    Sse,
    /// A child process spoken to over stdin / stdout, started and supervised by the proxy.
    Stdio,
}

impl McpTransport {
    /// The name written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Sse => "sse",
            Self::Stdio => "stdio",
        }
    }
}

/// One upstream MCP server (`mcp_servers.<name>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerSettings {
    /// The server's endpoint (`http` transport), e.g. `http://tools:8000/mcp`.
    #[serde(default)]
    pub url: Option<String>,
    /// `http` (default when `url` is given), `sse`, or `stdio` (default when `command` is given).
    #[serde(default)]
    pub transport: Option<McpTransport>,
    /// What the server is for (shown to operators).
    #[serde(default)]
    pub description: Option<String>,
    /// Headers sent with every request to the server (values may be `os.environ/NAME`). Sealed
    /// in memory as secrets: never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    /// The program to start (`stdio` transport).
    #[serde(default)]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment (only these variables and `PATH` are passed to it).
    #[serde(default)]
    pub env: BTreeMap<String, SecretString>,
    /// Tools whose answers may be cached, with the seconds an answer is kept. Never by default:
    /// list only read-only tools.
    #[serde(default)]
    pub cacheable_tools: BTreeMap<String, u64>,
    /// Tools of this server offered at all (glob patterns); empty: every tool.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// Tools of this server never offered (glob patterns), whatever a key allows.
    #[serde(default)]
    pub disallowed_tools: Vec<String>,
    /// What a call costs, in USD, charged to the key's and tenant's budgets: tool name → price;
    /// `*` prices every tool not named. Default: free.
    #[serde(default)]
    pub tool_costs: BTreeMap<String, f64>,
    /// Seconds a call to this server may take. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    60
}

impl McpServerSettings {
    /// The transport, given or inferred (`command` → stdio, otherwise http).
    pub fn transport(&self) -> McpTransport {
        self.transport.unwrap_or(if self.command.is_some() { McpTransport::Stdio } else { McpTransport::Http })
    }
}

/// The longest server name (it prefixes every tool name).
const MAX_NAME_LEN: usize = 64;

/// Names under `/api/mcp/` that belong to the gateway, not to a server.
const RESERVED_NAMES: &[&str] = &["tools", "auth", "cache", "sse", "messages"];

/// Start-up checks of `mcp_servers`.
pub(super) fn validate(servers: &BTreeMap<String, McpServerSettings>) -> Result<(), ConfigError> {
    for (name, server) in servers {
        validate_server(name, server)?;
    }
    Ok(())
}

/// The checks of one server named `name` (the config file's, or one registered at run time):
/// errors name the field as `mcp_servers.{name}.{field}`.
pub fn validate_server(name: &str, server: &McpServerSettings) -> Result<(), ConfigError> {
    {
        let at = |field: &str| format!("mcp_servers.{name}.{field}");
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || name.contains("__")
        {
            return Err(ConfigError::field(
                format!("mcp_servers.{name}"),
                format!(
                    "a server name is 1 to {MAX_NAME_LEN} letters, digits, `-` or `_`, without `__` (it prefixes \
                     tool names as `server__tool`)"
                ),
            ));
        }
        if RESERVED_NAMES.contains(&name) {
            return Err(ConfigError::field(
                format!("mcp_servers.{name}"),
                format!("`{name}` is taken by a gateway route (/api/mcp/{name}); pick another name"),
            ));
        }
        match server.transport() {
            McpTransport::Http => {
                let Some(url) = &server.url else {
                    return Err(ConfigError::field(at("url"), "is required for the http transport"));
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::field(at("url"), "must start with http:// or https://"));
                }
                if server.command.is_some() {
                    return Err(ConfigError::field(at("command"), "is only for the stdio transport"));
                }
            }
            McpTransport::Sse => {
                let Some(url) = &server.url else {
                    return Err(ConfigError::field(at("url"), "is required for the sse transport"));
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::field(at("url"), "must start with http:// or https://"));
                }
                if server.command.is_some() {
                    return Err(ConfigError::field(at("command"), "is only for the stdio transport"));
                }
            }
            McpTransport::Stdio => {
                if server.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    return Err(ConfigError::field(at("command"), "is required for the stdio transport"));
                }
                if server.url.is_some() {
                    return Err(ConfigError::field(at("url"), "is not used by the stdio transport"));
                }
            }
        }
        for header in server.headers.keys() {
            if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
                return Err(ConfigError::field(at(&format!("headers.{header}")), "is not a valid header name"));
            }
        }
        for (tool, ttl) in &server.cacheable_tools {
            if *ttl == 0 {
                return Err(ConfigError::field(at(&format!("cacheable_tools.{tool}")), "must be at least 1 second"));
            }
        }
        for (tool, usd) in &server.tool_costs {
            if !usd.is_finite() || *usd < 0.0 || *usd > 1_000.0 {
                return Err(ConfigError::field(at(&format!("tool_costs.{tool}")), "must be between 0 and 1000 USD"));
            }
        }
        if server.timeout_secs == 0 {
            return Err(ConfigError::field(at("timeout_secs"), "must be at least 1"));
        }
    }
    Ok(())
}

/// LiteLLM's fields of an `mcp_servers` entry that Flowgate has no equivalent for.
const LITELLM_ONLY_FIELDS: &[&str] = &[
    "spec_version",
    "extra_headers",
    "server_name",
    "server_id",
    "alias",
    "access_groups",
    "allowed_params",
    "allow_all_keys",
    "available_on_public_internet",
    "client_id",
    "client_secret",
    "scopes",
    "authorization_url",
    "token_url",
    "registration_url",
    "tool_name_to_display_name",
    "tool_name_to_description",
    "instructions",
];

/// Maps LiteLLM's fields of one `mcp_servers` entry onto Flowgate's, in place: `static_headers`
/// → `headers`, `auth_type` + `auth_value` → an authentication header, `mcp_info.description` →
/// `description`; every other field Flowgate has no equivalent for is removed and reported.
pub(super) fn from_litellm(
    name: &str,
    entry: &mut serde_json::Value,
    env: &std::collections::HashMap<String, String>,
    compat: &mut super::Compat,
) -> Result<(), ConfigError> {
    use serde_json::Value;
    let Some(fields) = entry.as_object_mut() else { return Ok(()) };
    let path = |field: &str| format!("mcp_servers.{name}.{field}");
    let mut headers = match fields.remove("headers") {
        Some(Value::Object(map)) => map,
        Some(other) => {
            // Left for the typed pass to refuse, naming the field.
            fields.insert("headers".to_owned(), other);
            return Ok(());
        }
        None => serde_json::Map::new(),
    };
    if let Some(Value::Object(statics)) = fields.remove("static_headers") {
        for (header, value) in statics {
            headers.entry(header).or_insert(value);
        }
        compat.mapped.push(super::Mapped { from: path("static_headers"), to: path("headers") });
    }
    let auth_type = fields.remove("auth_type");
    let auth_value = match fields.remove("auth_value") {
        Some(value) => Some(super::litellm::resolved(value, &path("auth_value"), env)?),
        None => None,
    };
    if let (Some(Value::String(kind)), Some(Value::String(value))) = (&auth_type, &auth_value) {
        let header = match kind.as_str() {
            "bearer_token" => Some(("Authorization", format!("Bearer {value}"))),
            "basic" => Some(("Authorization", format!("Basic {value}"))),
            "authorization" => Some(("Authorization", value.clone())),
            "api_key" => Some(("X-API-Key", value.clone())),
            _ => None,
        };
        match header {
            Some((header, value)) => {
                headers.entry(header.to_owned()).or_insert(Value::String(value));
                compat.mapped.push(super::Mapped { from: path("auth_value"), to: path(&format!("headers.{header}")) });
            }
            None => compat.ignored.push(super::Ignored { path: path("auth_type"), value: Some(kind.clone()) }),
        }
    } else if auth_type.is_some() || auth_value.is_some() {
        compat.ignored.push(super::Ignored { path: path("auth_type"), value: None });
    }
    if !headers.is_empty() {
        fields.insert("headers".to_owned(), Value::Object(headers));
    }
    if let Some(Value::Object(info)) = fields.remove("mcp_info")
        && let Some(description) = info.get("description").cloned()
        && !fields.contains_key("description")
    {
        fields.insert("description".to_owned(), description);
        compat.mapped.push(super::Mapped { from: path("mcp_info.description"), to: path("description") });
    }
    // LiteLLM's other fields are reported; anything else is left for the typed pass to refuse.
    let unknown: Vec<String> = fields.keys().filter(|f| LITELLM_ONLY_FIELDS.contains(&f.as_str())).cloned().collect();
    for field in unknown {
        fields.remove(&field);
        compat.ignored.push(super::Ignored { path: path(&field), value: None });
    }
    Ok(())
}

#[cfg(test)]
#[path = "mcp_tests.rs"]
mod tests;
