//! Stage 5, admit: every rate limit and budget of the key and its tenant, claimed in one atomic
//! step against an estimate of the request's tokens and cost; settled in the finish stage.

use serde_json::Value;

use super::parse::Parsed;
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::limits::Admission;
use crate::routing::RoutingTable;
use crate::state::ProxyState;

/// Output tokens assumed for the budget reservation when a request sets no `max_tokens`.
const DEFAULT_OUTPUT_ESTIMATE: u64 = 1024;

/// How many answers the request has generated: the larger of `n` and `best_of` (the legacy
/// completions' server-side candidates, each one billed), at least 1. Anthropic has neither. A
/// field that is not a whole number counts as absent here (its type is checked when the codec
/// reads the request).
fn choices(body: &Value) -> (u64, Option<&'static str>) {
    let read = |field: &'static str| body.get(field).and_then(Value::as_u64).map(|n| (n, field));
    match (read("n"), read("best_of")) {
        (Some(n), Some(best_of)) => {
            let (count, field) = if best_of.0 > n.0 { best_of } else { n };
            (count.max(1), Some(field))
        }
        (Some((count, field)), None) | (None, Some((count, field))) => (count.max(1), Some(field)),
        (None, None) => (1, None),
    }
}

/// (prompt tokens, cost in nano-dollars) a request is estimated at before it is sent: about four
/// bytes of request body per prompt token (no re-serialisation on the hot path), and the client's
/// output limit (or a default) of output for each answer asked for (`n`, `best_of`), at the
/// model's highest price.
pub(crate) fn estimate(table: &RoutingTable, model: &str, request: &Parsed) -> (u64, i64) {
    let prompt_tokens = (request.len as u64).div_ceil(4);
    let (answers, _) = choices(&request.body);
    let output_tokens = request.fields.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE).saturating_mul(answers);
    let (input_price, output_price) = table.max_prices(model);
    #[expect(clippy::cast_precision_loss, reason = "token counts are far below 2^53")]
    let cost = prompt_tokens as f64 * input_price + output_tokens as f64 * output_price;
    #[expect(clippy::cast_possible_truncation, reason = "clamped first")]
    let cost = cost.ceil().clamp(0.0, i64::MAX as f64) as i64;
    (prompt_tokens, cost)
}

/// Refuses a request that asks for more answers (`n`, `best_of`) than `max_n`: one request must
/// not be able to multiply its cost without bound.
fn check_choices(body: &Value, max_n: u64) -> Result<(), ProxyError> {
    match choices(body) {
        (count, Some(field)) if count > max_n => Err(ProxyError::BadRequest {
            message: format!("`{field}` is {count}; this gateway allows at most {max_n} answers per request"),
            param: Some(field.to_owned()),
        }),
        _ => Ok(()),
    }
}

/// Claims the request's limits, or stops it (429 with `Retry-After` and `x-ratelimit-*`).
pub(crate) async fn admit(
    state: &ProxyState,
    cx: &RequestContext,
    request: &Parsed,
    table: &RoutingTable,
) -> Result<(Admission, u64), ProxyError> {
    let limits = state.limits();
    check_choices(&request.body, limits.max_n)?;
    let key = &cx.key.key;
    if limits.deny_unpriced && (key.budget_usd > 0.0 || key.tenant_budget_usd > 0.0) && table.serves_unpriced(&cx.model)
    {
        return Err(ProxyError::ModelUnpriced(cx.model.clone()));
    }
    let (prompt_estimate, cost_estimate) = estimate(table, &cx.model, request);
    let admission = state.limiter().admit(&cx.key, prompt_estimate, cost_estimate).await?;
    Ok((admission, prompt_estimate))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use flowgate_common::Settings;
    use flowgate_common::settings::Sources;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::routing::HealthRegistry;
    use crate::translate::RequestFields;

    /// $1 per million input tokens, $2 per million output tokens: 1,000 and 2,000 nano-dollars.
    fn priced() -> RoutingTable {
        let path = std::env::temp_dir().join(format!("flowgate-admit-{}.yaml", rand::random::<u64>()));
        std::fs::write(
            &path,
            "model_list:\n  - {model_name: m, litellm_params: {model: mock/m, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}\n",
        )
        .unwrap();
        let settings = Settings::load(&Sources { config_file: Some(path.clone()), env: HashMap::new() }).unwrap();
        std::fs::remove_file(path).unwrap();
        RoutingTable::build(&settings, &HealthRegistry::default())
    }

    fn parsed(body: Value, max_output_tokens: Option<u64>) -> Parsed {
        Parsed {
            len: 400,
            fields: RequestFields { model: "m".into(), stream: false, include_usage: false, max_output_tokens },
            body,
            cache_control: crate::cache::Control { read: true, write: true },
            conversation: None,
            pinned: None,
        }
    }

    #[test]
    fn every_answer_asked_for_is_estimated() {
        let table = priced();
        // 400 bytes → 100 prompt tokens (100,000 n$); 50 output tokens per answer (100,000 n$ each).
        let one = estimate(&table, "m", &parsed(json!({"model": "m"}), Some(50)));
        assert_eq!(one, (100, 200_000));
        let eight = estimate(&table, "m", &parsed(json!({"model": "m", "n": 8}), Some(50)));
        assert_eq!(eight, (100, 100_000 + 8 * 100_000), "n multiplies the output");
        let best_of = estimate(&table, "m", &parsed(json!({"model": "m", "n": 2, "best_of": 5}), Some(50)));
        assert_eq!(best_of.1, 100_000 + 5 * 100_000, "best_of candidates are billed too");
        let default = estimate(&table, "m", &parsed(json!({"model": "m", "n": 3}), None));
        assert_eq!(default.1, 100_000 + 3 * 1024 * 2_000, "n times the default output estimate");
        let zero = estimate(&table, "m", &parsed(json!({"model": "m", "n": 0}), Some(50)));
        assert_eq!(zero, one, "n: 0 is not cheaper than one answer");
    }

    #[test]
    fn more_answers_than_the_cap_is_a_400_naming_the_field() {
        assert!(check_choices(&json!({"n": 16}), 16).is_ok());
        assert!(check_choices(&json!({}), 16).is_ok());
        let error = check_choices(&json!({"n": 128}), 16).unwrap_err();
        assert_eq!(error.status(), 400);
        assert_eq!(error.param(), Some("n"));
        assert!(error.to_string().contains("at most 16"), "{error}");
        let error = check_choices(&json!({"n": 1, "best_of": 20}), 16).unwrap_err();
        assert_eq!(error.param(), Some("best_of"));
    }

    proptest! {
        /// The cost estimate grows with every answer asked for and never wraps.
        #[test]
        fn the_estimate_is_monotonic_in_n(n in 0u64..1_000_000, max in prop::option::of(0u64..u64::MAX)) {
            let table = priced();
            let fewer = estimate(&table, "m", &parsed(json!({"n": n}), max)).1;
            let more = estimate(&table, "m", &parsed(json!({"n": n + 1}), max)).1;
            prop_assert!(more >= fewer && fewer >= 0);
        }
    }
}
