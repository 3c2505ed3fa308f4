//! Data-plane metric families. Labels are model names and deployment ids from configuration, never
//! key ids, so cardinality is bounded by the model list.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use flowgate_common::metrics::{Metrics, latency_histogram};

/// `{model}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ModelLabels {
    /// Model name asked for.
    pub model: String,
}

/// `{model, kind}` labels for tokens.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TokenLabels {
    /// Model name asked for.
    pub model: String,
    /// `prompt` or `completion`.
    pub kind: &'static str,
}

/// `{deployment, provider, outcome}` labels for upstream attempts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AttemptLabels {
    /// Deployment id (`model_name/index`).
    pub deployment: String,
    /// `success`, `connect`, `timeout`, `rate_limited`, `server_error`, `client_error`.
    pub outcome: &'static str,
}

/// `{deployment}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeploymentLabels {
    /// Deployment id.
    pub deployment: String,
}

/// `{code}` labels for rejected requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabels {
    /// Error code (`rate_limit_exceeded`, `budget_exceeded`, `guardrail_blocked`, ...).
    pub code: String,
}

/// `{guardrail, action}` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GuardrailLabels {
    /// Guardrail name (from the catalog) or `policy:<name>`.
    pub guardrail: String,
    /// `redact`, `block`, `flag`, `allow`, ...
    pub action: String,
}

/// The proxy's metric families.
#[derive(Clone, Debug)]
pub(crate) struct ProxyMetrics {
    /// `flowgate_upstream_attempts_total`.
    pub attempts: Family<AttemptLabels, Counter>,
    /// `flowgate_upstream_latency_seconds`: time to the upstream's response head.
    pub upstream_latency: Family<DeploymentLabels, Histogram, fn() -> Histogram>,
    /// `flowgate_time_to_first_token_seconds`, streams only.
    pub ttft: Family<ModelLabels, Histogram, fn() -> Histogram>,
    /// `flowgate_tokens_total`.
    pub tokens: Family<TokenLabels, Counter>,
    /// `flowgate_deployment_cooldowns_total`.
    pub cooldowns: Family<DeploymentLabels, Counter>,
    /// `flowgate_fallbacks_total{model}`: requests served by a fallback model.
    pub fallbacks: Family<ModelLabels, Counter>,
    /// `flowgate_requests_rejected_total{code}`: requests answered with an error, by code.
    pub rejected: Family<CodeLabels, Counter>,
    /// `flowgate_guardrail_actions_total{guardrail, action}`.
    pub guardrail_actions: Family<GuardrailLabels, Counter>,
}

impl ProxyMetrics {
    /// Counts the guardrail actions of one audit record.
    pub(crate) fn count_guardrail_actions(&self, actions: &[serde_json::Value]) {
        for action in actions {
            let label =
                |field: &str| action.get(field).and_then(serde_json::Value::as_str).unwrap_or("unknown").to_owned();
            self.guardrail_actions
                .get_or_create(&GuardrailLabels { guardrail: label("guardrail"), action: label("action") })
                .inc();
        }
    }
}

impl ProxyMetrics {
    /// Registers the families in `metrics`.
    pub(crate) fn register(metrics: &Metrics) -> Self {
        let this = Self {
            attempts: Family::default(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            ttft: Family::new_with_constructor(latency_histogram),
            tokens: Family::default(),
            cooldowns: Family::default(),
            fallbacks: Family::default(),
            rejected: Family::default(),
            guardrail_actions: Family::default(),
        };
        metrics.register("upstream_attempts", "Upstream attempts by deployment and outcome", this.attempts.clone());
        metrics.register(
            "upstream_latency_seconds",
            "Time to the upstream response head",
            this.upstream_latency.clone(),
        );
        metrics.register("time_to_first_token_seconds", "Time to the first streamed byte", this.ttft.clone());
        metrics.register("tokens", "Tokens by model and kind", this.tokens.clone());
        metrics.register("deployment_cooldowns", "Deployments put into cooldown", this.cooldowns.clone());
        metrics.register("fallbacks", "Requests served by a fallback model", this.fallbacks.clone());
        metrics.register("requests_rejected", "Requests answered with an error, by error code", this.rejected.clone());
        metrics.register(
            "guardrail_actions",
            "Guardrail actions by guardrail and action",
            this.guardrail_actions.clone(),
        );
        this
    }
}
