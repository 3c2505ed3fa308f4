//! The configuration model and its loader.
//!
//! Precedence, lowest to highest:
//! 1. built-in defaults (the `Default` impls of the sections);
//! 2. the YAML file given by `--config` or `FLOWGATE_CONFIG`;
//! 3. `FLOWGATE__SECTION__KEY` environment variables (e.g. `FLOWGATE__PROXY__PORT=8000`);
//! 4. the seeds' environment names (`DATABASE_URL`, `REDIS_URL`, `ADMIN_API_KEY`, ... see
//!    [`SEED_ENV`]).
//!
//! Unknown keys and bad values are errors that name the field (`proxy.port: invalid digit ...`).
//!
//! # Layout
//! - this module: [`Settings`] and [`ConfigError`];
//! - `load`: the layering and [`Sources`];
//! - `sections`: the sections every service reads, with their defaults;
//! - `model_list`: the LiteLLM-compatible `model_list` and `router_settings`;
//! - `mcp`: the upstream MCP servers (`mcp_servers`);
//! - `a2a`: the remote A2A agents (`a2a_agents`);
//! - `litellm`: the pass that lets a LiteLLM proxy config load as it is (mapped and ignored
//!   fields, `environment_variables`, `os.environ/` in every string);
//! - `describe`: what a loaded configuration means, as `flowgate config check` prints it;
//! - `values`: values parsed once while loading ([`Cidr`], [`Seconds`]);
//! - `validation`: start-up checks that types alone cannot make;
//! - `worker`: the worker's port, schedule and alert destinations;
//! - `guard`: limits a YAML file is held to before it is loaded (nesting, aliases).

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod a2a;
mod describe;
mod guard;
mod litellm;
mod load;
mod mcp;
mod model_list;
mod routing;
mod sections;
mod validation;
mod values;
mod worker;

#[cfg(test)]
mod tests;

pub use a2a::{A2aAgentSettings, MAX_AGENT_NAME_LEN, valid_agent_name, valid_header_name};
pub use litellm::{Compat, Ignored, Mapped};
pub use load::{ENV_CONFIG, ENV_PREFIX, SEED_ENV, Sources, model_entry_from_json};
pub use mcp::{McpServerSettings, McpTransport, validate_server as validate_mcp_server};
pub use model_list::{
    AliasTarget, AllowedFailsPolicy, FailureClass, ModelEntry, ModelInfo, ModelParams, PerFailure, Provider,
    RetryPolicy, RouterSettings, RoutingStrategy, UpstreamApi,
};
pub use routing::{CredentialsSettings, KekProviderKind, RoutingSettings, VaultSettings};
pub use sections::{
    ApiServerSettings, AuditSettings, BudgetSettings, CacheSettings, ComplianceSettings, DatabaseSettings,
    LimitSettings, LogFormat, McpSettings, OidcSettings, PolicySettings, ProxySettings, RedisSettings,
    ResponsesSettings, SecuritySettings, SemanticCacheSettings, SemanticKeyText, ServerSettings, StorageSettings,
    TelemetrySettings, UnpricedModels,
};
pub use values::{Cidr, Seconds, parse_cidr};
pub use worker::{AlertSettings, ArchiveSettings, WebhookFormat, WebhookSettings, WorkerSettings};

/// Why configuration could not be loaded. Every variant names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read or parsed as YAML.
    #[error("cannot read config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A field has a bad value or an unknown key was given.
    #[error("invalid configuration at `{field}`: {message}")]
    Field {
        /// Dotted path of the field, e.g. `model_list[0].litellm_params.api_key`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field { field: field.into(), message: message.into() }
    }
}

/// Everything a Flowgate process can be configured with. Each service reads its own section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Listener and shutdown settings shared by every service.
    pub server: ServerSettings,
    /// The data plane.
    pub proxy: ProxySettings,
    /// The management plane.
    pub api_server: ApiServerSettings,
    /// Content scanning.
    pub compliance: ComplianceSettings,
    /// Rule-set evaluation.
    pub policy: PolicySettings,
    /// Where embedded data lives.
    pub storage: StorageSettings,
    /// PostgreSQL (or an explicit SQLite URL).
    pub database: DatabaseSettings,
    /// Redis for state shared by replicas.
    pub redis: RedisSettings,
    /// Admin key and key-hashing secret.
    pub security: SecuritySettings,
    /// Default limits for virtual keys.
    pub limits: LimitSettings,
    /// How budgets treat what cannot be priced.
    pub budgets: BudgetSettings,
    /// Response caching.
    pub cache: CacheSettings,
    /// MCP gateway switch.
    pub mcp: McpSettings,
    /// The upstream MCP servers the gateway aggregates, by name (used when `mcp.enabled`).
    pub mcp_servers: std::collections::BTreeMap<String, McpServerSettings>,
    /// The remote A2A agents the gateway routes to, by name (used when `mcp.enabled`).
    pub a2a_agents: std::collections::BTreeMap<String, A2aAgentSettings>,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// The audit trail.
    pub audit: AuditSettings,
    /// The Responses API's conversation state.
    pub responses: ResponsesSettings,
    /// The background job runner.
    pub worker: WorkerSettings,
    /// LiteLLM-compatible model deployments.
    pub model_list: Vec<ModelEntry>,
    /// LiteLLM-compatible routing settings.
    pub router_settings: RouterSettings,
    /// How proxies follow deployments written through `/api/routing`.
    pub routing: RoutingSettings,
    /// The key-encryption key of provider credentials (`/api/credentials`).
    pub credentials: CredentialsSettings,
    /// What the LiteLLM compatibility pass mapped and ignored (`litellm_settings`,
    /// `general_settings` and LiteLLM's other fields are read there, never kept as sections).
    #[serde(skip)]
    pub compat: Compat,
}

impl Settings {
    /// The SQLite file used when no `DATABASE_URL` is set.
    pub fn sqlite_path(&self) -> PathBuf {
        self.storage.data_dir.join("flowgate.db")
    }

    /// Path of a file in the data directory.
    pub fn data_file(&self, name: impl AsRef<Path>) -> PathBuf {
        self.storage.data_dir.join(name)
    }
}
