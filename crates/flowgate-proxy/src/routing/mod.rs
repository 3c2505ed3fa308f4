//! The routing table: model names → deployments, the load-balancing strategies, and per-deployment
//! health (in-flight count, latency, errors, cooldown).
//!
//! The table is immutable and swapped whole (`ArcSwap`) when the model list changes at run time;
//! health lives in a [`HealthRegistry`] keyed by deployment id, so it survives swaps (a deployment
//! replaced through `/api/routing` starts afresh). `live` follows the stored routing and swaps
//! the table when it changes.

pub(crate) mod live;
mod mode;
pub(crate) mod pricing;
mod stats;

pub(crate) use mode::{ModelMode, endpoint_name as mode_endpoint_name};

pub(crate) use stats::{DeploymentStats, InFlight, SHARED_WINDOW_TTL, unix_minute};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use flowgate_common::Settings;
use flowgate_common::settings::{ModelEntry, Provider, RouterSettings, RoutingStrategy};
use rand::Rng;
use rand::seq::IndexedRandom;
use secrecy::SecretString;

use crate::mock::MockParams;

/// Health of every deployment of the current table, by id.
#[derive(Debug, Default)]
pub(crate) struct HealthRegistry {
    stats: Mutex<HashMap<String, Arc<DeploymentStats>>>,
    /// Each deployment's version (the routing revision that last wrote it; 0 for the file's).
    versions: Mutex<HashMap<String, i64>>,
}

impl HealthRegistry {
    fn get(&self, id: &str) -> Arc<DeploymentStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).entry(id.to_owned()).or_default().clone()
    }

    /// Before a table is built from deployments at `versions`: the health of a deployment that
    /// is gone or whose version changed is dropped (a changed deployment starts afresh); the
    /// health of the others is kept. Requests still running on a dropped one keep its stats.
    pub(crate) fn keep(&self, versions: &HashMap<String, i64>) {
        let mut known = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats.retain(|id, _| versions.get(id).is_some_and(|v| known.get(id).is_none_or(|k| k == v)));
        known.clone_from(versions);
    }
}

/// One deployment of a model name.
#[derive(Debug)]
pub(crate) struct Deployment {
    /// Stable id: `{model_name}/{index}`; a metrics label and the `/api/providers/perf` key.
    pub id: String,
    /// The name clients ask for.
    pub model_name: String,
    /// Who serves it.
    pub provider: Provider,
    /// The format it is called in (Chat Completions, Anthropic Messages or Responses).
    pub format: crate::translate::ApiFormat,
    /// The provider's model name.
    pub upstream_model: String,
    /// Base URL (no trailing slash); empty for `mock`.
    pub base_url: String,
    /// Provider key.
    pub api_key: Option<SecretString>,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// OpenAI organization.
    pub organization: Option<String>,
    /// Bedrock's AWS credentials and region.
    pub aws: Option<AwsCredentials>,
    /// Vertex AI's project, location and service account.
    pub vertex: Option<VertexTarget>,
    /// Weight for `simple-shuffle`.
    pub weight: f64,
    /// Requests per minute the deployment accepts; at the limit the router skips it.
    pub rpm: Option<u32>,
    /// Tokens per minute the deployment accepts; at the limit the router skips it.
    pub tpm: Option<u32>,
    /// Most prompt tokens the model takes (`enable_pre_call_checks`).
    pub context_window: Option<u64>,
    /// Which endpoints it serves (`model_info.mode`).
    pub mode: ModelMode,
    /// Request parameters merged under the client's values (OpenAI names).
    pub request_defaults: serde_json::Map<String, serde_json::Value>,
    /// Timeout until the response head.
    pub timeout: Duration,
    /// Timeout until the response head of a streamed request.
    pub stream_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// USD per prompt token, when configured.
    pub input_cost_per_token: Option<f64>,
    /// USD per completion token, when configured.
    pub output_cost_per_token: Option<f64>,
    /// Extra headers sent upstream.
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Mock knobs (for `mock/...`).
    pub mock: MockParams,
    /// Live health.
    pub stats: Arc<DeploymentStats>,
    /// Its URLs, parsed once each.
    pub urls: crate::upstream::UrlCache,
}

/// AWS credentials for SigV4 signing, and the region they sign for.
#[derive(Debug, Clone)]
pub(crate) struct AwsCredentials {
    /// The access key id.
    pub access_key_id: SecretString,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token of temporary credentials.
    pub session_token: Option<SecretString>,
    /// The region (`us-east-1`).
    pub region: String,
}

/// Where a Vertex AI deployment lives, and its service account.
#[derive(Debug)]
pub(crate) struct VertexTarget {
    /// The Google Cloud project.
    pub project: String,
    /// The region (`us-central1`, `global`, ...).
    pub location: String,
    /// The service account (its token kept between requests), or why its key cannot be read.
    pub credentials: Result<Arc<crate::google_auth::Credentials>, String>,
}

/// Model names → deployments, fallbacks and router settings.
#[derive(Debug)]
pub(crate) struct RoutingTable {
    models: HashMap<String, Vec<Arc<Deployment>>>,
    /// Model names in configuration order (for `/v1/models`).
    pub names: Vec<String>,
    fallbacks: HashMap<String, Vec<String>>,
    /// `context_window_fallbacks`: tried when the prompt does not fit.
    context_window_fallbacks: HashMap<String, Vec<String>>,
    /// `content_policy_fallbacks`: tried when the provider refused the content.
    content_policy_fallbacks: HashMap<String, Vec<String>>,
    /// Model names that may be served by an unpriced deployment (their own, or a fallback's).
    unpriced: HashSet<String>,
    /// Strategy and retry settings.
    pub router: RouterSettings,
}

fn deployment(
    entry: &ModelEntry,
    index: usize,
    router: &RouterSettings,
    health: &HealthRegistry,
) -> Option<Deployment> {
    let params = &entry.litellm_params;
    let (provider, upstream) = params.provider().ok()?;
    let id = entry.model_info.id.clone().unwrap_or_else(|| format!("{}/{index}", entry.model_name));
    let weight =
        params.weight.or_else(|| entry.rpm().map(f64::from)).or_else(|| entry.tpm().map(f64::from)).unwrap_or(1.0);
    let aws = match (&params.aws_access_key_id, &params.aws_secret_access_key, &params.aws_region_name) {
        (Some(id), Some(secret), region) if provider == Provider::Bedrock => Some(AwsCredentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: params.aws_session_token.clone(),
            region: region.clone().unwrap_or_else(|| "us-east-1".to_owned()),
        }),
        _ => None,
    };
    let timeout = params.timeout.unwrap_or(router.timeout).duration();
    let vertex = (provider == Provider::VertexAi).then(|| {
        let credentials = match &params.vertex_credentials {
            Some(source) => crate::google_auth::Credentials::read(source).map(Arc::new),
            None => Err("no vertex_credentials".to_owned()),
        };
        if let Err(error) = &credentials {
            tracing::error!(deployment = %id, error = %error, "vertex_credentials cannot be used; this deployment's requests will fail");
        }
        VertexTarget {
            project: params.vertex_project.clone().unwrap_or_default(),
            location: params.vertex_location.clone().unwrap_or_default(),
            credentials,
        }
    });
    let extra_headers = params
        .extra_headers
        .iter()
        .filter_map(|(k, v)| Some((HeaderName::try_from(k.as_str()).ok()?, HeaderValue::try_from(v.as_str()).ok()?)))
        .collect();
    Some(Deployment {
        stats: health.get(&id),
        id,
        model_name: entry.model_name.clone(),
        provider,
        format: crate::upstream::upstream_format(provider, params.api.unwrap_or_default()),
        upstream_model: upstream.to_owned(),
        base_url: params.base_url().unwrap_or_default(),
        api_key: params.api_key.clone(),
        api_version: params.api_version.clone(),
        organization: params.organization.clone(),
        aws,
        vertex,
        weight,
        rpm: entry.rpm(),
        tpm: entry.tpm(),
        context_window: entry.model_info.context_window(),
        mode: ModelMode::parse(entry.model_info.mode.as_deref()),
        request_defaults: params.request_defaults.clone(),
        timeout,
        stream_timeout: params
            .stream_timeout
            .or(router.stream_timeout)
            .map_or(timeout, flowgate_common::settings::Seconds::duration),
        max_retries: params.max_retries.unwrap_or(router.num_retries),
        input_cost_per_token: entry.input_cost_per_token(),
        output_cost_per_token: entry.output_cost_per_token(),
        extra_headers,
        mock: MockParams {
            response: params.mock_response.clone(),
            latency: Duration::from_millis(params.mock_latency_ms.unwrap_or(0)),
            chunk_delay: Duration::from_millis(params.mock_chunk_delay_ms.unwrap_or(0)),
            chunks: params.mock_chunks,
        },
        urls: crate::upstream::UrlCache::default(),
    })
}

impl Deployment {
    /// The provider's model name for a request for `model`: the configured one, or, for a
    /// wildcard deployment (`model: anthropic/*`), the part of the asked name the deployment's
    /// wildcard matched (`model_name: anthropic/*` asked `anthropic/claude-x` → `claude-x`;
    /// `model_name: "*"` asked `claude-opus-4-8` → `claude-opus-4-8`).
    pub(crate) fn upstream_model_for<'a>(&'a self, model: &'a str) -> std::borrow::Cow<'a, str> {
        let Some(upstream_prefix) = self.upstream_model.strip_suffix('*') else {
            return std::borrow::Cow::Borrowed(&self.upstream_model);
        };
        let asked = self.model_name.strip_suffix('*').and_then(|prefix| model.strip_prefix(prefix)).unwrap_or(model);
        std::borrow::Cow::Owned(format!("{upstream_prefix}{asked}"))
    }

    /// The format a request to `endpoint` is sent in: the deployment's, except that the legacy
    /// completions and embeddings endpoints of a Responses deployment are OpenAI's.
    pub(crate) fn format_for(&self, endpoint: crate::wire::Endpoint) -> crate::translate::ApiFormat {
        use crate::translate::ApiFormat;
        match self.format {
            ApiFormat::Responses if endpoint != crate::wire::Endpoint::Chat => ApiFormat::OpenAi,
            format => format,
        }
    }
}

impl RoutingTable {
    /// Builds the table from validated settings, reusing health from `health`.
    pub(crate) fn build(settings: &Settings, health: &HealthRegistry) -> Self {
        let router = settings.router_settings.clone();
        let mut models: HashMap<String, Vec<Arc<Deployment>>> = HashMap::new();
        let mut names = Vec::new();
        for (index, entry) in settings.model_list.iter().enumerate() {
            if let Some(deployment) = deployment(entry, index, &router, health) {
                if !models.contains_key(&entry.model_name) {
                    names.push(entry.model_name.clone());
                }
                models.entry(entry.model_name.clone()).or_default().push(Arc::new(deployment));
            }
        }
        for (alias, target) in &router.model_group_alias {
            if let Some(deployments) = models.get(target.model()).cloned()
                && !models.contains_key(alias)
            {
                models.insert(alias.clone(), deployments);
                if !target.hidden() {
                    names.push(alias.clone());
                }
            }
        }
        let fallback_map = |lists: &[BTreeMapList<'_>]| {
            let mut fallbacks: HashMap<String, Vec<String>> = HashMap::new();
            for list in lists {
                for map in *list {
                    for (from, to) in map {
                        let entry = fallbacks.entry(from.clone()).or_default();
                        for name in to {
                            if !entry.contains(name) {
                                entry.push(name.clone());
                            }
                        }
                    }
                }
            }
            fallbacks
        };
        let fallbacks = fallback_map(&[&router.fallbacks]);
        let context_window_fallbacks = fallback_map(&[&router.context_window_fallbacks]);
        let content_policy_fallbacks = fallback_map(&[&router.content_policy_fallbacks]);
        // Any fallback may answer: a model's unpriced check covers all three lists.
        let every_fallback =
            fallback_map(&[&router.fallbacks, &router.context_window_fallbacks, &router.content_policy_fallbacks]);
        let unpriced_models: HashSet<&String> = models
            .iter()
            .filter(|(_, deployments)| deployments.iter().any(|d| !pricing::is_priced(d)))
            .map(|(name, _)| name)
            .collect();
        let unpriced = models
            .keys()
            .filter(|name| {
                unpriced_models.contains(name)
                    || every_fallback.get(*name).is_some_and(|to| to.iter().any(|f| unpriced_models.contains(f)))
                    || router.default_fallbacks.iter().any(|f| unpriced_models.contains(f))
            })
            .cloned()
            .collect();
        Self { models, names, fallbacks, context_window_fallbacks, content_policy_fallbacks, unpriced, router }
    }

    /// Deployments without a price (see [`pricing::is_priced`]), in configuration order.
    pub(crate) fn unpriced_deployments(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.deployments().filter(|d| !pricing::is_priced(d))
    }

    /// Whether a request for `model` may be answered by an unpriced deployment (of the model or
    /// of one of its fallbacks), and so cost $0 whatever it uses.
    pub(crate) fn serves_unpriced(&self, model: &str) -> bool {
        self.unpriced.contains(self.resolve(model))
    }

    /// Logs a warning for every unpriced deployment (at start and when the model list changes).
    pub(crate) fn warn_unpriced(&self) {
        for d in self.unpriced_deployments() {
            tracing::warn!(
                deployment = %d.id,
                model = %d.model_name,
                upstream_model = %d.upstream_model,
                "no price for this deployment (set input_cost_per_token / output_cost_per_token): its requests cost $0, \
                 and keys with a budget are refused it unless budgets.unpriced is allow"
            );
        }
    }

    /// The configured model name that serves a request for `model`: the name itself, else the
    /// wildcard deployment name (`anthropic/*`, `claude-*`, `*`) with the longest prefix of it, as
    /// LiteLLM matches them.
    pub(crate) fn resolve<'a>(&'a self, model: &'a str) -> &'a str {
        if self.models.contains_key(model) {
            return model;
        }
        self.names
            .iter()
            .filter_map(|name| name.strip_suffix('*').map(|prefix| (name, prefix)))
            .filter(|(_, prefix)| model.starts_with(prefix))
            .max_by_key(|(_, prefix)| prefix.len())
            .map_or(model, |(name, _)| name.as_str())
    }

    /// True when `model` is configured (by name or by a wildcard).
    pub(crate) fn contains(&self, model: &str) -> bool {
        self.models.contains_key(self.resolve(model))
    }

    /// Every deployment, in configuration order.
    pub(crate) fn deployments(&self) -> impl Iterator<Item = &Arc<Deployment>> {
        self.names.iter().filter_map(|n| self.models.get(n)).flatten()
    }

    /// The highest per-token prices (nano-dollars: input, output) among `model`'s deployments: what
    /// a request is estimated at before a deployment is chosen.
    pub(crate) fn max_prices(&self, model: &str) -> (f64, f64) {
        self.models.get(self.resolve(model)).map_or((0.0, 0.0), |deployments| {
            deployments.iter().map(|d| pricing::prices(d)).fold((0.0, 0.0), |(a, b), (x, y)| (a.max(x), b.max(y)))
        })
    }

    /// `model` followed by its fallbacks (`default_fallbacks` when it has none of its own).
    pub(crate) fn chain(&self, model: &str) -> Vec<String> {
        let mut chain = vec![model.to_owned()];
        let fallbacks = self.fallbacks.get(self.resolve(model)).unwrap_or(&self.router.default_fallbacks);
        chain.extend(fallbacks.iter().filter(|f| self.contains(f) && *f != model).cloned());
        chain
    }

    /// The fallbacks of `model` for a failure of kind `trigger`: `context_window_fallbacks` when
    /// the prompt did not fit, `content_policy_fallbacks` when the content was refused (each
    /// falling back to `fallbacks` when it names none for the model).
    pub(crate) fn fallbacks_for(&self, model: &str, trigger: FallbackTrigger) -> Vec<String> {
        let specific = match trigger {
            FallbackTrigger::ContextWindow => self.context_window_fallbacks.get(model),
            FallbackTrigger::ContentPolicy => self.content_policy_fallbacks.get(model),
        };
        specific
            .or_else(|| self.fallbacks.get(model))
            .unwrap_or(&self.router.default_fallbacks)
            .iter()
            .filter(|f| self.contains(f) && *f != model)
            .cloned()
            .collect()
    }

    /// The shortest wait until one of `model`'s deployments is below its rpm / tpm again, when
    /// every deployment that is not cooling down is at its limit.
    pub(crate) fn limited_for(&self, model: &str) -> Option<Duration> {
        let deployments = self.models.get(model)?;
        deployments
            .iter()
            .filter(|d| d.stats.cooldown_remaining().is_none())
            .map(|d| d.stats.limited_for(d.rpm, d.tpm))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    /// The shortest remaining cooldown among `model`'s deployments, when all are cooling down.
    pub(crate) fn cooldown_remaining(&self, model: &str) -> Option<Duration> {
        let deployments = self.models.get(self.resolve(model))?;
        deployments.iter().map(|d| d.stats.cooldown_remaining()).collect::<Option<Vec<_>>>()?.into_iter().min()
    }

    /// Picks a deployment of `model` by the configured strategy, skipping deployments cooling down
    /// and, while others remain, those in `tried`.
    pub(crate) fn pick(&self, model: &str, tried: &[String]) -> Option<Arc<Deployment>> {
        self.pick_fitting(model, tried, None, None)
    }

    /// Why `model` cannot serve requests to `endpoint`: the mode of its deployments, when none of
    /// them serves it (`model_info.mode`). `None` when one does, or the model is unknown.
    pub(crate) fn wrong_mode(&self, model: &str, endpoint: crate::wire::Endpoint) -> Option<&str> {
        let deployments = self.models.get(self.resolve(model))?;
        if deployments.iter().any(|d| d.mode.serves(endpoint)) {
            return None;
        }
        deployments.iter().find_map(|d| d.mode.name())
    }

    /// [`Self::pick`], skipping also deployments at their rpm / tpm, those whose mode does not
    /// serve `endpoint` (when given) and, with `enable_pre_call_checks`, those whose context window
    /// is smaller than `prompt_tokens`.
    pub(crate) fn pick_fitting(
        &self,
        model: &str,
        tried: &[String],
        prompt_tokens: Option<u64>,
        endpoint: Option<crate::wire::Endpoint>,
    ) -> Option<Arc<Deployment>> {
        let deployments = self.models.get(self.resolve(model))?;
        let fits = |d: &Deployment| {
            endpoint.is_none_or(|endpoint| d.mode.serves(endpoint))
                && (!self.router.enable_pre_call_checks
                    || prompt_tokens.zip(d.context_window).is_none_or(|(prompt, window)| prompt <= window))
        };
        let healthy: Vec<&Arc<Deployment>> = deployments
            .iter()
            .filter(|d| {
                d.stats.cooldown_remaining().is_none() && d.stats.limited_for(d.rpm, d.tpm).is_none() && fits(d)
            })
            .collect();
        let fresh: Vec<&Arc<Deployment>> = healthy.iter().copied().filter(|d| !tried.contains(&d.id)).collect();
        let candidates = if fresh.is_empty() { healthy } else { fresh };
        let live = |d: &Deployment| (d.stats.in_flight(), d.stats.latency());
        match self.router.routing_strategy {
            RoutingStrategy::UsageBasedRouting => {
                candidates.iter().min_by_key(|d| d.stats.tokens_this_minute()).map(|d| Arc::clone(d))
            }
            RoutingStrategy::CostBasedRouting => candidates
                .iter()
                .min_by(|a, b| {
                    let (ai, ao) = pricing::prices(a);
                    let (bi, bo) = pricing::prices(b);
                    (ai + ao).total_cmp(&(bi + bo))
                })
                .map(|d| Arc::clone(d)),
            strategy => choose(strategy, &candidates, &mut rand::rng(), live).cloned(),
        }
    }

    /// `model`'s deployment `id`, while it is configured and not cooling down: where a
    /// conversation kept by a Responses upstream goes on (affinity).
    pub(crate) fn available_deployment(&self, model: &str, id: &str) -> Option<Arc<Deployment>> {
        let deployments = self.models.get(self.resolve(model))?;
        deployments.iter().find(|d| d.id == id && d.stats.cooldown_remaining().is_none()).cloned()
    }

    /// Whether `model`'s deployments that are not cooling down all have a context window smaller
    /// than `prompt_tokens` (only with `enable_pre_call_checks`).
    pub(crate) fn too_long_for(&self, model: &str, prompt_tokens: u64) -> bool {
        self.router.enable_pre_call_checks
            && self.models.get(model).is_some_and(|deployments| {
                deployments.iter().all(|d| d.context_window.is_some_and(|window| prompt_tokens > window))
            })
    }
}

/// One `router_settings` fallback list, as configured.
type BTreeMapList<'a> = &'a Vec<std::collections::BTreeMap<String, Vec<String>>>;

/// Why a model's own deployments gave up, when it picks its fallback list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FallbackTrigger {
    /// The prompt does not fit the model's context window.
    ContextWindow,
    /// The provider refused the content.
    ContentPolicy,
}

/// The strategy's choice among `candidates`, or `None` when there are none. `live` reads a
/// deployment's in-flight count and latency; it is called exactly once per candidate, so counters
/// that change while a request is being routed (other requests start and end) can never leave the
/// choice empty: every decision is made on one snapshot. No indexing, no draw from an empty range.
pub(crate) fn choose<'a, R: Rng>(
    strategy: RoutingStrategy,
    candidates: &[&'a Arc<Deployment>],
    rng: &mut R,
    mut live: impl FnMut(&Deployment) -> (u32, Option<Duration>),
) -> Option<&'a Arc<Deployment>> {
    match strategy {
        RoutingStrategy::SimpleShuffle => {
            let total: f64 = candidates.iter().map(|d| d.weight).sum();
            if !(total > 0.0 && total.is_finite()) {
                return candidates.choose(rng).copied();
            }
            let mut point = rng.random_range(0.0..total);
            for d in candidates {
                if point < d.weight {
                    return Some(*d);
                }
                point -= d.weight;
            }
            // Rounding left the point past the last weight.
            candidates.last().copied()
        }
        RoutingStrategy::LeastBusy => {
            let snapshot: Vec<(&'a Arc<Deployment>, u32)> = candidates.iter().map(|d| (*d, live(d).0)).collect();
            let least = snapshot.iter().map(|(_, n)| *n).min()?;
            let tied: Vec<&'a Arc<Deployment>> =
                snapshot.iter().filter(|(_, n)| *n == least).map(|(d, _)| *d).collect();
            tied.choose(rng).copied()
        }
        RoutingStrategy::LatencyBasedRouting => {
            // Unmeasured deployments first (so each gets measured), then the fastest, with 5%
            // exploration so a recovered deployment is noticed.
            let snapshot: Vec<(&'a Arc<Deployment>, Option<Duration>)> =
                candidates.iter().map(|d| (*d, live(d).1)).collect();
            if let Some((unmeasured, _)) = snapshot.iter().find(|(_, latency)| latency.is_none()) {
                Some(*unmeasured)
            } else if !candidates.is_empty() && rng.random_bool(0.05) {
                candidates.choose(rng).copied()
            } else {
                snapshot.iter().min_by_key(|(_, latency)| latency.unwrap_or(Duration::MAX)).map(|(d, _)| *d)
            }
        }
        // Chosen by the table, which knows usage and prices; here a weighted draw stands in.
        RoutingStrategy::UsageBasedRouting | RoutingStrategy::CostBasedRouting => {
            choose(RoutingStrategy::SimpleShuffle, candidates, rng, live)
        }
    }
}

#[cfg(test)]
mod tests;
