//! Stage 3b, conversation: a Responses request that continues a stored response
//! (`previous_response_id`) gets the stored conversation as its input, before guardrails, limits
//! and translation see it (see `crate::conversations`). Other formats pass untouched.

use super::parse::Parsed;
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::state::ProxyState;
use crate::translate::ApiFormat;
use crate::wire::Endpoint;

/// Expands a continuation; remembers the request's whole input for when its answer is kept.
pub(crate) async fn expand(state: &ProxyState, cx: &RequestContext, request: &mut Parsed) -> Result<(), ProxyError> {
    if cx.ingress.format != ApiFormat::Responses {
        return Ok(());
    }
    let table = state.table();
    // A deployment that speaks Responses itself keeps the conversation it answered.
    let available = |id: &str| {
        table.available_deployment(&cx.model, id).is_some_and(|d| d.format_for(Endpoint::Chat) == ApiFormat::Responses)
    };
    let expansion = state.conversations().expand(cx.tenant_id(), &mut request.body, available).await?;
    // The earlier turns are prompt tokens too: the estimate counts their bytes.
    request.len = request.len.saturating_add(expansion.added);
    request.conversation = Some(expansion.input);
    request.pinned = expansion.pinned;
    Ok(())
}
