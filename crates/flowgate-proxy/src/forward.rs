//! The forward stage: routing with resilience. Pick a deployment, translate the request to its
//! format, send, and on a retryable failure back off and try another deployment, then the fallback
//! models. Nothing is retried once a response has started streaming to the client. It is given the
//! routing table and the upstream handle, nothing else of the proxy's state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use crate::error::ProxyError;
use crate::metrics::{AttemptLabels, DeploymentLabels, ModelLabels};
use crate::routing::{Deployment, FallbackTrigger, InFlight, RoutingTable};
use crate::state::Upstream;
use crate::translate::{self, ApiFormat};
use crate::upstream::{self, AttemptError, Endpoint, UpstreamResponse};

/// What the client asked for, in its own format.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    /// The client's format.
    pub format: ApiFormat,
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// Requested model name.
    pub model: &'a str,
    /// The request body (client format).
    pub body: &'a Value,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Client headers passed upstream (`anthropic-version`, `anthropic-beta`).
    pub passthrough: Vec<(String, String)>,
    /// The prompt's estimated size in tokens (`enable_pre_call_checks`).
    pub prompt_tokens: u64,
    /// The only deployment that may answer: a Responses continuation whose conversation that
    /// deployment keeps (no other deployment or fallback model could read it).
    pub pinned: Option<&'a str>,
}

/// A successful forward: the upstream answer and where it came from.
#[derive(Debug)]
pub(crate) struct Forwarded {
    /// The answer.
    pub response: UpstreamResponse,
    /// Who answered.
    pub deployment: Arc<Deployment>,
    /// Keeps the deployment's in-flight count until the response is done.
    pub in_flight: InFlight,
    /// Time to the upstream's response head.
    pub upstream_latency: Duration,
    /// Attempts made (1 = first try succeeded).
    pub attempts: u32,
    /// Model names tried before the one that answered.
    pub fallbacks: Vec<String>,
}

/// The request body for `deployment`, in its format, with its model name.
pub(crate) fn upstream_body(call: &Call<'_>, deployment: &Deployment, model: &str) -> Result<Value, ProxyError> {
    let target = deployment.format_for(call.endpoint);
    if call.endpoint == Endpoint::Completions && target != ApiFormat::OpenAi {
        return Err(ProxyError::bad_request(format!(
            "`{model}` is served by a {} deployment, which has no text completions API: use /v1/chat/completions",
            deployment.provider.as_str()
        )));
    }
    let mut body = translate::defaults::request_with_defaults(
        call.format,
        target,
        call.body,
        &deployment.upstream_model_for(model),
        &deployment.request_defaults,
    )?;
    // Usage is needed for spend, so every OpenAI-format stream asks for it (Azure included: its
    // API has `stream_options` since 2024-09-01); a client that did not ask does not see the extra
    // chunk. A stream that still ends without usage is charged an estimate (see `finish`).
    if call.stream
        && matches!(call.endpoint, Endpoint::Chat | Endpoint::Completions)
        && target == ApiFormat::OpenAi
        && let Some(object) = body.as_object_mut()
    {
        let options = object.entry("stream_options").or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(options) = options.as_object_mut() {
            options.insert("include_usage".to_owned(), Value::Bool(true));
        }
    }
    Ok(body)
}

fn backoff(attempt: u32, hint: Option<Duration>) -> Duration {
    if let Some(hint) = hint.filter(|h| *h <= Duration::from_secs(5)) {
        return hint;
    }
    let base = Duration::from_millis(50).saturating_mul(1 << attempt.min(6)).min(Duration::from_secs(2));
    base.mul_f64(rand::rng().random_range(0.5..1.0))
}

fn into_proxy_error(error: AttemptError, model: &str) -> ProxyError {
    if error.credentials_rejected() {
        return ProxyError::UpstreamAuthFailed { model: model.to_owned() };
    }
    match error {
        AttemptError::Connect(message) => {
            ProxyError::Unavailable { message: format!("upstream unreachable: {message}"), retry_after_secs: None }
        }
        AttemptError::Timeout(after) => {
            ProxyError::UpstreamTimeout(format!("upstream did not answer within {after:?}"))
        }
        AttemptError::Status { status, message, code, headers, .. } => {
            ProxyError::Upstream { status, message, code, headers }
        }
        AttemptError::Unsupported(message) => ProxyError::bad_request(message),
    }
}

/// Sends `call` with retries and fallbacks.
pub(crate) async fn forward(
    upstream: &Upstream,
    table: &RoutingTable,
    call: &Call<'_>,
) -> Result<Forwarded, ProxyError> {
    if !table.contains(call.model) {
        return Err(ProxyError::ModelNotFound(call.model.to_owned()));
    }
    let router = &table.router;
    let cooldown = if router.disable_cooldowns { Duration::ZERO } else { router.cooldown_time.duration() };
    let mut last_error: Option<AttemptError> = None;
    let mut attempts = 0u32;
    let mut fallbacks = Vec::new();
    let mut queue: std::collections::VecDeque<String> =
        if call.pinned.is_some() { vec![call.model.to_owned()] } else { table.chain(call.model) }.into();
    let mut switch_to: Option<FallbackTrigger> = None;
    while let Some(model) = queue.pop_front() {
        let mut tried: Vec<String> = Vec::new();
        let mut budget: Option<u32> = None;
        let mut attempt = 0u32;
        let mut shared_limited = 0u32;
        if table.too_long_for(&model, call.prompt_tokens) {
            tracing::info!(model = %model, prompt_tokens = call.prompt_tokens, "prompt exceeds every deployment's context window");
            last_error = Some(AttemptError::Status {
                status: 400,
                message: format!(
                    "the prompt (about {} tokens) exceeds the context window of every deployment of `{model}`",
                    call.prompt_tokens
                ),
                code: Some("context_length_exceeded".to_owned()),
                retry_after: None,
                headers: crate::rate_headers::ProviderHeaders::default(),
            });
            switch_to = Some(FallbackTrigger::ContextWindow);
            budget = Some(0);
            attempt = 1;
        }
        while budget.is_none_or(|max| attempt <= max) {
            let picked = match call.pinned {
                Some(id) => table.available_deployment(&model, id),
                None => table.pick_fitting(&model, &tried, Some(call.prompt_tokens), Some(call.endpoint)),
            };
            let Some(deployment) = picked else { break };
            if !upstream.limiter.claim_deployment(&deployment).await {
                // The replicas together are at this deployment's rpm / tpm: its stats say so now,
                // so the next pick passes it over (a bounded number of times, should the minute
                // turn meanwhile).
                shared_limited += 1;
                if shared_limited > 8 {
                    break;
                }
                continue;
            }
            let max = *budget.get_or_insert(deployment.max_retries);
            tried.push(deployment.id.clone());
            attempts += 1;
            let body = upstream_body(call, &deployment, &model)?;
            let in_flight = deployment.stats.begin();
            let started = Instant::now();
            let span = tracing::info_span!(
                "upstream",
                otel.kind = "client",
                deployment = %deployment.id,
                attempt,
                gen_ai.system = deployment.provider.as_str(),
                gen_ai.request.model = %call.model,
                gen_ai.response.model = %deployment.upstream_model_for(&model),
                gen_ai.operation.name = if call.endpoint == Endpoint::Embeddings { "embeddings" } else { "chat" },
            );
            let result = tracing::Instrument::instrument(
                upstream::send(
                    &upstream.http,
                    &upstream.direct,
                    &deployment,
                    call.endpoint,
                    body,
                    call.stream,
                    &call.passthrough,
                ),
                span,
            )
            .await;
            let elapsed = started.elapsed();
            match result {
                Ok(response) => {
                    deployment.stats.record_success(elapsed);
                    upstream
                        .metrics
                        .attempts
                        .get_or_create(&AttemptLabels { deployment: deployment.id.clone(), outcome: "success" })
                        .inc();
                    upstream
                        .metrics
                        .upstream_latency
                        .get_or_create(&DeploymentLabels { deployment: deployment.id.clone() })
                        .observe(elapsed.as_secs_f64());
                    if model != call.model {
                        upstream.metrics.fallbacks.get_or_create(&ModelLabels { model: call.model.to_owned() }).inc();
                    }
                    return Ok(Forwarded {
                        response,
                        deployment,
                        in_flight,
                        upstream_latency: elapsed,
                        attempts,
                        fallbacks,
                    });
                }
                Err(error) => {
                    drop(in_flight);
                    upstream
                        .metrics
                        .attempts
                        .get_or_create(&AttemptLabels { deployment: deployment.id.clone(), outcome: error.kind() })
                        .inc();
                    let credentials_rejected = error.credentials_rejected();
                    let class = error.class();
                    let class_retries = router.retry_policy.0.get(class);
                    if let Some(trigger) = error.fallback_trigger() {
                        // A prompt too long or content refused: another deployment of the same
                        // model would say the same; its fallback list for this reason is tried.
                        tracing::info!(deployment = %deployment.id, ?trigger, "trying the fallbacks for this failure");
                        last_error = Some(error);
                        switch_to = Some(trigger);
                        break;
                    }
                    if !error.retryable() && !credentials_rejected && class_retries.is_none_or(|n| n == 0) {
                        return Err(into_proxy_error(error, call.model));
                    }
                    // A provider refusing the deployment's key will refuse every request: the
                    // deployment cools down at once and another one (or a fallback) is tried.
                    let allowed_fails = if credentials_rejected {
                        if let AttemptError::Status { status, code, .. } = &error {
                            // The provider's message is not logged: it may quote part of the key.
                            tracing::error!(
                                deployment = %deployment.id,
                                model = %deployment.model_name,
                                status,
                                code = code.as_deref().unwrap_or_default(),
                                "the provider rejected the deployment's API key (upstream_auth_failed)"
                            );
                        }
                        router.allowed_fails_policy.0.get(class).unwrap_or(1)
                    } else {
                        tracing::warn!(deployment = %deployment.id, error = %error, "upstream attempt failed");
                        router.allowed_fails_policy.0.get(class).unwrap_or(router.allowed_fails)
                    };
                    if deployment.stats.record_failure(allowed_fails, cooldown) {
                        tracing::warn!(deployment = %deployment.id, cooldown_secs = router.cooldown_time.as_secs_f64(), "deployment cooling down");
                        upstream
                            .metrics
                            .cooldowns
                            .get_or_create(&DeploymentLabels { deployment: deployment.id.clone() })
                            .inc();
                    }
                    let hint = match &error {
                        AttemptError::Status { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    last_error = Some(error);
                    // `retry_policy` sets the retries of this kind of failure, over `num_retries`.
                    let max = class_retries.unwrap_or(max);
                    budget = Some(max);
                    if attempt >= max {
                        break;
                    }
                    if !credentials_rejected {
                        tokio::time::sleep(backoff(attempt, hint)).await;
                    }
                }
            }
            attempt += 1;
        }
        if let Some(trigger) = switch_to.take() {
            // The model failed for a reason with its own fallback list: that list replaces the
            // rest of the chain.
            queue = table
                .fallbacks_for(&model, trigger)
                .into_iter()
                .filter(|m| !fallbacks.contains(m) && *m != model)
                .collect();
        }
        fallbacks.push(model);
    }
    match last_error {
        Some(error) => Err(into_proxy_error(error, call.model)),
        None if let Some(wait) = table.limited_for(call.model) => Err(ProxyError::RateLimited {
            message: format!(
                "every deployment of `{}` is at its requests- or tokens-per-minute limit (rpm / tpm)",
                call.model
            ),
            code: "rate_limit_exceeded",
            retry_after_secs: wait.as_secs().max(1),
            headers: crate::rate_headers::RateHeaders::default(),
        }),
        None => {
            let retry = table.cooldown_remaining(call.model).map(|d| d.as_secs().max(1));
            Err(ProxyError::Unavailable {
                message: format!("every deployment of `{}` is cooling down after failures", call.model),
                retry_after_secs: retry,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use flowgate_common::Settings;
    use flowgate_common::settings::Sources;
    use serde_json::json;

    use super::*;
    use crate::routing::HealthRegistry;

    #[test]
    fn every_openai_format_stream_asks_for_usage_azure_included() {
        let path = std::env::temp_dir().join(format!("flowgate-forward-{}.yaml", rand::random::<u64>()));
        std::fs::write(
            &path,
            "model_list:
  - {model_name: azure, litellm_params: {model: azure/dep, api_base: 'https://x.openai.azure.com', api_version: '2024-10-21'}}
  - {model_name: openai, litellm_params: {model: openai/gpt-4o-mini}}
  - {model_name: vllm, litellm_params: {model: hosted_vllm/llama, api_base: 'http://127.0.0.1:9'}}
  - {model_name: claude, litellm_params: {model: anthropic/claude-3-5-haiku-latest}}
",
        )
        .unwrap();
        let settings = Settings::load(&Sources { config_file: Some(path.clone()), env: HashMap::new() }).unwrap();
        std::fs::remove_file(path).unwrap();
        let table = RoutingTable::build(&settings, &HealthRegistry::default());
        let request = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        for stream in [true, false] {
            let call = Call {
                format: ApiFormat::OpenAi,
                endpoint: Endpoint::Chat,
                model: "m",
                body: &request,
                stream,
                passthrough: Vec::new(),
                prompt_tokens: 10,
                pinned: None,
            };
            for model in ["azure", "openai", "vllm"] {
                let deployment = table.pick(model, &[]).unwrap();
                let body = upstream_body(&call, &deployment, model).unwrap();
                let asked = body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
                assert_eq!(asked, stream, "{model}, stream {stream}: {body}");
            }
            let claude = upstream_body(&call, &table.pick("claude", &[]).unwrap(), "claude").unwrap();
            assert!(claude.get("stream_options").is_none(), "Anthropic sends usage unasked");
        }
    }
}
