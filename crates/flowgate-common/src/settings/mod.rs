//! The configuration model and its loader.
//!
//! Precedence, lowest to highest:
//! 1. built-in defaults (the `Default` impls below);
//! 2. the YAML file given by `--config` or `FLOWGATE_CONFIG`;
//! 3. `FLOWGATE__SECTION__KEY` environment variables (e.g. `FLOWGATE__PROXY__PORT=8000`);
//! 4. the seeds' environment names (`DATABASE_URL`, `REDIS_URL`, `ADMIN_API_KEY`, ... see
//!    [`SEED_ENV`]).
//!
//! Unknown keys and bad values are errors that name the field (`proxy.port: invalid digit ...`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

#[cfg(test)]
mod tests;

/// Environment variable naming the YAML config file.
pub const ENV_CONFIG: &str = "FLOWGATE_CONFIG";
/// Prefix of the structured overrides: `FLOWGATE__SECTION__KEY`.
pub const ENV_PREFIX: &str = "FLOWGATE";

/// The seeds' environment names and the setting each one sets. They win over everything else,
/// because existing deployments already set them.
pub const SEED_ENV: &[(&str, &str)] = &[
    ("FLOWGATE_DATA_DIR", "storage.data_dir"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    // KEYSTORE_REDIS_URL is listed after REDIS_URL so it wins when both are set.
    ("KEYSTORE_REDIS_URL", "redis.url"),
    ("ADMIN_API_KEY", "security.admin_api_key"),
    ("RATE_LIMIT_REQUESTS_PER_HOUR", "limits.requests_per_hour"),
    ("SEMANTIC_CACHE_THRESHOLD", "cache.semantic_threshold"),
    ("COMPLIANCE_TIMEOUT_SECS", "compliance.timeout_secs"),
    ("MCP_GATEWAY_ENABLED", "mcp.enabled"),
    ("DISPATCH_STREAM_TIMEOUT_S", "proxy.stream_timeout_secs"),
    ("LOG_LEVEL", "telemetry.log_level"),
    ("LOG_FORMAT", "telemetry.log_format"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
];

/// Settings keys that hold lists and may be given in env as comma-separated values.
const LIST_KEYS: &[&str] = &["proxy.trusted_proxies"];

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
    /// Response caching.
    pub cache: CacheSettings,
    /// MCP gateway switch.
    pub mcp: McpSettings,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
    /// The audit trail.
    pub audit: AuditSettings,
    /// LiteLLM-compatible model deployments.
    pub model_list: Vec<ModelEntry>,
    /// LiteLLM-compatible routing settings.
    pub router_settings: RouterSettings,
    /// Accepted for LiteLLM config compatibility and ignored (a warning is logged).
    pub litellm_settings: Option<serde_json::Value>,
    /// Accepted for LiteLLM config compatibility and ignored (a warning is logged).
    pub general_settings: Option<serde_json::Value>,
}

/// Listener settings shared by every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to bind. Default `0.0.0.0`.
    pub host: String,
    /// Seconds in-flight requests (streams included) get to finish after SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self { host: "0.0.0.0".to_owned(), shutdown_grace_secs: 30 }
    }
}

/// The management plane's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiServerSettings {
    /// HTTP and gRPC port (one socket serves both). Default 7778.
    pub port: u16,
}

impl Default for ApiServerSettings {
    fn default() -> Self {
        Self { port: 7778 }
    }
}

/// The policy service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// HTTP and gRPC port (one socket serves both). Default 7782.
    pub port: u16,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self { port: 7782 }
    }
}

/// The data plane's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// HTTP port. Default 7775.
    pub port: u16,
    /// The api-server's gRPC endpoint, for key resolution. Default `http://127.0.0.1:7778`.
    pub api_server_url: String,
    /// The compliance service's gRPC endpoint. Default `http://127.0.0.1:7777`.
    pub compliance_url: String,
    /// The policy service's gRPC endpoint. Default `http://127.0.0.1:7782`.
    pub policy_url: String,
    /// Largest request body accepted, in bytes; bigger bodies get 413. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Longest a streamed response may last, in seconds (`DISPATCH_STREAM_TIMEOUT_S`). Default 600.
    pub stream_timeout_secs: u64,
    /// Peers (CIDRs) whose `X-Forwarded-For` is trusted, e.g. Caddy's address. Default none.
    pub trusted_proxies: Vec<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            port: 7775,
            api_server_url: "http://127.0.0.1:7778".to_owned(),
            compliance_url: "http://127.0.0.1:7777".to_owned(),
            policy_url: "http://127.0.0.1:7782".to_owned(),
            max_body_bytes: 10 * 1024 * 1024,
            stream_timeout_secs: 600,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The compliance service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceSettings {
    /// HTTP and gRPC port. Default 7777.
    pub port: u16,
    /// Longest a scan may take before the guardrail fails closed (`COMPLIANCE_TIMEOUT_SECS`).
    /// Default 8.
    pub timeout_secs: u64,
}

impl Default for ComplianceSettings {
    fn default() -> Self {
        Self { port: 7777, timeout_secs: 8 }
    }
}

/// Where embedded data lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Directory for the SQLite file, the generated admin key and the audit spool
    /// (`FLOWGATE_DATA_DIR`). Default `./data`.
    pub data_dir: PathBuf,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./data") }
    }
}

/// The SQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://...` or `sqlite://...` (`DATABASE_URL`). Unset: a SQLite file in the data
    /// directory.
    pub url: Option<SecretString>,
    /// Pool size. Default 10.
    pub max_connections: u32,
    /// Seconds to wait for a connection. Default 5.
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: None, max_connections: 10, connect_timeout_secs: 5 }
    }
}

/// Redis, for rate-limit windows, spend and cache shared by replicas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://...` (`KEYSTORE_REDIS_URL` or `REDIS_URL`). Unset: in-process state.
    pub url: Option<SecretString>,
    /// Prefix of every key and channel Flowgate uses, so one Redis can serve several
    /// installations. Default `flowgate:`.
    pub prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self { url: None, prefix: "flowgate:".to_owned() }
    }
}

/// Secrets that protect the management plane and the key store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Bearer token for the management API (`ADMIN_API_KEY`).
    pub admin_api_key: Option<SecretString>,
    /// Server secret for the keyed hash of virtual keys. Unset in `all` mode: generated once into
    /// the data directory.
    pub key_hash_secret: Option<SecretString>,
}

/// Defaults for virtual keys that set no limit of their own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Requests per hour per key (`RATE_LIMIT_REQUESTS_PER_HOUR`). 0 = unlimited. Default 0.
    pub requests_per_hour: u32,
}

/// Response caching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Exact-match response caching (`FLOWGATE__CACHE__ENABLED`). Default off: answers of the same
    /// request are then served from the cache instead of the model.
    pub enabled: bool,
    /// How long an answer stays cached, in seconds. Default 3600.
    pub ttl_secs: u64,
    /// Answers held in each process's memory (Redis, when configured, holds them for all
    /// replicas). Default 10,000.
    pub max_entries: u64,
    /// Largest answer stored, in bytes; larger ones pass uncached. Default 1 MiB.
    pub max_entry_bytes: usize,
    /// Cosine similarity above which a semantic-cache entry is a hit (`SEMANTIC_CACHE_THRESHOLD`).
    /// Default 0.90.
    pub semantic_threshold: f64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { enabled: false, ttl_secs: 3600, max_entries: 10_000, max_entry_bytes: 1 << 20, semantic_threshold: 0.90 }
    }
}

/// The MCP gateway.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpSettings {
    /// Whether MCP routes are served (`MCP_GATEWAY_ENABLED`). Default false.
    pub enabled: bool,
}

/// The audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Write one audit record per proxied request. Default true; turning it off is meant for
    /// benchmarks and throwaway setups, not for production.
    pub enabled: bool,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// `tracing` filter directive (`LOG_LEVEL`), e.g. `info` or `flowgate_proxy=debug`. Default `info`.
    pub log_level: String,
    /// `text` or `json` (`LOG_FORMAT`). Default `text`.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`). Unset: no trace export.
    pub otlp_endpoint: Option<String>,
    /// Fraction of traces sampled, 0.0–1.0. Default 1.0.
    pub trace_sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self { log_level: "info".to_owned(), log_format: LogFormat::Text, otlp_endpoint: None, trace_sample_ratio: 1.0 }
    }
}

/// One deployment of a model, as in LiteLLM's `model_list`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The name clients ask for.
    pub model_name: String,
    /// How to reach the deployment (`params` is accepted as an alias).
    #[serde(alias = "params")]
    pub litellm_params: ModelParams,
    /// Free-form metadata, kept for LiteLLM compatibility.
    #[serde(default)]
    pub model_info: Option<serde_json::Value>,
}

/// How to reach one deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// `provider/upstream-model`, e.g. `openai/gpt-4o-mini`, `anthropic/claude-3-5-haiku-latest`,
    /// `mock/echo`. A model without a known prefix and with an `api_base` is OpenAI-compatible.
    pub model: String,
    /// Base URL of the upstream API. Defaults per provider (OpenAI, Anthropic); required for azure
    /// and OpenAI-compatible servers.
    #[serde(default)]
    pub api_base: Option<String>,
    /// The provider key, or `os.environ/NAME` to read it from the environment at start.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Azure `api-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Requests per minute this deployment accepts; used by routing. Unset: unlimited.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute this deployment accepts. Unset: unlimited.
    #[serde(default)]
    pub tpm: Option<u32>,
    /// Relative weight for `simple-shuffle`. Default 1.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Per-request timeout in seconds, overriding `router_settings.timeout`.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Retries on this deployment, overriding `router_settings.num_retries`.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// USD per prompt token. Unset: the built-in price table, else 0.
    #[serde(default)]
    pub input_cost_per_token: Option<f64>,
    /// USD per completion token. Unset: the built-in price table, else 0.
    #[serde(default)]
    pub output_cost_per_token: Option<f64>,
    /// Extra headers sent upstream.
    #[serde(default)]
    pub extra_headers: BTreeMap<String, String>,
    /// `mock` provider: fixed answer text. Default: echoes the last user message.
    #[serde(default)]
    pub mock_response: Option<String>,
    /// `mock` provider: milliseconds before the first byte. Default 0.
    #[serde(default)]
    pub mock_latency_ms: Option<u64>,
    /// `mock` provider: milliseconds between streamed chunks. Default 0.
    #[serde(default)]
    pub mock_chunk_delay_ms: Option<u64>,
    /// `mock` provider: how many chunks a streamed answer has. Default: one per word.
    #[serde(default)]
    pub mock_chunks: Option<u32>,
}

/// Load-balancing strategy over the deployments of one model name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum RoutingStrategy {
    /// Weighted random choice (LiteLLM's default).
    #[default]
    SimpleShuffle,
    /// Fewest requests in flight.
    LeastBusy,
    /// Lowest recent latency, with exploration.
    LatencyBasedRouting,
}

impl TryFrom<String> for RoutingStrategy {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "simple-shuffle" => Ok(Self::SimpleShuffle),
            "least-busy" => Ok(Self::LeastBusy),
            "latency-based-routing" => Ok(Self::LatencyBasedRouting),
            other => Err(format!(
                "unknown routing strategy `{other}`; expected simple-shuffle, least-busy or latency-based-routing"
            )),
        }
    }
}

/// LiteLLM-compatible `router_settings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSettings {
    /// `simple-shuffle`, `least-busy` or `latency-based-routing`.
    pub routing_strategy: RoutingStrategy,
    /// Retries after the first attempt (connect errors, 429, 5xx). Default 2.
    pub num_retries: u32,
    /// Per-attempt timeout in seconds (until the response head). Default 600.
    pub timeout: f64,
    /// Model names to try, in order, when every deployment of a model failed:
    /// `[{gpt-4o-mini: [claude-haiku]}]`.
    pub fallbacks: Vec<BTreeMap<String, Vec<String>>>,
    /// Failures within a minute before a deployment is cooled down. Default 3.
    pub allowed_fails: u32,
    /// Seconds a failing deployment is skipped. Default 30.
    pub cooldown_time: f64,
    /// Accepted for LiteLLM compatibility; treated like `fallbacks`.
    pub context_window_fallbacks: Vec<BTreeMap<String, Vec<String>>>,
    /// Accepted for LiteLLM compatibility; treated like `fallbacks`.
    pub content_policy_fallbacks: Vec<BTreeMap<String, Vec<String>>>,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            routing_strategy: RoutingStrategy::SimpleShuffle,
            num_retries: 2,
            timeout: 600.0,
            fallbacks: Vec::new(),
            allowed_fails: 3,
            cooldown_time: 30.0,
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
        }
    }
}

/// Providers the data plane knows how to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// api.openai.com or any OpenAI-compatible server.
    OpenAi,
    /// Azure OpenAI (deployment + api-version).
    Azure,
    /// api.anthropic.com.
    Anthropic,
    /// Built-in deterministic fake, for demos, tests and benchmarks.
    Mock,
}

/// Prefixes understood as OpenAI-compatible servers (they need or have a known `api_base`).
const OPENAI_COMPATIBLE: &[(&str, Option<&str>)] = &[
    ("openai", Some("https://api.openai.com/v1")),
    ("text-completion-openai", Some("https://api.openai.com/v1")),
    ("hosted_vllm", None),
    ("vllm", None),
    ("ollama", Some("http://127.0.0.1:11434/v1")),
    ("ollama_chat", Some("http://127.0.0.1:11434/v1")),
    ("groq", Some("https://api.groq.com/openai/v1")),
    ("together_ai", Some("https://api.together.xyz/v1")),
    ("mistral", Some("https://api.mistral.ai/v1")),
    ("deepseek", Some("https://api.deepseek.com/v1")),
    ("openrouter", Some("https://openrouter.ai/api/v1")),
    ("fireworks_ai", Some("https://api.fireworks.ai/inference/v1")),
    ("xai", Some("https://api.x.ai/v1")),
    ("custom_openai", None),
];

impl ModelParams {
    /// The provider and the upstream model name, from `model` (`provider/name`).
    pub fn provider(&self) -> Result<(Provider, &str), String> {
        let (prefix, name) = match self.model.split_once('/') {
            Some((prefix, name)) => (prefix, name),
            None => ("", self.model.as_str()),
        };
        match prefix {
            "azure" => Ok((Provider::Azure, name)),
            "anthropic" => Ok((Provider::Anthropic, name)),
            "mock" => Ok((Provider::Mock, name)),
            p if OPENAI_COMPATIBLE.iter().any(|(known, _)| *known == p) => Ok((Provider::OpenAi, name)),
            _ if self.api_base.is_some() => Ok((Provider::OpenAi, self.model.as_str())),
            "" => Err(format!(
                "`{}` has no provider prefix; write `openai/{}`, `anthropic/...`, `azure/...`, `mock/...`, or set api_base for an OpenAI-compatible server",
                self.model, self.model
            )),
            other => Err(format!(
                "unknown provider `{other}`; known: azure, anthropic, mock, {} (or set api_base for any OpenAI-compatible server)",
                OPENAI_COMPATIBLE.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The base URL to call: `api_base`, or the provider's well-known default.
    pub fn base_url(&self) -> Option<String> {
        if let Some(base) = &self.api_base {
            return Some(base.trim_end_matches('/').to_owned());
        }
        let prefix = self.model.split_once('/').map_or("", |(p, _)| p);
        if prefix == "anthropic" {
            return Some("https://api.anthropic.com".to_owned());
        }
        OPENAI_COMPATIBLE.iter().find(|(known, _)| *known == prefix).and_then(|(_, base)| base.map(str::to_owned))
    }
}

/// Where settings come from. Tests build this by hand instead of touching the process env.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// YAML file, if any (`--config` / `FLOWGATE_CONFIG`).
    pub config_file: Option<PathBuf>,
    /// The environment to read overrides and `os.environ/` references from.
    pub env: HashMap<String, String>,
}

impl Sources {
    /// The process environment, and the config file from `explicit` or `FLOWGATE_CONFIG`.
    pub fn from_process(explicit: Option<PathBuf>) -> Self {
        let env: HashMap<String, String> = std::env::vars().collect();
        let config_file = explicit.or_else(|| env.get(ENV_CONFIG).filter(|v| !v.is_empty()).map(PathBuf::from));
        Self { config_file, env }
    }
}

impl Settings {
    /// Loads and validates settings from `sources`, in the documented precedence.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = &sources.config_file {
            if !path.is_file() {
                return Err(ConfigError::File { path: path.clone(), message: "no such file".to_owned() });
            }
            builder = builder.add_source(config::File::from(path.as_path()).format(config::FileFormat::Yaml));
        }
        // List-valued keys are split on commas here; everything else goes through `config`'s
        // environment source untouched (no number guessing, so a secret of digits stays a string).
        let mut structured_env = sources.env.clone();
        let mut lists = Vec::new();
        for key in LIST_KEYS {
            let name = format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase());
            if let Some(value) = structured_env.remove(&name) {
                let items: Vec<String> =
                    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                lists.push((*key, items));
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(structured_env)),
        );
        for (key, items) in lists {
            builder = builder.set_override(key, items).map_err(|e| ConfigError::field(key, e.to_string()))?;
        }
        for (name, key) in SEED_ENV {
            if let Some(value) = sources.env.get(*name).filter(|v| !v.is_empty()) {
                builder =
                    builder.set_override(*key, value.as_str()).map_err(|e| ConfigError::field(*key, e.to_string()))?;
            }
        }
        let built = builder.build().map_err(|error| match &sources.config_file {
            Some(path) => ConfigError::File { path: path.clone(), message: error.to_string() },
            None => ConfigError::field("(environment)", error.to_string()),
        })?;
        let mut settings: Settings = serde_path_to_error::deserialize(built).map_err(|error| {
            let path = error.path().to_string();
            ConfigError::field(path, error.into_inner().to_string())
        })?;
        settings.resolve_env_references(&sources.env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Replaces `os.environ/NAME` in provider keys with the variable's value.
    fn resolve_env_references(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        for (index, entry) in self.model_list.iter_mut().enumerate() {
            let Some(key) = &entry.litellm_params.api_key else { continue };
            if let Some(name) = key.expose_secret().strip_prefix("os.environ/") {
                let value = env.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                    ConfigError::field(
                        format!("model_list[{index}].litellm_params.api_key"),
                        format!("environment variable `{name}` is not set"),
                    )
                })?;
                entry.litellm_params.api_key = Some(SecretString::from(value.clone()));
            }
        }
        Ok(())
    }

    /// Checks what types alone cannot: known providers, required URLs, sane numbers, fallbacks that
    /// name real models.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let log_level = &self.telemetry.log_level;
        if log_level.trim().is_empty() {
            return Err(ConfigError::field("telemetry.log_level", "must not be empty"));
        }
        if self.cache.enabled && self.cache.ttl_secs == 0 {
            return Err(ConfigError::field("cache.ttl_secs", "must be at least 1 when the cache is enabled"));
        }
        if !(0.0..=1.0).contains(&self.cache.semantic_threshold) {
            return Err(ConfigError::field("cache.semantic_threshold", "must be between 0 and 1"));
        }
        if !(0.0..=1.0).contains(&self.telemetry.trace_sample_ratio) {
            return Err(ConfigError::field("telemetry.trace_sample_ratio", "must be between 0 and 1"));
        }
        if self.compliance.timeout_secs == 0 {
            return Err(ConfigError::field("compliance.timeout_secs", "must be at least 1"));
        }
        if self.proxy.max_body_bytes < 1024 {
            return Err(ConfigError::field("proxy.max_body_bytes", "must be at least 1024"));
        }
        for (index, cidr) in self.proxy.trusted_proxies.iter().enumerate() {
            parse_cidr(cidr)
                .map_err(|message| ConfigError::field(format!("proxy.trusted_proxies[{index}]"), message))?;
        }
        for (name, url) in [
            ("proxy.api_server_url", &self.proxy.api_server_url),
            ("proxy.compliance_url", &self.proxy.compliance_url),
            ("proxy.policy_url", &self.proxy.policy_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::field(name, "must start with http:// or https://"));
            }
        }
        for (index, entry) in self.model_list.iter().enumerate() {
            let at = |field: &str| format!("model_list[{index}].{field}");
            if entry.model_name.trim().is_empty() {
                return Err(ConfigError::field(at("model_name"), "must not be empty"));
            }
            let params = &entry.litellm_params;
            let (provider, upstream) =
                params.provider().map_err(|m| ConfigError::field(at("litellm_params.model"), m))?;
            if upstream.is_empty() {
                return Err(ConfigError::field(at("litellm_params.model"), "names no upstream model"));
            }
            if provider != Provider::Mock && params.base_url().is_none() {
                return Err(ConfigError::field(at("litellm_params.api_base"), "is required for this provider"));
            }
            if params.api_base.as_ref().is_some_and(|b| !(b.starts_with("http://") || b.starts_with("https://"))) {
                return Err(ConfigError::field(at("litellm_params.api_base"), "must start with http:// or https://"));
            }
            if provider == Provider::Azure && params.api_version.is_none() {
                return Err(ConfigError::field(at("litellm_params.api_version"), "is required for azure"));
            }
            if params.weight.is_some_and(|w| !(w.is_finite() && w >= 0.0)) {
                return Err(ConfigError::field(at("litellm_params.weight"), "must be a number >= 0"));
            }
            if params.timeout.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
                return Err(ConfigError::field(at("litellm_params.timeout"), "must be > 0 seconds"));
            }
            for (field, cost) in [
                ("litellm_params.input_cost_per_token", params.input_cost_per_token),
                ("litellm_params.output_cost_per_token", params.output_cost_per_token),
            ] {
                if cost.is_some_and(|c| !(c.is_finite() && c >= 0.0)) {
                    return Err(ConfigError::field(at(field), "must be a number >= 0"));
                }
            }
        }
        let router = &self.router_settings;
        if !(router.timeout.is_finite() && router.timeout > 0.0) {
            return Err(ConfigError::field("router_settings.timeout", "must be > 0 seconds"));
        }
        if !(router.cooldown_time.is_finite() && router.cooldown_time >= 0.0) {
            return Err(ConfigError::field("router_settings.cooldown_time", "must be >= 0 seconds"));
        }
        for (list_name, list) in [
            ("fallbacks", &router.fallbacks),
            ("context_window_fallbacks", &router.context_window_fallbacks),
            ("content_policy_fallbacks", &router.content_policy_fallbacks),
        ] {
            for (index, map) in list.iter().enumerate() {
                for (from, targets) in map {
                    for name in std::iter::once(from).chain(targets) {
                        if !self.model_list.iter().any(|m| &m.model_name == name) {
                            return Err(ConfigError::field(
                                format!("router_settings.{list_name}[{index}]"),
                                format!("model `{name}` is not in model_list"),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The SQLite file used when no `DATABASE_URL` is set.
    pub fn sqlite_path(&self) -> PathBuf {
        self.storage.data_dir.join("flowgate.db")
    }

    /// Path of a file in the data directory.
    pub fn data_file(&self, name: impl AsRef<Path>) -> PathBuf {
        self.storage.data_dir.join(name)
    }
}

/// Parses `a.b.c.d/n`, `a:b::/n` or a bare address (a /32 or /128). Returns (address, prefix).
pub fn parse_cidr(text: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: std::net::IpAddr = addr.trim().parse().map_err(|_| format!("`{text}` is not an IP address or CIDR"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{text}` has a prefix length outside 0..={max}"))?,
        None => max,
    };
    Ok((addr, prefix))
}
