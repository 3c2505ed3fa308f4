//! Stage 3b, conversation: a Responses request that continues a stored response
//! (`previous_response_id`) gets the stored conversation as its input, before guardrails, limits
//! and translation see it (see `crate::conversations`). Other formats pass untouched.

use super::parse::Parsed;
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::state::ProxyState;
use crate::translate::ApiFormat;

/// Expands a continuation; remembers the request's whole input for when its answer is kept.
pub(crate) async fn expand(state: &ProxyState, cx: &RequestContext, request: &mut Parsed) -> Result<(), ProxyError> {
    if cx.ingress.format != ApiFormat::Responses {
        return Ok(());
    }
    let (added, input) = state.conversations().expand(cx.tenant_id(), &mut request.body).await?;
    // The earlier turns are prompt tokens too: the estimate counts their bytes.
    request.len = request.len.saturating_add(added);
    request.conversation = Some(input);
    Ok(())
}
