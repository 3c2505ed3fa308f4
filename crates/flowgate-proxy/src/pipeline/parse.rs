//! Stage 2, parse: read the body (size limit → 413), parse it as a JSON object (→ 400), and let
//! the client format's codec read and check the fields the pipeline needs.

use axum::body::Body;
use axum::http::HeaderMap;
use serde_json::Value;

use crate::cache::{self, Control};
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::state::ProxyState;
use crate::translate::RequestFields;

/// A parsed request.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// The body (client format); guardrails may rewrite it.
    pub(crate) body: Value,
    /// Its size in bytes as received.
    pub(crate) len: usize,
    /// What the codec read from it.
    pub(crate) fields: RequestFields,
    /// What the request allows the cache to do.
    pub(crate) cache_control: Control,
    /// A Responses request's whole input (a continuation expanded), kept with its answer when it
    /// is stored (see `conversations`).
    pub(crate) conversation: Option<Vec<Value>>,
    /// The deployment a Responses continuation must go to (affinity; see `conversations`).
    pub(crate) pinned: Option<String>,
}

/// The body as a JSON object, and its size in bytes.
async fn read_json(body: Body, limit: usize) -> Result<(Value, usize), ProxyError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large =
            std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ProxyError::PayloadTooLarge { limit }
        } else {
            ProxyError::bad_request(format!("cannot read request body: {error}"))
        }
    })?;
    Ok((json_object(&bytes)?, bytes.len()))
}

/// A request body's bytes as a JSON object (any other bytes are a 400).
pub(crate) fn json_object(bytes: &[u8]) -> Result<Value, ProxyError> {
    if bytes.is_empty() {
        return Err(ProxyError::bad_request("request body is empty; expected a JSON object"));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|error| ProxyError::bad_request(format!("invalid JSON: {error}")))?;
    if !value.is_object() {
        return Err(ProxyError::bad_request("request body must be a JSON object"));
    }
    Ok(value)
}

/// Reads and checks the request; the model asked for goes into the context and the record.
pub(crate) async fn parse(
    state: &ProxyState,
    cx: &mut RequestContext,
    headers: &HeaderMap,
    body: Body,
) -> Result<Parsed, ProxyError> {
    let (mut body, len) = read_json(body, state.limits().max_body_bytes).await?;
    let record = cx.audit.record();
    record.model_requested = body.get("model").and_then(Value::as_str).map(str::to_owned);
    record.stream = body.get("stream") == Some(&Value::Bool(true));
    let fields = cx.codec().request_fields(cx.ingress.endpoint, &body)?;
    cx.requested_model.clone_from(&fields.model);
    cx.model.clone_from(&fields.model);
    let cache_control = cache::control(headers, &mut body);
    Ok(Parsed { body, len, fields, cache_control, conversation: None, pinned: None })
}
