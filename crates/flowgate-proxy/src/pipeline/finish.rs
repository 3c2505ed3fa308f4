//! The finish stage: when an answer has been sent whole (or abandoned), settle the spend, count
//! tokens and time to first token, and write the audit record; when a request was rejected, count
//! the rejection and write its record.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use crate::audit::AuditHold;
use crate::context::AuditGuard;
use crate::error::ProxyError;
use crate::guardrails::{self, Services, StreamOutcome};
use crate::limits::Admission;
use crate::metrics::{CodeLabels, ModelLabels, ProxyMetrics, TokenLabels};
use crate::routing::Deployment;
use crate::routing::pricing;
use crate::state::ProxyState;
use crate::wire::Usage;

/// How a response ended, for spend, metrics and audit.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// Tokens used, as reported by the upstream.
    pub(crate) usage: Usage,
    /// False when the stream broke, timed out or the client went away.
    pub(crate) completed: bool,
    /// Time to the first byte sent to the client (streams).
    pub(crate) ttft: Option<Duration>,
    /// The answer's text, when it was asked for (tenants that store prompts): the text of every
    /// choice or content block, or of every streamed delta, up to `ANSWER_CAP` bytes.
    pub(crate) answer: Option<String>,
    /// For a stream: the bytes of generated text it carried (what it is charged for when it
    /// reports no usage). `None` for a whole answer.
    pub(crate) streamed_text_bytes: Option<u64>,
}

/// The usage a response is charged for, and whether it is an estimate. A stream that reported no
/// usage (a provider that ignores `stream_options`, a stream cut short) must not be free: a count
/// it did not report is estimated, the prompt at the admission's estimate (about four bytes of
/// request per token) and the completion at four bytes of streamed text per token. A whole
/// answer's usage is taken as reported.
pub(crate) fn charged_usage(reported: Usage, streamed_text_bytes: Option<u64>, prompt_estimate: u64) -> (Usage, bool) {
    let Some(text_bytes) = streamed_text_bytes else { return (reported, false) };
    let mut usage = reported;
    let mut estimated = false;
    if usage.prompt_tokens == 0 && prompt_estimate > 0 {
        usage.prompt_tokens = prompt_estimate;
        estimated = true;
    }
    if usage.completion_tokens == 0 && text_bytes > 0 {
        usage.completion_tokens = text_bytes.div_ceil(4);
        estimated = true;
    }
    (usage, estimated)
}

/// A prompt to store with the record (tenants with `store_prompts`), redacted first.
#[derive(Debug)]
pub(crate) struct StoredPrompt {
    /// The prompt document as sent (after guardrails).
    pub(crate) prompt: Value,
    /// The compliance service that redacts it.
    pub(crate) services: Services,
    /// Keeps shutdown waiting until the record is written.
    pub(crate) hold: AuditHold,
}

/// Everything the end of a forwarded request needs. Consumed by [`Finish::done`] or
/// [`Finish::failed`]; if it is dropped instead, its audit guard still writes the record.
#[derive(Debug)]
pub(crate) struct Finish {
    /// The request's claims on the limits.
    pub(crate) admission: Admission,
    /// Who answered (for the price).
    pub(crate) deployment: Arc<Deployment>,
    /// Prompt tokens estimated at admission (the least an abandoned stream is charged).
    pub(crate) prompt_estimate: u64,
    /// The proxy's state (metrics).
    pub(crate) state: ProxyState,
    /// The model asked for (metric label).
    pub(crate) model: String,
    /// The request's audit record.
    pub(crate) audit: AuditGuard,
    /// The prompt to store, when the tenant keeps prompts.
    pub(crate) stored_prompt: Option<StoredPrompt>,
    /// What the stream guard did, when the answer was a guarded stream.
    pub(crate) stream_outcome: Option<Arc<Mutex<StreamOutcome>>>,
}

impl Finish {
    /// Whether the answer's text should be collected (for a stored prompt).
    pub(crate) fn collects_answer(&self) -> bool {
        self.stored_prompt.is_some()
    }

    /// The answer was sent (whole, or until the stream broke or the client left).
    pub(crate) fn done(self, summary: Summary) {
        let Self { admission, deployment, prompt_estimate, state, model, mut audit, stored_prompt, stream_outcome } =
            self;
        let metrics = state.metrics();
        let (usage, usage_estimated) = charged_usage(summary.usage, summary.streamed_text_bytes, prompt_estimate);
        let mut cost = pricing::cost_nanos(&deployment, usage);
        if !summary.completed {
            // An abandoned stream is charged at least its prompt: disconnecting must not be free.
            cost = cost
                .max(pricing::cost_nanos(&deployment, Usage { prompt_tokens: prompt_estimate, completion_tokens: 0 }));
        }
        admission.settle(Some((usage, cost)));
        let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        deployment.stats.record_tokens(tokens);
        state.limiter().count_deployment_tokens(&deployment, tokens);
        metrics.tokens.get_or_create(&TokenLabels { model: model.clone(), kind: "prompt" }).inc_by(usage.prompt_tokens);
        metrics
            .tokens
            .get_or_create(&TokenLabels { model: model.clone(), kind: "completion" })
            .inc_by(usage.completion_tokens);
        if let Some(ttft) = summary.ttft {
            metrics.ttft.get_or_create(&ModelLabels { model }).observe(ttft.as_secs_f64());
        }
        let record = audit.record();
        record.prompt_tokens = i64::try_from(usage.prompt_tokens).unwrap_or(i64::MAX);
        record.completion_tokens = i64::try_from(usage.completion_tokens).unwrap_or(i64::MAX);
        record.cost_nanos = cost;
        record.usage_estimated = usage_estimated;
        record.ttft_ms = summary.ttft.map(|t| t.as_secs_f64() * 1000.0);
        let blocked = match &stream_outcome {
            Some(outcome) => {
                let outcome = outcome.lock().unwrap_or_else(PoisonError::into_inner);
                record.guardrail_actions.extend(outcome.actions.iter().cloned());
                outcome.blocked
            }
            None => false,
        };
        if blocked {
            record.error_code = Some("guardrail_blocked".to_owned());
        } else if !summary.completed {
            record.error_code = Some("incomplete".to_owned());
        }
        metrics.count_guardrail_actions(&record.guardrail_actions);
        match stored_prompt {
            // Redaction is a compliance scan: done on a task, the record written after it. The
            // guard moves into the task, so the record is written even if the task is cancelled.
            Some(StoredPrompt { prompt, services, hold }) => state.tasks().job("prompt-redaction", async move {
                let tenant_id = audit.record().tenant_id.clone().unwrap_or_default();
                let answer = summary.answer.unwrap_or_default();
                if let Some((prompt, answer)) =
                    guardrails::redact_for_storage(&services, &prompt, &answer, &tenant_id).await
                {
                    let record = audit.record();
                    record.prompt = Some(prompt);
                    record.response = Some(answer);
                }
                audit.finish();
                drop(hold);
            }),
            None => audit.finish(),
        }
    }

    /// An answer was produced but is not sent (`error` instead): it is charged at `usage`, and the
    /// request is recorded as rejected with `error`.
    pub(crate) fn failed(self, usage: Usage, error: &ProxyError) {
        let Self { admission, deployment, state, mut audit, .. } = self;
        let cost = pricing::cost_nanos(&deployment, usage);
        admission.settle(Some((usage, cost)));
        let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        deployment.stats.record_tokens(tokens);
        state.limiter().count_deployment_tokens(&deployment, tokens);
        audit.record().cost_nanos = cost;
        rejected(state.metrics(), audit, error);
    }
}

/// Counts a rejected request and writes its record with `error`'s status and code.
pub(crate) fn rejected(metrics: &ProxyMetrics, mut audit: AuditGuard, error: &ProxyError) {
    metrics.rejected.get_or_create(&CodeLabels { code: error.code().to_owned() }).inc();
    audit.reject(error);
    metrics.count_guardrail_actions(&audit.record().guardrail_actions);
    audit.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage { prompt_tokens, completion_tokens }
    }

    #[test]
    fn a_stream_without_usage_is_charged_an_estimate() {
        // Reported usage is charged as reported, streamed or not.
        assert_eq!(charged_usage(usage(10, 20), Some(400), 50), (usage(10, 20), false));
        assert_eq!(charged_usage(usage(10, 20), None, 50), (usage(10, 20), false));
        // A whole answer without usage is taken as it is.
        assert_eq!(charged_usage(usage(0, 0), None, 50), (usage(0, 0), false));
        // A stream without usage: the prompt estimate, and a token per 4 bytes of text.
        assert_eq!(charged_usage(usage(0, 0), Some(401), 50), (usage(50, 101), true));
        // Only the prompt reported (an Anthropic stream cut after message_start).
        assert_eq!(charged_usage(usage(12, 0), Some(8), 50), (usage(12, 2), true));
        // No text at all: the prompt still costs.
        assert_eq!(charged_usage(usage(0, 0), Some(0), 50), (usage(50, 0), true));
    }
}
