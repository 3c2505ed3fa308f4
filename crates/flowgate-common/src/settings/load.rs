//! Loading settings in layers (defaults < YAML < `FLOWGATE__…` env < the seeds' env names) and
//! turning them into [`Settings`] with `serde_path_to_error`, so a bad value names its field.

use std::collections::HashMap;
use std::path::PathBuf;

use secrecy::SecretString;

use super::{ConfigError, Settings};

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
            if let Ok(text) = std::fs::read_to_string(path) {
                super::guard::check(&text).map_err(|refusal| refusal.into_error(path))?;
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
}
