//! Stage 5, admit: every rate limit and budget of the key and its tenant, claimed in one atomic
//! step against an estimate of the request's tokens and cost; settled in the finish stage.

use super::parse::Parsed;
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::limits::Admission;
use crate::routing::RoutingTable;
use crate::state::ProxyState;

/// Output tokens assumed for the budget reservation when a request sets no `max_tokens`.
const DEFAULT_OUTPUT_ESTIMATE: u64 = 1024;

/// (prompt tokens, cost in nano-dollars) a request is estimated at before it is sent: about four
/// bytes of request body per prompt token (no re-serialisation on the hot path), and the client's
/// output limit (or a default) of output, at the model's highest price.
pub(crate) fn estimate(table: &RoutingTable, model: &str, request: &Parsed) -> (u64, i64) {
    let prompt_tokens = (request.len as u64).div_ceil(4);
    let output_tokens = request.fields.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE);
    let (input_price, output_price) = table.max_prices(model);
    #[expect(clippy::cast_precision_loss, reason = "token counts are far below 2^53")]
    let cost = prompt_tokens as f64 * input_price + output_tokens as f64 * output_price;
    #[expect(clippy::cast_possible_truncation, reason = "clamped first")]
    let cost = cost.ceil().clamp(0.0, i64::MAX as f64) as i64;
    (prompt_tokens, cost)
}

/// Claims the request's limits, or stops it (429 with `Retry-After` and `x-ratelimit-*`).
pub(crate) async fn admit(
    state: &ProxyState,
    cx: &RequestContext,
    request: &Parsed,
    table: &RoutingTable,
) -> Result<(Admission, u64), ProxyError> {
    let (prompt_estimate, cost_estimate) = estimate(table, &cx.model, request);
    let admission = state.limiter().admit(&cx.key, prompt_estimate, cost_estimate).await?;
    Ok((admission, prompt_estimate))
}
