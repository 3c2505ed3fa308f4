//! Embedding models on Bedrock, called with `InvokeModel` (`POST /model/{id}/invoke`, the model's
//! own JSON body, SigV4-signed like Converse):
//! - Amazon Titan Text Embeddings (`amazon.titan-embed-text-v2:0`, `-v1`): one text per call,
//!   `{"inputText", "dimensions"?}` → `{"embedding": [...], "inputTextTokenCount"}`;
//! - Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`, `cohere.embed-v4`):
//!   a batch, `{"texts": [...], "input_type"}` → `{"embeddings": [[...]]}` (or, with
//!   `embedding_types`, `{"embeddings": {"float": [[...]]}}`); its token count comes in the
//!   `x-amzn-bedrock-input-token-count` header.

use serde_json::{Value, json};

use crate::error::ProxyError;
use crate::translate::embeddings::{answer, inputs};

/// Whether `model` is one of Cohere's embedding models.
fn is_cohere(model: &str) -> bool {
    model.contains("cohere.embed")
}

/// The `InvokeModel` body for an OpenAI embeddings request to embedding model `model`.
pub(crate) fn embeddings_request(body: &Value, model: &str) -> Result<Value, ProxyError> {
    let texts = inputs(body, "Bedrock")?;
    if is_cohere(model) {
        // Cohere's v3 models need an input type; a client may name it (a non-OpenAI field).
        let input_type = body.get("input_type").and_then(Value::as_str).unwrap_or("search_document");
        return Ok(json!({"texts": texts, "input_type": input_type}));
    }
    let [text] = texts.as_slice() else {
        return Err(ProxyError::BadRequest {
            message: format!(
                "{model} embeds one text per request; send `input` as a string (or use a Cohere embed model on \
                 Bedrock for a batch)"
            ),
            param: Some("input".to_owned()),
        });
    };
    let mut request = json!({"inputText": text});
    if let Some(dimensions) = body.get("dimensions").and_then(Value::as_u64) {
        request["dimensions"] = json!(dimensions);
    }
    Ok(request)
}

/// An `InvokeModel` answer of embedding model `model` as an OpenAI embeddings answer.
/// `header_tokens` is the `x-amzn-bedrock-input-token-count` header, `estimate` what is charged
/// when neither the body nor the header has a count.
pub(crate) fn embeddings_response(body: &Value, model: &str, header_tokens: Option<u64>, estimate: u64) -> Value {
    let vectors: Vec<Value> = match body.get("embeddings") {
        Some(Value::Array(vectors)) => vectors.clone(),
        Some(Value::Object(by_type)) => by_type.get("float").and_then(Value::as_array).cloned().unwrap_or_default(),
        _ => body.get("embedding").cloned().into_iter().collect(),
    };
    let tokens = body.get("inputTextTokenCount").and_then(Value::as_u64).or(header_tokens).unwrap_or(estimate);
    answer(vectors, model, tokens)
}
