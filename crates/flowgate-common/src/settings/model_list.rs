//! The LiteLLM-compatible sections: `model_list` (deployments and how to reach them) and
//! `router_settings` (load balancing, retries, timeouts, fallbacks, cooldowns).

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

use super::values::Seconds;

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
    /// The API the deployment is called with: `chat` (Chat Completions, the default) or
    /// `responses` (the OpenAI Responses API, for OpenAI, Azure and mock deployments). A
    /// `responses` deployment gets Responses requests as they were sent (built-in tools and every
    /// item type included) and chat or Anthropic requests translated.
    #[serde(default)]
    pub api: Option<UpstreamApi>,
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
    pub timeout: Option<Seconds>,
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
    pub timeout: Seconds,
    /// Model names to try, in order, when every deployment of a model failed:
    /// `[{gpt-4o-mini: [claude-haiku]}]`.
    pub fallbacks: Vec<BTreeMap<String, Vec<String>>>,
    /// Failures within a minute before a deployment is cooled down. Default 3.
    pub allowed_fails: u32,
    /// Seconds a failing deployment is skipped. Default 30.
    pub cooldown_time: Seconds,
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
            timeout: Seconds::from_secs(600),
            fallbacks: Vec::new(),
            allowed_fails: 3,
            cooldown_time: Seconds::from_secs(30),
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
