//! What a request costs: the deployment's configured per-token prices, or a built-in table for
//! well-known models, in integer nano-dollars (1 USD = 1e9) so spend adds up exactly.

use flowgate_common::settings::Provider;

use super::Deployment;
use crate::wire::Usage;

/// USD per million tokens (input, output) for well-known upstream models, matched by prefix of the
/// provider's model name, longest first. Operators override with `input_cost_per_token` /
/// `output_cost_per_token`.
const PRICES_PER_MILLION: &[(&str, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4-turbo", 10.00, 30.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("o1-mini", 1.10, 4.40),
    ("o3-mini", 1.10, 4.40),
    ("o4-mini", 1.10, 4.40),
    ("o1", 15.00, 60.00),
    ("o3", 2.00, 8.00),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-3-haiku", 0.25, 1.25),
    ("claude-3-5-sonnet", 3.00, 15.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-opus-4", 15.00, 75.00),
    ("claude-3-opus", 15.00, 75.00),
    ("claude-haiku-4", 1.00, 5.00),
    // Gemini API, standard paid tier, prompts up to 200k tokens (thinking tokens are billed as
    // output): ai.google.dev/gemini-api/docs/pricing, as listed in December 2026.
    ("gemini-3-pro", 2.00, 12.00),
    ("gemini-3-flash", 0.50, 3.00),
    ("gemini-2.5-pro", 1.25, 10.00),
    ("gemini-2.5-flash", 0.30, 2.50),
    ("gemini-2.5-flash-lite", 0.10, 0.40),
    ("gemini-2.0-flash", 0.10, 0.40),
    ("gemini-2.0-flash-lite", 0.075, 0.30),
    ("gemini-1.5-pro", 1.25, 5.00),
    ("gemini-1.5-flash", 0.075, 0.30),
    ("gemini-embedding-001", 0.15, 0.0),
    ("text-embedding-004", 0.0, 0.0),
    // Amazon Bedrock on-demand, us-east-1 (model ids; a cross-region prefix such as `us.` is
    // looked past): aws.amazon.com/bedrock/pricing, as listed in December 2026.
    ("anthropic.claude-3-haiku", 0.25, 1.25),
    ("anthropic.claude-3-5-haiku", 0.80, 4.00),
    ("anthropic.claude-haiku-4", 1.00, 5.00),
    ("anthropic.claude-3-5-sonnet", 3.00, 15.00),
    ("anthropic.claude-3-7-sonnet", 3.00, 15.00),
    ("anthropic.claude-sonnet-4", 3.00, 15.00),
    ("anthropic.claude-opus-4", 15.00, 75.00),
    ("amazon.nova-micro", 0.035, 0.14),
    ("amazon.nova-lite", 0.06, 0.24),
    ("amazon.nova-pro", 0.80, 3.20),
    ("meta.llama3-1-8b-instruct", 0.22, 0.22),
    ("meta.llama3-1-70b-instruct", 0.72, 0.72),
    ("mistral.mistral-large-2407", 2.00, 6.00),
    ("amazon.titan-embed-text-v2", 0.02, 0.0),
    ("amazon.titan-embed-text-v1", 0.10, 0.0),
    ("cohere.embed-english-v3", 0.10, 0.0),
    ("cohere.embed-multilingual-v3", 0.10, 0.0),
];

/// Bedrock's cross-region inference profiles prefix a model id with a geography.
const REGION_PREFIXES: &[&str] = &["us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au."];

/// Nano-dollars per USD.
pub(crate) const NANOS_PER_USD: f64 = 1e9;

/// The built-in prices of an upstream model (nano-dollars per token: input, output), if it has any.
fn table_prices(upstream_model: &str) -> Option<(f64, f64)> {
    let upstream_model =
        REGION_PREFIXES.iter().find_map(|prefix| upstream_model.strip_prefix(prefix)).unwrap_or(upstream_model);
    PRICES_PER_MILLION
        .iter()
        .filter(|(prefix, _, _)| upstream_model.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|(_, input, output)| (input * 1e3, output * 1e3))
}

/// Whether `deployment` has a price: configured, or in the built-in table. A `mock` deployment is
/// free rather than unpriced. An unpriced deployment's requests cost $0 without a word, so the
/// proxy warns about them and may refuse them to keys under a budget (`budgets.unpriced`).
pub(crate) fn is_priced(deployment: &Deployment) -> bool {
    deployment.provider == Provider::Mock
        || deployment.input_cost_per_token.is_some()
        || deployment.output_cost_per_token.is_some()
        || table_prices(&deployment.upstream_model).is_some()
}

/// Per-token prices of `deployment` in nano-dollars (input, output).
pub(crate) fn prices(deployment: &Deployment) -> (f64, f64) {
    let table = table_prices(&deployment.upstream_model).unwrap_or((0.0, 0.0));
    (
        deployment.input_cost_per_token.map_or(table.0, |usd| usd * NANOS_PER_USD),
        deployment.output_cost_per_token.map_or(table.1, |usd| usd * NANOS_PER_USD),
    )
}

/// Cost of `usage` on `deployment`, in nano-dollars (rounded up).
pub(crate) fn cost_nanos(deployment: &Deployment, usage: Usage) -> i64 {
    let (input, output) = prices(deployment);
    #[expect(clippy::cast_precision_loss, reason = "token counts are far below 2^53")]
    let nanos = usage.prompt_tokens as f64 * input + usage.completion_tokens as f64 * output;
    #[expect(clippy::cast_possible_truncation, reason = "clamped to i64 range first")]
    let nanos = nanos.ceil().clamp(0.0, i64::MAX as f64) as i64;
    nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_and_bedrock_models_have_prices_and_the_longest_prefix_wins() {
        assert_eq!(table_prices("gemini-2.5-flash"), Some((0.30 * 1e3, 2.50 * 1e3)));
        assert_eq!(table_prices("gemini-2.5-flash-lite-preview"), Some((0.10 * 1e3, 0.40 * 1e3)));
        assert_eq!(table_prices("anthropic.claude-3-5-sonnet-20240620-v1:0"), Some((3e3, 15e3)));
        assert_eq!(table_prices("us.amazon.nova-pro-v1:0"), Some((0.80 * 1e3, 3.20 * 1e3)));
        assert_eq!(table_prices("no-such-model"), None);
    }
}
