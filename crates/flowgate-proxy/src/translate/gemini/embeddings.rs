//! Google's embedding APIs, from and to the hub's embeddings request and answer:
//! - the Gemini API: `embedContent` for one input (`{"content": {"parts": [{"text"}]}}` →
//!   `{"embedding": {"values"}}`), `batchEmbedContents` for several (`{"requests": [...]}` →
//!   `{"embeddings": [{"values"}]}`); it reports no token count, so the inputs are estimated;
//! - Vertex AI's text-embedding models through `predict` (`{"instances": [{"content"}],
//!   "parameters"}` → `{"predictions": [{"embeddings": {"values", "statistics": {"token_count"}}}]}`).
//!
//! OpenAI's `dimensions` becomes `outputDimensionality` in both.

use serde_json::{Value, json};

use crate::error::ProxyError;
use crate::translate::embeddings::{answer, inputs};

/// The Gemini API request for an OpenAI embeddings request to `model`: an `embedContent` body
/// for one input, a `batchEmbedContents` body (`requests`) for several. The method to call is
/// [`embeddings_method`] of the result.
pub(crate) fn embeddings_request(body: &Value, model: &str) -> Result<Value, ProxyError> {
    let texts = inputs(body, "Gemini")?;
    let dimensions = body.get("dimensions").and_then(Value::as_u64);
    let one = |text: &str| {
        let mut request = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
        if let Some(dimensions) = dimensions {
            request["outputDimensionality"] = json!(dimensions);
        }
        request
    };
    Ok(match texts.as_slice() {
        [text] => one(text),
        texts => json!({"requests": texts.iter().map(|text| one(text)).collect::<Vec<_>>()}),
    })
}

/// The Gemini API method a request made by [`embeddings_request`] goes to.
pub(crate) fn embeddings_method(request: &Value) -> &'static str {
    if request.get("requests").is_some() { "batchEmbedContents" } else { "embedContent" }
}

/// An `embedContent` or `batchEmbedContents` answer as an OpenAI embeddings answer. Gemini
/// reports no tokens for embeddings (unless a `usageMetadata` comes): `estimate` is charged.
pub(crate) fn embeddings_response(answer_body: &Value, model: &str, estimate: u64) -> Value {
    let values = |embedding: &Value| embedding.get("values").cloned().unwrap_or_else(|| json!([]));
    let vectors: Vec<Value> = match answer_body.get("embedding") {
        Some(single) => vec![values(single)],
        None => answer_body.get("embeddings").and_then(Value::as_array).into_iter().flatten().map(values).collect(),
    };
    let reported = answer_body.pointer("/usageMetadata/promptTokenCount").and_then(Value::as_u64);
    answer(vectors, model, reported.unwrap_or(estimate))
}

/// Vertex AI's `predict` request for a text-embedding model.
pub(crate) fn vertex_embeddings_request(body: &Value) -> Result<Value, ProxyError> {
    let texts = inputs(body, "Vertex AI")?;
    let instances: Vec<Value> = texts.iter().map(|text| json!({"content": text})).collect();
    let mut request = json!({"instances": instances});
    if let Some(dimensions) = body.get("dimensions").and_then(Value::as_u64) {
        request["parameters"] = json!({"outputDimensionality": dimensions});
    }
    Ok(request)
}

/// Vertex AI's `predict` answer as an OpenAI embeddings answer, with the token counts it reports
/// per input (`estimate` when it reports none).
pub(crate) fn vertex_embeddings_response(answer_body: &Value, model: &str, estimate: u64) -> Value {
    let predictions = answer_body.get("predictions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let vectors =
        predictions.iter().map(|p| p.pointer("/embeddings/values").cloned().unwrap_or_else(|| json!([]))).collect();
    // A protobuf number: `7` or `7.0`.
    let count = |v: &Value| v.as_u64().or_else(|| v.as_f64().and_then(|f| format!("{f:.0}").parse().ok()));
    let counts: Vec<u64> =
        predictions.iter().filter_map(|p| p.pointer("/embeddings/statistics/token_count").and_then(count)).collect();
    let tokens = if counts.is_empty() { estimate } else { counts.iter().sum() };
    answer(vectors, model, tokens)
}
