//! The guardrail stage of the proxy: which guardrails apply to a request (key policy, tenant
//! defaults, client request), the pre-call scan and policy decision, post-call checks on JSON
//! answers, and during-call processing of streams through a sliding window that holds back only
//! what a finding still to come could reach (`window`).
//!
//! Guardrails check every text of the conversation with its role (`segments`): messages, the
//! system prompt, tool results, and tool-call arguments, in requests, whole answers and streams;
//! arguments are JSON text and stay valid JSON when redacted (`json_text`). One compliance scan
//! per stage covers every active guardrail (the union of their detectors), so a guarded request
//! pays one gRPC hop per stage; a key with no active guardrail pays nothing. Personal data is
//! replaced by placeholders (`<EMAIL_1>`) numbered across the whole request, and
//! `restore_output` puts the originals back in the answer, also when a placeholder is split
//! across stream chunks. MCP tool arguments and results are checked through `tools`.

mod answer;
mod catalog;
mod http;
mod json_text;
mod plan;
mod pre_call;
mod segments;
mod storage;
mod stream;
mod tools;
mod verdict;
mod window;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use self::answer::post_call_json;
pub(crate) use self::catalog::Catalog;
pub(crate) use self::plan::{Plan, plan, requested, stream_supported};
pub(crate) use self::pre_call::pre_call;
pub(crate) use self::storage::redact_for_storage;
pub(crate) use self::stream::{StreamOutcome, guard_stream};
pub(crate) use self::tools::check_document;
use crate::error::ProxyError;
use crate::peers::{CompliancePeer, PolicyPeer};
pub(crate) use flowgate_contracts::GuardrailPolicy;

/// The guardrail stage's view of the services it calls.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    /// Compliance scanning.
    pub compliance: CompliancePeer,
    /// Policy evaluation.
    pub policy: PolicyPeer,
    /// Upstream HTTP client (for HTTP guardrails).
    pub http: reqwest::Client,
    /// Longest a scan may take.
    pub timeout: Duration,
}

fn unavailable(what: &str) -> ProxyError {
    ProxyError::GuardrailUnavailable { message: format!("{what}; the request was not sent (fail closed)") }
}

fn blocked(guardrail: &str, reason: &str) -> ProxyError {
    ProxyError::GuardrailBlocked { message: format!("blocked by guardrail `{guardrail}`: {reason}") }
}

/// Separator between segments in one scan (never part of a finding).
const SEPARATOR: &str = "\n\u{1}\n";

/// Who is asking, for HTTP guardrails and the policy service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Key id.
    pub key_id: &'a str,
    /// Tenant id.
    pub tenant_id: &'a str,
    /// Model asked for.
    pub model: &'a str,
    /// Route.
    pub route: &'a str,
}
