//! The hub's embeddings request, read once for the providers whose embedding APIs have formats of
//! their own (Gemini, Vertex AI, Bedrock): its inputs, and what they weigh in tokens when the
//! provider reports no count.

use serde_json::{Value, json};

use crate::error::ProxyError;
use crate::wire::MAX_REPORTED_TOKENS;

/// The texts of an OpenAI embeddings request's `input` (a string or an array of strings).
pub(crate) fn inputs(body: &Value, provider: &str) -> Result<Vec<String>, ProxyError> {
    match body.get("input") {
        Some(Value::String(text)) => Ok(vec![text.clone()]),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Ok(items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        }
        _ => Err(ProxyError::BadRequest {
            message: format!("{provider} embedding models take `input` as a string or a non-empty array of strings"),
            param: Some("input".to_owned()),
        }),
    }
}

/// About how many tokens `texts` are (four bytes a token): what is charged when the provider
/// reports no count.
pub(crate) fn estimated_tokens(texts: &[String]) -> u64 {
    texts.iter().map(|text| u64::try_from(text.len()).unwrap_or(u64::MAX).div_ceil(4)).sum()
}

/// The estimate for the inputs of `request` (0 when it has none that can be read).
pub(crate) fn request_estimate(request: &Value) -> u64 {
    inputs(request, "").map(|texts| estimated_tokens(&texts)).unwrap_or_default()
}

/// An OpenAI embeddings answer with `vectors` (in input order) and `prompt_tokens`.
pub(crate) fn answer(vectors: Vec<Value>, model: &str, prompt_tokens: u64) -> Value {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    let tokens = prompt_tokens.min(MAX_REPORTED_TOKENS);
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}
