//! Loading settings in layers (defaults < YAML < `FLOWGATE__…` env < the seeds' env names) and
//! turning them into [`Settings`] with `serde_path_to_error`, so a bad value names its field.

use std::collections::HashMap;
use std::path::PathBuf;

use secrecy::SecretString;

use super::{ConfigError, ModelEntry, Settings};

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
    ("SEMANTIC_CACHE_THRESHOLD", "cache.semantic.threshold"),
    ("COMPLIANCE_TIMEOUT_SECS", "compliance.timeout_secs"),
    ("MCP_GATEWAY_ENABLED", "mcp.enabled"),
    ("DISPATCH_STREAM_TIMEOUT_S", "proxy.stream_timeout_secs"),
    ("LOG_LEVEL", "telemetry.log_level"),
    ("LOG_FORMAT", "telemetry.log_format"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("FLOWGATE_KEK", "credentials.kek"),
    ("FLOWGATE_KEK_FILE", "credentials.kek_file"),
    ("FLOWGATE_KEK_PREVIOUS", "credentials.previous_kek"),
    ("VAULT_ADDR", "credentials.vault.addr"),
    ("VAULT_TOKEN", "credentials.vault.token"),
    ("S3_ENDPOINT_URL", "audit.archive.endpoint_url"),
    ("S3_ACCESS_KEY_ID", "audit.archive.access_key_id"),
    ("S3_SECRET_ACCESS_KEY", "audit.archive.secret_access_key"),
    ("S3_BUCKET", "audit.archive.bucket"),
    ("OIDC_ISSUER_URL", "api_server.oidc.issuer_url"),
    ("OIDC_CLIENT_ID", "api_server.oidc.client_id"),
    ("OIDC_CLIENT_SECRET", "api_server.oidc.client_secret"),
    ("OIDC_ROLE_CLAIM", "api_server.oidc.role_claim"),
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
        // `environment_variables` of the file are laid over the process environment.
        let mut env = sources.env.clone();
        let mut compat = super::litellm::Compat::default();
        if let Some(path) = &sources.config_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::File { path: path.clone(), message: e.to_string() })?;
            super::guard::check(&text).map_err(|refusal| refusal.into_error(path))?;
            let mut tree = read_yaml(&text).map_err(|message| ConfigError::File { path: path.clone(), message })?;
            compat = super::litellm::normalise(&mut tree, &mut env)?;
            super::litellm::resolve_env_references(&mut tree, &env)?;
            // YAML is a superset of JSON: the normalised tree goes back in as a YAML source.
            let text = serde_json::to_string(&tree)
                .map_err(|e| ConfigError::File { path: path.clone(), message: e.to_string() })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Yaml));
        }
        // List-valued keys are split on commas here; everything else goes through `config`'s
        // environment source untouched (no number guessing, so a secret of digits stays a string).
        let mut structured_env = env.clone();
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
            if let Some(value) = env.get(*name).filter(|v| !v.is_empty()) {
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
        settings.compat = compat;
        settings.provider_keys_from_env(&env);
        settings.validate()?;
        Ok(settings)
    }

    /// Deployments without `api_key` (or AWS or Vertex AI credentials) take their provider's usual
    /// environment variables, as LiteLLM does: `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`,
    /// `GEMINI_API_KEY`, `AWS_ACCESS_KEY_ID`, `AWS_REGION_NAME`, `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `VERTEXAI_PROJECT`, `VERTEXAI_LOCATION`, ...
    fn provider_keys_from_env(&mut self, env: &HashMap<String, String>) {
        for entry in &mut self.model_list {
            entry.provider_keys_from_env(env);
        }
    }
}

impl ModelEntry {
    /// This deployment's missing provider credentials from their usual environment variables
    /// (see [`Settings`]' loading): what a proxy does with a deployment written through
    /// `/api/routing`, with its own environment.
    pub fn provider_keys_from_env(&mut self, env: &HashMap<String, String>) {
        let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        {
            let params = &mut self.litellm_params;
            if params.api_key.is_none()
                && let Some(value) = params.key_env_var().and_then(get)
            {
                params.api_key = Some(SecretString::from(value));
            }
            if params.prefix_and_name().0 == "vertex_ai" {
                if params.vertex_credentials.is_none() {
                    params.vertex_credentials = get("GOOGLE_APPLICATION_CREDENTIALS").map(SecretString::from);
                }
                if params.vertex_project.is_none() {
                    params.vertex_project = get("VERTEXAI_PROJECT").or_else(|| get("GOOGLE_CLOUD_PROJECT"));
                }
                if params.vertex_location.is_none() {
                    params.vertex_location = get("VERTEXAI_LOCATION");
                }
                return;
            }
            if params.prefix_and_name().0 != "bedrock" {
                return;
            }
            if params.aws_access_key_id.is_none() && params.aws_secret_access_key.is_none() {
                params.aws_access_key_id = get("AWS_ACCESS_KEY_ID").map(SecretString::from);
                params.aws_secret_access_key = get("AWS_SECRET_ACCESS_KEY").map(SecretString::from);
                if params.aws_session_token.is_none() {
                    params.aws_session_token = get("AWS_SESSION_TOKEN").map(SecretString::from);
                }
            }
            if params.aws_region_name.is_none() {
                params.aws_region_name =
                    get("AWS_REGION_NAME").or_else(|| get("AWS_REGION")).or_else(|| get("AWS_DEFAULT_REGION"));
            }
        }
    }
}

/// A YAML file as a JSON tree: its first document (an empty file is an empty mapping).
fn read_yaml(text: &str) -> Result<serde_json::Value, String> {
    let documents = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    match documents.first() {
        None | Some(yaml_rust2::Yaml::Null) => Ok(serde_json::Value::Object(serde_json::Map::new())),
        Some(document) => Ok(super::litellm::yaml_to_json(document)),
    }
}

/// One `model_list` entry given as JSON (a deployment written through `/api/routing`, or read
/// back from the database), read the way the config file's entries are: LiteLLM's fields mapped
/// or reported (`ignored`, paths inside the entry), request parameters gathered into
/// `request_defaults`, then typed (errors name the field inside the entry). With `env`,
/// `os.environ/NAME` references are resolved and missing provider keys taken from their usual
/// variables; without it, references stay as written (what the api-server stores).
pub fn model_entry_from_json(
    mut value: serde_json::Value,
    env: Option<&HashMap<String, String>>,
) -> Result<(ModelEntry, Vec<String>), ConfigError> {
    if !value.is_object() {
        return Err(ConfigError::field("(entry)", "must be a JSON object"));
    }
    let ignored = super::litellm::normalise_entry(&mut value);
    if let Some(env) = env {
        super::litellm::resolve_env_references(&mut value, env)?;
    }
    let mut entry: ModelEntry = serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        ConfigError::field(if path == "." { "(entry)".to_owned() } else { path }, error.into_inner().to_string())
    })?;
    if let Some(env) = env {
        entry.provider_keys_from_env(env);
    }
    Ok((entry, ignored))
}
