//! Stage 6, cache: an exact-match hit (in process, then Redis) is answered here, settled at zero
//! cost and recorded as a cache hit. Guarded requests are never cached: their answers depend on
//! policies that may change.

use axum::response::Response;

use super::parse::Parsed;
use crate::cache::ResponseCache;
use crate::context::RequestContext;
use crate::guardrails::Plan;
use crate::limits::Admission;
use crate::state::ProxyState;
use crate::wire::Usage;

/// The request's cache entry key, when its answer may be cached.
pub(crate) fn key(state: &ProxyState, cx: &RequestContext, request: &Parsed, plan: Option<&Plan>) -> Option<[u8; 32]> {
    (state.cache().enabled() && plan.is_none())
        .then(|| ResponseCache::key(cx.tenant_id(), cx.ingress.format, cx.ingress.endpoint, &request.body))
}

/// The cached answer, if there is one and the request allows reading it; otherwise the admission
/// back, for the forward stage.
pub(crate) async fn lookup(
    state: &ProxyState,
    cx: &mut RequestContext,
    request: &Parsed,
    key: Option<&[u8; 32]>,
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
    let mut response = hit.response();
    limit_headers.apply(response.headers_mut());
    Ok(response)
}
