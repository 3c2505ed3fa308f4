//! Stage 8, respond: the upstream's answer in the client's format. A whole answer is translated
//! once and, when guarded, checked and restored before it leaves; a stream is translated event by
//! event and, when guarded, rewritten with look-behind. A cacheable answer is copied as it passes.
//! The finish stage runs when the answer has ended.

use std::sync::Arc;

use axum::http::HeaderValue;
use axum::response::Response;

use super::answer::{self, StreamPlan};
use super::finish::{Finish, StoredPrompt, Summary};
use super::guard;
use super::parse::Parsed;
use crate::context::RequestContext;
use crate::forward::Forwarded;
use crate::guardrails::{self, Context as GuardContext, Plan};
use crate::limits::Admission;
use crate::state::ProxyState;
use crate::translate::{ApiFormat, responses};
use crate::upstream::UpstreamBody;

/// A forwarded request, with what its answer needs.
#[derive(Debug)]
pub(crate) struct Forwarding {
    /// The request as sent (after guardrails).
    pub(crate) request: Parsed,
    /// Its guardrails, when any apply.
    pub(crate) plan: Option<Plan>,
    /// Its claims on the limits.
    pub(crate) admission: Admission,
    /// Prompt tokens estimated at admission.
    pub(crate) prompt_estimate: u64,
    /// Where the answer goes in the cache, when it may be cached.
    pub(crate) cache_key: Option<crate::cache::EntryKey>,
    /// The upstream's answer.
    pub(crate) forwarded: Forwarded,
}

/// Answers the client.
pub(crate) async fn respond(state: &ProxyState, mut cx: RequestContext, forwarding: Forwarding) -> Response {
    let Forwarding { mut request, plan, admission, prompt_estimate, cache_key, forwarded } = forwarding;
    let kept = request.conversation.take().and_then(|input| {
        let owner = (cx.tenant_id(), cx.key_id(), cx.requested_model.as_str());
        state.conversations().pending(&request.body, cx.key.key.tenant_store_prompts, owner, input)
    });
    let Forwarded { response: upstream, deployment, in_flight, upstream_latency, attempts, fallbacks } = forwarded;
    // A Responses upstream keeps the conversation too: its continuation goes back to it.
    let kept = kept.map(|k| if upstream.format == ApiFormat::Responses { k.answered_by(&deployment.id) } else { k });
    tracing::debug!(deployment = %deployment.id, attempts, "forwarded");
    let record = cx.audit.record();
    record.model_used = Some(deployment.model_name.clone());
    record.deployment = Some(deployment.id.clone());
    record.provider = Some(deployment.provider.as_str().to_owned());
    record.upstream_latency_ms = Some(upstream_latency.as_secs_f64() * 1000.0);
    record.retries = i64::from(attempts.saturating_sub(1));
    record.fallbacks = fallbacks;
    record.status = 200;
    let mut plan = plan.filter(guard::guards_answer);
    let limit_headers = admission.headers;
    let stored_prompt = cx.key.key.tenant_store_prompts.then(|| StoredPrompt {
        prompt: cx.codec().prompt_document(&request.body),
        services: state.guard().clone(),
        hold: state.audit().hold(),
    });
    let client = cx.ingress.format;
    // Hosted tools a chat model could not be offered: named in the answer, never dropped unsaid.
    let dropped_tools = (client == ApiFormat::Responses && upstream.format != ApiFormat::Responses)
        .then(|| responses::request::hosted_tool_types(&request.body))
        .flatten()
        .and_then(|kinds| HeaderValue::from_str(&kinds).ok());
    let mut response = match upstream.body {
        UpstreamBody::Full(bytes) => {
            let translated = answer::full_body(client, upstream.format, bytes);
            let (mut body, usage) = match translated {
                Ok(translated) => translated,
                Err(error) => {
                    tracing::warn!(deployment = %deployment.id, "upstream sent an unparseable body");
                    drop(in_flight);
                    let finish = finish_of(state, cx, admission, deployment, prompt_estimate, stored_prompt, None);
                    finish.failed(crate::wire::Usage::default(), &error);
                    return client.error_response(error);
                }
            };
            drop(in_flight);
            if let Some(plan) = plan.as_mut() {
                // Check the answer, in the client's format, before it leaves.
                let checked = guardrails::post_call_json(state.guard(), plan, client, &body, guard::context(&cx)).await;
                cx.audit.record().guardrail_actions.clone_from(&plan.actions);
                match checked {
                    Ok(processed) => body = processed,
                    Err(error) => {
                        // The answer was produced: charge for it even though it is withheld.
                        let finish = finish_of(state, cx, admission, deployment, prompt_estimate, stored_prompt, None);
                        finish.failed(usage, &error);
                        return client.error_response(error);
                    }
                }
            }
            let finish = finish_of(state, cx, admission, deployment, prompt_estimate, stored_prompt, None);
            let answer = answer::collected_text(client, &body, finish.collects_answer());
            finish.done(Summary { usage, completed: true, ttft: None, answer, streamed_text_bytes: None });
            answer::json_response(body)
        }
        UpstreamBody::Stream(events) => {
            let include_usage = request.fields.include_usage;
            let guarded = plan.map(|plan| {
                let owned = (cx.key.clone(), cx.model.clone(), cx.route().to_owned());
                (plan, owned, Arc::default())
            });
            let outcome = guarded.as_ref().map(|(_, _, outcome)| Arc::clone(outcome));
            let model = deployment.model_name.clone();
            let finish = finish_of(state, cx, admission, deployment, prompt_estimate, stored_prompt, outcome);
            let how = StreamPlan {
                client,
                upstream: upstream.format,
                model: &model,
                include_usage,
                timeout: state.limits().stream_timeout,
            };
            let response = answer::stream_response(how, events, in_flight, finish);
            match guarded {
                Some((plan, (key, model, route), outcome)) => {
                    let context = GuardContext {
                        key_id: &key.key.id,
                        tenant_id: &key.key.tenant_id,
                        model: &model,
                        route: &route,
                    };
                    guardrails::guard_stream(response, state.guard().clone(), plan, client, context, outcome)
                }
                None => response,
            }
        }
    };
    if let Some(entry) = cache_key {
        if request.cache_control.write {
            response = state.cache().store_after(response, entry);
        } else {
            response.headers_mut().insert("x-flowgate-cache", HeaderValue::from_static("miss"));
        }
    }
    if let Some(kept) = kept {
        response = kept.store_after(response);
    }
    limit_headers.apply(response.headers_mut());
    if let Some(kinds) = dropped_tools {
        response.headers_mut().insert(responses::request::DROPPED_TOOLS_HEADER, kinds);
    }
    response
}

/// The finish stage's state for this request; the context's audit guard moves into it.
fn finish_of(
    state: &ProxyState,
    cx: RequestContext,
    admission: Admission,
    deployment: Arc<crate::routing::Deployment>,
    prompt_estimate: u64,
    stored_prompt: Option<StoredPrompt>,
    stream_outcome: Option<Arc<std::sync::Mutex<guardrails::StreamOutcome>>>,
) -> Finish {
    let RequestContext { model, audit, .. } = cx;
    Finish { admission, deployment, prompt_estimate, state: state.clone(), model, audit, stored_prompt, stream_outcome }
}
