//! Stage 6, cache: a hit in one of the metacache's four phases (exact in process, exact in Redis,
//! semantic in process, semantic from other replicas) is answered here, settled at zero cost and
//! recorded as a cache hit with its phase. Guarded requests are never cached: their answers
//! depend on policies that may change.

use axum::http::HeaderValue;
use axum::response::Response;
use flowgate_contracts::metacache::{METADATA_PHASE, METADATA_SIMILARITY};

use super::parse::Parsed;
use crate::cache::{EntryKey, ResponseCache};
use crate::context::RequestContext;
use crate::guardrails::Plan;
use crate::limits::Admission;
use crate::state::ProxyState;
use crate::wire::Usage;

/// Where the request's answer is looked up and stored, when it may be cached.
pub(crate) fn key(state: &ProxyState, cx: &RequestContext, request: &Parsed, plan: Option<&Plan>) -> Option<EntryKey> {
    if !state.cache().enabled() || plan.is_some() {
        return None;
    }
    let (format, endpoint) = (cx.ingress.format, cx.ingress.endpoint);
    let exact = ResponseCache::key(cx.tenant_id(), format, endpoint, &request.body);
    let semantic = state
        .cache()
        .semantic()
        .and_then(|semantic| semantic.query(cx.tenant_id(), format, endpoint, &cx.requested_model, &request.body));
    Some(EntryKey { exact, semantic, pending: None })
}

/// The cached answer, if there is one and the request allows reading it; otherwise the admission
/// back, for the forward stage.
pub(crate) async fn lookup(
    state: &ProxyState,
    cx: &mut RequestContext,
    request: &Parsed,
    key: Option<&mut EntryKey>,
    admission: Admission,
) -> Result<Response, Admission> {
    let Some(key) = key.filter(|_| request.cache_control.read) else { return Err(admission) };
    let Some(hit) = state.cache().lookup(key).await else { return Err(admission) };
    // No tokens were used: the request counts for the rate limits, nothing for the budget.
    let limit_headers = admission.headers;
    admission.settle(Some((Usage::default(), 0)));
    let record = cx.audit.record();
    record.status = 200;
    record.cache_hit = true;
    record.model_used = Some(cx.model.clone());
    record.metadata.insert(METADATA_PHASE.to_owned(), hit.phase.name().to_owned());
    let mut response = hit.cached.response(hit.phase);
    if let Some(similarity) = hit.similarity {
        let similarity = format!("{similarity:.4}");
        if let Ok(value) = HeaderValue::from_str(&similarity) {
            response.headers_mut().insert("x-flowgate-cache-similarity", value);
        }
        cx.audit.record().metadata.insert(METADATA_SIMILARITY.to_owned(), similarity);
    }
    limit_headers.apply(response.headers_mut());
    Ok(response)
}
