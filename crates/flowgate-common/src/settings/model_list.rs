//! The LiteLLM-compatible sections: `model_list` (deployments and how to reach them) and
//! `router_settings` (load balancing, retries, timeouts, fallbacks, cooldowns).

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

use super::values::Seconds;

/// One deployment of a model, as in LiteLLM's `model_list`. Fields LiteLLM knows and Flowgate
/// does not are reported at start and removed before this is read (see `litellm.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The name clients ask for.
    pub model_name: String,
    /// How to reach the deployment (`params` is accepted as an alias).
    #[serde(alias = "params")]
    pub litellm_params: ModelParams,
    /// What is known about the model: its deployment id, mode, prices and context window.
    #[serde(default)]
    pub model_info: ModelInfo,
    /// Requests per minute, LiteLLM's entry-level spelling (`litellm_params.rpm` wins).
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute, LiteLLM's entry-level spelling (`litellm_params.tpm` wins).
    #[serde(default)]
    pub tpm: Option<u32>,
}

impl ModelEntry {
    /// Requests per minute this deployment accepts (`litellm_params.rpm`, else the entry's `rpm`).
    pub fn rpm(&self) -> Option<u32> {
        self.litellm_params.rpm.or(self.rpm)
    }

    /// Tokens per minute this deployment accepts (`litellm_params.tpm`, else the entry's `tpm`).
    pub fn tpm(&self) -> Option<u32> {
        self.litellm_params.tpm.or(self.tpm)
    }

    /// USD per prompt token: `litellm_params`, else `model_info`.
    pub fn input_cost_per_token(&self) -> Option<f64> {
        self.litellm_params.input_cost_per_token.or(self.model_info.input_cost_per_token)
    }

    /// USD per completion token: `litellm_params`, else `model_info`.
    pub fn output_cost_per_token(&self) -> Option<f64> {
        self.litellm_params.output_cost_per_token.or(self.model_info.output_cost_per_token)
    }
}

/// LiteLLM's `model_info`: the fields Flowgate reads, and the rest kept as metadata.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelInfo {
    /// The deployment's id (a metrics label and the `/api/providers/perf` key). Default
    /// `{model_name}/{index}`.
    #[serde(default)]
    pub id: Option<String>,
    /// `chat`, `completion`, `responses`, `embedding`, `image_generation`, `audio_*`, ...: which
    /// endpoints the deployment serves (see docs/configuration.md). Unset: every endpoint.
    #[serde(default)]
    pub mode: Option<String>,
    /// The model the prices are looked up for when the upstream name is not in the table.
    #[serde(default)]
    pub base_model: Option<String>,
    /// USD per prompt token, when `litellm_params` sets none.
    #[serde(default)]
    pub input_cost_per_token: Option<f64>,
    /// USD per completion token, when `litellm_params` sets none.
    #[serde(default)]
    pub output_cost_per_token: Option<f64>,
    /// The context window, in tokens (LiteLLM's older spelling of `max_input_tokens`).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Most prompt tokens the model takes (`enable_pre_call_checks`).
    #[serde(default)]
    pub max_input_tokens: Option<u64>,
    /// Most tokens the model writes.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Everything else: metadata, kept as given.
    #[serde(flatten)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl ModelInfo {
    /// The context window, if known: `max_input_tokens`, else `max_tokens`.
    pub fn context_window(&self) -> Option<u64> {
        self.max_input_tokens.or(self.max_tokens)
    }
}

/// How to reach one deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// `provider/upstream-model`, e.g. `openai/gpt-4o-mini`, `anthropic/claude-3-5-haiku-latest`,
    /// `gemini/gemini-2.0-flash`, `mock/echo`; or a bare name of a well-known model
    /// (`gpt-4o-mini`, `claude-3-5-haiku-latest`, `gemini-2.0-flash`), resolved to its provider.
    /// A model without a known prefix and with an `api_base` is OpenAI-compatible.
    pub model: String,
    /// The provider, when `model` carries no prefix (LiteLLM's `custom_llm_provider`).
    #[serde(default)]
    pub custom_llm_provider: Option<String>,
    /// Base URL of the upstream API. Defaults per provider; required for azure and
    /// OpenAI-compatible servers without a preset.
    #[serde(default, alias = "base_url")]
    pub api_base: Option<String>,
    /// The provider key. Unset: the provider's usual environment variable (`OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`, ...), when set.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Azure `api-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The API the deployment is called with: `chat` (Chat Completions, the default) or
    /// `responses` (the OpenAI Responses API, for OpenAI, Azure and mock deployments). A
    /// `responses` deployment gets Responses requests as they were sent (built-in tools and every
    /// item type included) and chat or Anthropic requests translated.
    #[serde(default)]
    pub api: Option<UpstreamApi>,
    /// OpenAI organization (`OpenAI-Organization` header).
    #[serde(default)]
    pub organization: Option<String>,
    /// Requests per minute this deployment accepts: at the limit the router skips it until the
    /// minute is over; also its weight when `weight` is unset. Unset: unlimited.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens per minute this deployment accepts: at the limit the router skips it until the
    /// minute is over; also its weight when neither `weight` nor `rpm` is set. Unset: unlimited.
    #[serde(default)]
    pub tpm: Option<u32>,
    /// Relative weight for `simple-shuffle`. Default: `rpm`, else `tpm`, else 1.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Per-request timeout in seconds, overriding `router_settings.timeout`.
    #[serde(default)]
    pub timeout: Option<Seconds>,
    /// Timeout of streamed requests in seconds (until the response head). Default: `timeout`.
    #[serde(default)]
    pub stream_timeout: Option<Seconds>,
    /// Retries on this deployment, overriding `router_settings.num_retries`.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// USD per prompt token. Unset: `model_info`, the built-in price table, else 0.
    #[serde(default)]
    pub input_cost_per_token: Option<f64>,
    /// USD per completion token. Unset: `model_info`, the built-in price table, else 0.
    #[serde(default)]
    pub output_cost_per_token: Option<f64>,
    /// Extra headers sent upstream (`headers` is accepted as an alias).
    #[serde(default, alias = "headers")]
    pub extra_headers: BTreeMap<String, String>,
    /// Default request parameters (`temperature`, `max_tokens`, `top_p`, `stop`, ...): LiteLLM
    /// takes them as members of `litellm_params`; they are gathered here while loading and
    /// merged under the client's own values on every request.
    #[serde(default)]
    pub request_defaults: serde_json::Map<String, serde_json::Value>,
    /// Bedrock: AWS access key id (else `AWS_ACCESS_KEY_ID`).
    #[serde(default)]
    pub aws_access_key_id: Option<SecretString>,
    /// Bedrock: AWS secret access key (else `AWS_SECRET_ACCESS_KEY`).
    #[serde(default)]
    pub aws_secret_access_key: Option<SecretString>,
    /// Bedrock: AWS session token for temporary credentials (else `AWS_SESSION_TOKEN`).
    #[serde(default)]
    pub aws_session_token: Option<SecretString>,
    /// Bedrock: AWS region (else `AWS_REGION_NAME`, `AWS_REGION`, `AWS_DEFAULT_REGION`).
    #[serde(default)]
    pub aws_region_name: Option<String>,
    /// Bedrock: endpoint instead of `https://bedrock-runtime.{region}.amazonaws.com`.
    #[serde(default)]
    pub aws_bedrock_runtime_endpoint: Option<String>,
    /// Vertex AI: the Google Cloud project (else `VERTEXAI_PROJECT`, `GOOGLE_CLOUD_PROJECT`).
    #[serde(default)]
    pub vertex_project: Option<String>,
    /// Vertex AI: the region (`us-central1`, ...; else `VERTEXAI_LOCATION`).
    #[serde(default)]
    pub vertex_location: Option<String>,
    /// Vertex AI: a service-account key, as a JSON file path or the JSON itself (else
    /// `GOOGLE_APPLICATION_CREDENTIALS`).
    #[serde(default)]
    pub vertex_credentials: Option<SecretString>,
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

/// The API a deployment is called with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamApi {
    /// Chat Completions (`/chat/completions`; Anthropic deployments: Messages).
    #[default]
    #[serde(alias = "chat_completions")]
    Chat,
    /// The OpenAI Responses API (`/responses`).
    Responses,
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
    /// Fewest tokens used this minute (LiteLLM's `usage-based-routing` and `-v2`).
    UsageBasedRouting,
    /// Lowest price per token.
    CostBasedRouting,
}

impl TryFrom<String> for RoutingStrategy {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "simple-shuffle" => Ok(Self::SimpleShuffle),
            "least-busy" => Ok(Self::LeastBusy),
            "latency-based-routing" => Ok(Self::LatencyBasedRouting),
            "usage-based-routing" | "usage-based-routing-v2" => Ok(Self::UsageBasedRouting),
            "cost-based-routing" => Ok(Self::CostBasedRouting),
            other => Err(format!(
                "unknown routing strategy `{other}`; expected simple-shuffle, least-busy, latency-based-routing, \
                 usage-based-routing, usage-based-routing-v2 or cost-based-routing"
            )),
        }
    }
}

impl RoutingStrategy {
    /// The name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SimpleShuffle => "simple-shuffle",
            Self::LeastBusy => "least-busy",
            Self::LatencyBasedRouting => "latency-based-routing",
            Self::UsageBasedRouting => "usage-based-routing",
            Self::CostBasedRouting => "cost-based-routing",
        }
    }
}

/// A `model_group_alias` target: a model name, or `{model, hidden}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AliasTarget {
    /// The model name the alias stands for (listed in `/v1/models`).
    Name(String),
    /// The model name, and whether the alias is left out of `/v1/models`.
    Detailed {
        /// The model name the alias stands for.
        model: String,
        /// Left out of `/v1/models`. Default false.
        #[serde(default)]
        hidden: bool,
    },
}

impl AliasTarget {
    /// The model name the alias stands for.
    pub fn model(&self) -> &str {
        match self {
            Self::Name(model) | Self::Detailed { model, .. } => model,
        }
    }

    /// Whether `/v1/models` leaves the alias out.
    pub fn hidden(&self) -> bool {
        matches!(self, Self::Detailed { hidden: true, .. })
    }
}

/// A failure, as LiteLLM's `retry_policy` and `allowed_fails_policy` classify them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 400 (and other client errors).
    BadRequest,
    /// 401 / 403 from the provider.
    Authentication,
    /// No answer in time.
    Timeout,
    /// 429.
    RateLimit,
    /// The provider refused the content (a safety block, a content filter).
    ContentPolicyViolation,
    /// 5xx, or the connection broke.
    InternalServer,
}

/// A number per [`FailureClass`], in LiteLLM's spelling (`BadRequestErrorRetries`, ...,
/// `BadRequestErrorAllowedFails`, ...). Unset classes fall back to the router-wide number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerFailure {
    /// For [`FailureClass::BadRequest`].
    pub bad_request: Option<u32>,
    /// For [`FailureClass::Authentication`].
    pub authentication: Option<u32>,
    /// For [`FailureClass::Timeout`].
    pub timeout: Option<u32>,
    /// For [`FailureClass::RateLimit`].
    pub rate_limit: Option<u32>,
    /// For [`FailureClass::ContentPolicyViolation`].
    pub content_policy_violation: Option<u32>,
    /// For [`FailureClass::InternalServer`].
    pub internal_server: Option<u32>,
}

impl PerFailure {
    /// The number for `class`, if set.
    pub fn get(&self, class: FailureClass) -> Option<u32> {
        match class {
            FailureClass::BadRequest => self.bad_request,
            FailureClass::Authentication => self.authentication,
            FailureClass::Timeout => self.timeout,
            FailureClass::RateLimit => self.rate_limit,
            FailureClass::ContentPolicyViolation => self.content_policy_violation,
            FailureClass::InternalServer => self.internal_server,
        }
    }

    fn parse(map: BTreeMap<String, u32>, suffix: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for (name, value) in map {
            let slot = match name.strip_suffix(suffix) {
                Some("BadRequestError") => &mut out.bad_request,
                Some("AuthenticationError") => &mut out.authentication,
                Some("TimeoutError") => &mut out.timeout,
                Some("RateLimitError") => &mut out.rate_limit,
                Some("ContentPolicyViolationError") => &mut out.content_policy_violation,
                Some("InternalServerError") => &mut out.internal_server,
                _ => {
                    return Err(format!(
                        "unknown entry `{name}`; expected BadRequestError{suffix}, AuthenticationError{suffix}, \
                         TimeoutError{suffix}, RateLimitError{suffix}, ContentPolicyViolationError{suffix} or \
                         InternalServerError{suffix}"
                    ));
                }
            };
            *slot = Some(value);
        }
        Ok(out)
    }
}

/// LiteLLM's `retry_policy`: retries per kind of failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, u32>")]
pub struct RetryPolicy(pub PerFailure);

impl TryFrom<BTreeMap<String, u32>> for RetryPolicy {
    type Error = String;

    fn try_from(map: BTreeMap<String, u32>) -> Result<Self, Self::Error> {
        PerFailure::parse(map, "Retries").map(Self)
    }
}

/// LiteLLM's `allowed_fails_policy`: failures per kind before a deployment cools down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, u32>")]
pub struct AllowedFailsPolicy(pub PerFailure);

impl TryFrom<BTreeMap<String, u32>> for AllowedFailsPolicy {
    type Error = String;

    fn try_from(map: BTreeMap<String, u32>) -> Result<Self, Self::Error> {
        PerFailure::parse(map, "AllowedFails").map(Self)
    }
}

/// LiteLLM-compatible `router_settings`. Fields LiteLLM knows and Flowgate does not are reported
/// at start and removed before this is read (see `litellm.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSettings {
    /// `simple-shuffle`, `least-busy`, `latency-based-routing`, `usage-based-routing(-v2)` or
    /// `cost-based-routing`.
    pub routing_strategy: RoutingStrategy,
    /// Retries after the first attempt (connect errors, 429, 5xx). Default 2.
    pub num_retries: u32,
    /// Retries per kind of failure, over `num_retries` (`{RateLimitErrorRetries: 5}`).
    pub retry_policy: RetryPolicy,
    /// Per-attempt timeout in seconds (until the response head). Default 600.
    pub timeout: Seconds,
    /// Per-attempt timeout of streamed requests in seconds. Default: `timeout`.
    pub stream_timeout: Option<Seconds>,
    /// Model names to try, in order, when every deployment of a model failed:
    /// `[{gpt-4o-mini: [claude-haiku]}]`.
    pub fallbacks: Vec<BTreeMap<String, Vec<String>>>,
    /// Model names tried, in order, by every model that has no `fallbacks` of its own.
    pub default_fallbacks: Vec<String>,
    /// Failures within a minute before a deployment is cooled down. Default 3.
    pub allowed_fails: u32,
    /// Failures per kind before a deployment cools down, over `allowed_fails`.
    pub allowed_fails_policy: AllowedFailsPolicy,
    /// Seconds a failing deployment is skipped. Default 30.
    pub cooldown_time: Seconds,
    /// No deployment ever cools down. Default false.
    pub disable_cooldowns: bool,
    /// Model names to try when the prompt does not fit a model's context window.
    pub context_window_fallbacks: Vec<BTreeMap<String, Vec<String>>>,
    /// Model names to try when the provider refused the content (safety block, content filter).
    pub content_policy_fallbacks: Vec<BTreeMap<String, Vec<String>>>,
    /// Other names for model names (`{gpt-4: gpt-4o}` or `{gpt-4: {model: gpt-4o, hidden: true}}`).
    pub model_group_alias: BTreeMap<String, AliasTarget>,
    /// Skip deployments whose context window (`model_info.max_input_tokens`) the prompt does not
    /// fit. Default false.
    pub enable_pre_call_checks: bool,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            routing_strategy: RoutingStrategy::SimpleShuffle,
            num_retries: 2,
            retry_policy: RetryPolicy::default(),
            timeout: Seconds::from_secs(600),
            stream_timeout: None,
            fallbacks: Vec::new(),
            default_fallbacks: Vec::new(),
            allowed_fails: 3,
            allowed_fails_policy: AllowedFailsPolicy::default(),
            cooldown_time: Seconds::from_secs(30),
            disable_cooldowns: false,
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
            model_group_alias: BTreeMap::new(),
            enable_pre_call_checks: false,
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
    /// The Gemini API (generativelanguage.googleapis.com).
    Gemini,
    /// Amazon Bedrock's Converse API.
    Bedrock,
    /// Google Vertex AI.
    VertexAi,
    /// Built-in deterministic fake, for demos, tests and benchmarks.
    Mock,
}

impl Provider {
    /// The name used in logs, metrics and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Bedrock => "bedrock",
            Self::VertexAi => "vertex_ai",
            Self::Mock => "mock",
        }
    }
}

/// Prefixes understood as OpenAI-compatible servers, with their default `api_base` and the
/// environment variable their key is read from when `api_key` is unset.
const OPENAI_COMPATIBLE: &[(&str, Option<&str>, Option<&str>)] = &[
    ("openai", Some("https://api.openai.com/v1"), Some("OPENAI_API_KEY")),
    ("text-completion-openai", Some("https://api.openai.com/v1"), Some("OPENAI_API_KEY")),
    ("hosted_vllm", None, Some("HOSTED_VLLM_API_KEY")),
    ("vllm", None, None),
    ("ollama", Some("http://127.0.0.1:11434/v1"), None),
    ("ollama_chat", Some("http://127.0.0.1:11434/v1"), None),
    ("groq", Some("https://api.groq.com/openai/v1"), Some("GROQ_API_KEY")),
    ("together_ai", Some("https://api.together.xyz/v1"), Some("TOGETHERAI_API_KEY")),
    ("mistral", Some("https://api.mistral.ai/v1"), Some("MISTRAL_API_KEY")),
    ("deepseek", Some("https://api.deepseek.com/v1"), Some("DEEPSEEK_API_KEY")),
    ("openrouter", Some("https://openrouter.ai/api/v1"), Some("OPENROUTER_API_KEY")),
    ("fireworks_ai", Some("https://api.fireworks.ai/inference/v1"), Some("FIREWORKS_AI_API_KEY")),
    ("xai", Some("https://api.x.ai/v1"), Some("XAI_API_KEY")),
    ("custom_openai", None, None),
    ("openai_like", None, None),
];

/// Prefixes of well-known model names written without a provider, and the provider LiteLLM
/// resolves them to.
const BARE_MODEL_PREFIXES: &[(&str, &str)] = &[
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding-", "openai"),
    ("davinci", "openai"),
    ("babbage", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "gemini"),
    ("text-embedding-004", "gemini"),
    ("gemini-embedding-", "gemini"),
    ("mistral-", "mistral"),
    ("open-mistral-", "mistral"),
    ("codestral-", "mistral"),
    ("deepseek-", "deepseek"),
];

/// The provider LiteLLM resolves a bare model name to, if it is a well-known one.
fn provider_of_bare_name(model: &str) -> Option<&'static str> {
    BARE_MODEL_PREFIXES
        .iter()
        .filter(|(prefix, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, provider)| *provider)
}

impl ModelParams {
    /// The provider prefix and the upstream model name: `provider/name`, or `custom_llm_provider`
    /// with the whole `model`, or a bare well-known name resolved to its provider.
    pub fn prefix_and_name(&self) -> (&str, &str) {
        if let Some(provider) = self.custom_llm_provider.as_deref().filter(|p| !p.is_empty()) {
            let name = self.model.strip_prefix(provider).and_then(|n| n.strip_prefix('/')).unwrap_or(&self.model);
            return (provider, name);
        }
        match self.model.split_once('/') {
            Some((prefix, name)) if is_known_prefix(prefix) => {
                // LiteLLM's `bedrock/converse/<model-id>` names the API as well.
                let name = if prefix == "bedrock" { name.strip_prefix("converse/").unwrap_or(name) } else { name };
                (prefix, name)
            }
            // An unknown prefix names an unknown provider, unless `api_base` makes the whole name
            // an OpenAI-compatible server's model (`meta-llama/Llama-3-8b`).
            Some((prefix, name)) if self.api_base.is_none() && provider_of_bare_name(&self.model).is_none() => {
                (prefix, name)
            }
            _ => match provider_of_bare_name(&self.model) {
                Some(provider) if self.api_base.is_none() => (provider, self.model.as_str()),
                _ => ("", self.model.as_str()),
            },
        }
    }

    /// The provider and the upstream model name.
    pub fn provider(&self) -> Result<(Provider, &str), String> {
        let (prefix, name) = self.prefix_and_name();
        match prefix {
            "azure" => Ok((Provider::Azure, name)),
            "anthropic" => Ok((Provider::Anthropic, name)),
            "gemini" => Ok((Provider::Gemini, name)),
            "bedrock" => Ok((Provider::Bedrock, name)),
            "vertex_ai" => Ok((Provider::VertexAi, name)),
            "mock" => Ok((Provider::Mock, name)),
            p if OPENAI_COMPATIBLE.iter().any(|(known, ..)| *known == p) => Ok((Provider::OpenAi, name)),
            _ if self.api_base.is_some() => Ok((Provider::OpenAi, self.model.as_str())),
            "" => Err(format!(
                "`{}` has no provider prefix and is not a model Flowgate knows by name; write `openai/{}`, \
                 `anthropic/...`, `gemini/...`, `bedrock/...`, `azure/...`, `mock/...`, or set api_base for an \
                 OpenAI-compatible server",
                self.model, self.model
            )),
            other => Err(format!(
                "unknown provider `{other}`; known: azure, anthropic, gemini, bedrock, vertex_ai, mock, {} (or set \
                 api_base for any OpenAI-compatible server)",
                OPENAI_COMPATIBLE.iter().map(|(p, ..)| *p).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The base URL to call: `api_base`, or the provider's well-known default.
    pub fn base_url(&self) -> Option<String> {
        if let Some(base) = &self.api_base {
            return Some(base.trim_end_matches('/').to_owned());
        }
        let (prefix, _) = self.prefix_and_name();
        match prefix {
            "anthropic" => Some("https://api.anthropic.com".to_owned()),
            "gemini" => Some("https://generativelanguage.googleapis.com".to_owned()),
            "bedrock" => match &self.aws_bedrock_runtime_endpoint {
                Some(endpoint) => Some(endpoint.trim_end_matches('/').to_owned()),
                None => self
                    .aws_region_name
                    .as_ref()
                    .map(|region| format!("https://bedrock-runtime.{region}.amazonaws.com")),
            },
            "vertex_ai" => self.vertex_location.as_ref().map(|location| match location.as_str() {
                "global" => "https://aiplatform.googleapis.com".to_owned(),
                _ => format!("https://{location}-aiplatform.googleapis.com"),
            }),
            _ => OPENAI_COMPATIBLE
                .iter()
                .find(|(known, ..)| *known == prefix)
                .and_then(|(_, base, _)| base.map(str::to_owned)),
        }
    }

    /// The environment variable the provider's key is read from when `api_key` is unset.
    pub fn key_env_var(&self) -> Option<&'static str> {
        match self.prefix_and_name().0 {
            "anthropic" => Some("ANTHROPIC_API_KEY"),
            "gemini" => Some("GEMINI_API_KEY"),
            "azure" => Some("AZURE_API_KEY"),
            prefix => OPENAI_COMPATIBLE.iter().find(|(known, ..)| *known == prefix).and_then(|(.., env)| *env),
        }
    }
}

/// Whether `prefix` names a provider Flowgate knows.
fn is_known_prefix(prefix: &str) -> bool {
    matches!(prefix, "azure" | "anthropic" | "gemini" | "bedrock" | "vertex_ai" | "mock")
        || OPENAI_COMPATIBLE.iter().any(|(known, ..)| *known == prefix)
}
