//! Providers with a wire format of their own (Gemini, Bedrock, Vertex AI): the request is
//! translated from the hub by the format's module in `translate/` (Vertex AI: Gemini's for Google's
//! models, the Anthropic codec for Claude) and sent with the provider's URL scheme and
//! authentication (an API key header; SigV4 for Bedrock, `aws/`; an OAuth2 token minted from a
//! service account for Vertex AI, `google_auth.rs`); the answer is translated back to the hub
//! before anything else sees it. Embeddings go to each provider's embedding API (Gemini's
//! `embedContent` / `batchEmbedContents`, Vertex AI's `predict`, Bedrock's `InvokeModel` for Titan
//! and Cohere models). To the rest of the proxy these are OpenAI-format upstreams, so
//! every ingress format reaches them through the hub.
//!
//! Streams are translated chunk by chunk as they arrive, never buffered. The first event is read
//! before the answer is handed on, so a prompt the provider refuses at once (a safety block, a
//! throttling exception in the stream) is an ordinary error status: retried, cooled down or sent
//! to `content_policy_fallbacks` like any other.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::aws::{eventstream, sigv4};
use crate::google_auth::TokenError;
use crate::routing::Deployment;
use crate::sse::SseParser;
use crate::translate::bedrock::{self, BedrockToHub};
use crate::translate::embeddings::request_estimate as estimate;
use crate::translate::gemini::{self, GeminiToHub};
use crate::translate::{ApiFormat, StreamTransform};
use crate::upstream::{AttemptError, Endpoint, UpstreamBody, UpstreamResponse};
use flowgate_common::settings::Provider;

/// Whether `provider` speaks a format translated here.
pub(crate) fn is_native(provider: Provider) -> bool {
    matches!(provider, Provider::Gemini | Provider::Bedrock | Provider::VertexAi)
}

fn unsupported(deployment: &Deployment, what: &str) -> AttemptError {
    AttemptError::Unsupported(format!(
        "model `{}` is served by {}, which has no {what} endpoint",
        deployment.model_name,
        deployment.provider.as_str()
    ))
}

fn status_error(status: u16, message: impl Into<String>, code: &str) -> AttemptError {
    AttemptError::Status {
        status,
        message: message.into(),
        code: Some(code.to_owned()),
        retry_after: None,
        headers: crate::rate_headers::ProviderHeaders::default(),
    }
}

/// Gemini's base URL with its API version (`/v1beta` unless `api_base` names one).
fn gemini_base(base: &str) -> String {
    if base.ends_with("/v1beta") || base.ends_with("/v1") || base.ends_with("/v1alpha") {
        base.to_owned()
    } else {
        format!("{base}/v1beta")
    }
}

/// The request for `deployment`, from a hub-format `body`.
pub(crate) async fn request(
    client: &reqwest::Client,
    deployment: &Deployment,
    endpoint: Endpoint,
    body: &Value,
    stream: bool,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    let bad = |error: crate::error::ProxyError| AttemptError::Unsupported(error.to_string());
    let mut request = match deployment.provider {
        Provider::Gemini => {
            let model = &deployment.upstream_model;
            let base = gemini_base(&deployment.base_url);
            let (url, payload) = match endpoint {
                Endpoint::Chat if stream => (
                    format!("{base}/models/{model}:streamGenerateContent?alt=sse"),
                    gemini::request_from_hub(body).map_err(bad)?,
                ),
                Endpoint::Chat => {
                    (format!("{base}/models/{model}:generateContent"), gemini::request_from_hub(body).map_err(bad)?)
                }
                Endpoint::Embeddings => {
                    let payload = gemini::embeddings_request(body, model).map_err(bad)?;
                    (format!("{base}/models/{model}:{}", gemini::embeddings_method(&payload)), payload)
                }
                Endpoint::Completions => return Err(unsupported(deployment, "text completions")),
            };
            let mut request = client.post(url).json(&payload);
            if let Some(key) = &deployment.api_key {
                request = request.header("x-goog-api-key", key.expose_secret());
            }
            request
        }
        Provider::Bedrock => match endpoint {
            Endpoint::Chat => {
                let payload = bedrock::request_from_hub(body).map_err(bad)?;
                bedrock_request(client, deployment, &payload, if stream { "converse-stream" } else { "converse" })?
            }
            Endpoint::Embeddings => {
                let payload = bedrock::embeddings_request(body, &deployment.upstream_model).map_err(bad)?;
                bedrock_request(client, deployment, &payload, "invoke")?
            }
            Endpoint::Completions => return Err(unsupported(deployment, "text completions")),
        },
        Provider::VertexAi => vertex_request(client, deployment, endpoint, body, stream).await?,
        other => {
            return Err(AttemptError::Unsupported(format!("provider {} is not served here", other.as_str())));
        }
    };
    if stream {
        request = request.header(reqwest::header::ACCEPT, "text/event-stream");
    }
    for (name, value) in &deployment.extra_headers {
        request = request.header(name, value);
    }
    // W3C trace context (not signed: a proxy in between may rewrite it).
    for (name, value) in flowgate_telemetry::current_trace_headers() {
        request = request.header(name, value);
    }
    Ok(request)
}

/// A Vertex AI request: Gemini's format for Google's models, Anthropic's (`rawPredict`) for
/// Claude, with a bearer token of the deployment's service account.
async fn vertex_request(
    client: &reqwest::Client,
    deployment: &Deployment,
    endpoint: Endpoint,
    body: &Value,
    stream: bool,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    let bad = |error: crate::error::ProxyError| AttemptError::Unsupported(error.to_string());
    let target = deployment.vertex.as_ref().ok_or_else(|| {
        AttemptError::Unsupported(format!("model `{}` has no Vertex AI settings", deployment.model_name))
    })?;
    let credentials = target.credentials.as_ref().map_err(|error| {
        AttemptError::Unsupported(format!(
            "model `{}` cannot be reached: its vertex_credentials cannot be used ({error})",
            deployment.model_name
        ))
    })?;
    let model = &deployment.upstream_model;
    let (method, payload) = match endpoint {
        Endpoint::Chat if is_claude(model) => {
            let mut payload = ApiFormat::Anthropic.codec().request_from_hub(body, model).map_err(bad)?;
            if let Some(object) = payload.as_object_mut() {
                object.remove("model");
                object.insert("anthropic_version".to_owned(), Value::String("vertex-2023-10-16".to_owned()));
            }
            (if stream { "streamRawPredict" } else { "rawPredict" }, payload)
        }
        Endpoint::Chat if stream => ("streamGenerateContent?alt=sse", gemini::request_from_hub(body).map_err(bad)?),
        Endpoint::Chat => ("generateContent", gemini::request_from_hub(body).map_err(bad)?),
        Endpoint::Embeddings if !is_claude(model) => ("predict", gemini::vertex_embeddings_request(body).map_err(bad)?),
        Endpoint::Embeddings | Endpoint::Completions => {
            return Err(unsupported(deployment, "embeddings (Claude) or text completions (on Vertex AI)"));
        }
    };
    let token = credentials.token(client, deployment.timeout).await.map_err(|error| match error {
        TokenError::Timeout(after) => AttemptError::Timeout(after),
        TokenError::Connect(message) => AttemptError::Connect(message),
        // The token endpoint refusing the service account is the deployment's credentials.
        TokenError::Refused(_) | TokenError::Sign => AttemptError::Status {
            status: 401,
            message: format!("Vertex AI: {error}"),
            code: Some("upstream_auth_failed".to_owned()),
            retry_after: None,
            headers: crate::rate_headers::ProviderHeaders::default(),
        },
    })?;
    let url = vertex_url(&deployment.base_url, &target.project, &target.location, model, method);
    Ok(client.post(url).bearer_auth(token.expose_secret()).json(&payload))
}

/// The URL of `model`'s `method` on Vertex AI: Google's models under `publishers/google`,
/// Claude under `publishers/anthropic`.
fn vertex_url(base: &str, project: &str, location: &str, model: &str, method: &str) -> String {
    let publisher = if is_claude(model) { "anthropic" } else { "google" };
    format!("{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}")
}

/// Whether `model` is served by Anthropic's API on Vertex AI.
fn is_claude(model: &str) -> bool {
    model.starts_with("claude")
}

/// A SigV4-signed request to the deployment's model: `action` is `converse`, `converse-stream` or
/// `invoke` (InvokeModel, for embedding models).
fn bedrock_request(
    client: &reqwest::Client,
    deployment: &Deployment,
    payload: &Value,
    action: &str,
) -> Result<reqwest::RequestBuilder, AttemptError> {
    let aws = deployment.aws.as_ref().ok_or_else(|| {
        AttemptError::Unsupported(format!("model `{}` has no AWS credentials", deployment.model_name))
    })?;
    let path = format!("/model/{}/{action}", sigv4::uri_encode(&deployment.upstream_model, false));
    let url = format!("{}{path}", deployment.base_url);
    let host = reqwest::Url::parse(&url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(port) => format!("{h}:{port}"),
                None => h.to_owned(),
            })
        })
        .ok_or_else(|| AttemptError::Unsupported(format!("model `{}` has a bad Bedrock URL", deployment.model_name)))?;
    // The base may carry a path prefix (a proxy in front of Bedrock): it is signed as sent.
    let signed_path = reqwest::Url::parse(&url).map(|u| u.path().to_owned()).unwrap_or(path);
    let body = serde_json::to_vec(payload).map_err(|e| AttemptError::Unsupported(e.to_string()))?;
    let amz_date = sigv4::amz_date(crate::wire::unix_now());
    let mut headers: Vec<(&str, &str)> =
        vec![("content-type", "application/json"), ("host", &host), ("x-amz-date", &amz_date)];
    let token = aws.session_token.as_ref().map(|t| t.expose_secret().to_owned());
    if let Some(token) = &token {
        headers.push(("x-amz-security-token", token));
    }
    let signer = sigv4::Signer {
        access_key_id: aws.access_key_id.expose_secret(),
        secret_access_key: aws.secret_access_key.expose_secret(),
        region: &aws.region,
        service: "bedrock",
    };
    let signed = sigv4::Request { method: "POST", path: &signed_path, query: "", headers: &headers, body: &body };
    let (authorization, _) = sigv4::authorization(&signer, &signed, &amz_date);
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-amz-date", &amz_date)
        .header(reqwest::header::AUTHORIZATION, authorization)
        .body(body);
    if let Some(token) = &token {
        request = request.header("x-amz-security-token", token);
    }
    Ok(request)
}

/// An error status of `provider`, with the provider's own error names read.
pub(crate) fn error(provider: Provider, error: AttemptError, headers: &reqwest::header::HeaderMap) -> AttemptError {
    let AttemptError::Status { status, message, code, retry_after, headers: provider_headers } = error else {
        return error;
    };
    // Gemini answers a key it does not accept with 400 INVALID_ARGUMENT ("API key not valid"):
    // that is the deployment's credentials, not the caller's request.
    let status = if provider == Provider::Gemini && status == 400 && message.contains("API key not valid") {
        401
    } else {
        status
    };
    let code = match provider {
        // `x-amzn-errortype: ThrottlingException:http://internal.amazon.com/...`
        Provider::Bedrock => headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned())
            .or(code),
        _ => code,
    };
    AttemptError::Status { status, message, code, retry_after, headers: provider_headers }
}

/// The provider's 2xx answer, translated to the hub.
pub(crate) async fn answer(
    deployment: &Deployment,
    endpoint: Endpoint,
    request: &Value,
    response: reqwest::Response,
    stream: bool,
    timeout: Duration,
) -> Result<UpstreamResponse, AttemptError> {
    let model = deployment.upstream_model.clone();
    if stream {
        let upstream =
            response.bytes_stream().map(|chunk| chunk.map_err(|e| std::io::Error::other(e.without_url()))).boxed();
        return first_event(upstream, decoder(deployment.provider, &model), timeout).await;
    }
    // Bedrock's InvokeModel reports the input tokens of some models only in a header.
    let header_tokens = response
        .headers()
        .get("x-amzn-bedrock-input-token-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = match tokio::time::timeout(timeout, response.bytes()).await {
        Err(_) => return Err(AttemptError::Timeout(timeout)),
        Ok(Err(error)) => return Err(AttemptError::Connect(error.without_url().to_string())),
        Ok(Ok(bytes)) => bytes,
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(status_error(
            502,
            format!("{} sent an answer that is not JSON", deployment.provider.as_str()),
            "bad_upstream_response",
        ));
    };
    let hub = match (deployment.provider, endpoint) {
        (Provider::Gemini, Endpoint::Embeddings) => gemini::embeddings_response(&value, &model, estimate(request)),
        (Provider::VertexAi, Endpoint::Embeddings) => {
            gemini::vertex_embeddings_response(&value, &model, estimate(request))
        }
        (Provider::Bedrock, Endpoint::Embeddings) => {
            bedrock::embeddings_response(&value, &model, header_tokens, estimate(request))
        }
        (Provider::VertexAi, _) if is_claude(&model) => ApiFormat::Anthropic.codec().response_to_hub(&value),
        (Provider::Gemini | Provider::VertexAi, _) => gemini::response_to_hub(&value, &model)
            .map_err(|blocked| status_error(400, blocked.0, "content_policy_violation"))?,
        _ => bedrock::response_to_hub(&value, &model),
    };
    Ok(UpstreamResponse { format: ApiFormat::OpenAi, body: UpstreamBody::Full(Bytes::from(hub.to_string())) })
}

/// The stream decoder of `provider` (Gemini's SSE, or Bedrock's event stream) into hub SSE.
pub(crate) fn decoder(provider: Provider, model: &str) -> Box<dyn Decoder> {
    match provider {
        Provider::Bedrock => Box::new(BedrockDecoder::new(model)),
        Provider::VertexAi if is_claude(model) => {
            Box::new(SseDecoder::new(ApiFormat::Anthropic.codec().stream_to_hub(model, true)))
        }
        _ => Box::new(SseDecoder::new(Box::new(GeminiToHub::new(model)))),
    }
}

/// Turns a provider's stream bytes into hub SSE bytes.
pub(crate) trait Decoder: Send {
    /// Handles a chunk of the upstream body.
    fn push(&mut self, chunk: &[u8]) -> Vec<Bytes>;
    /// The upstream body ended.
    fn finish(&mut self) -> Vec<Bytes>;
}

/// An SSE stream → hub (Gemini's events, or Anthropic's from Claude on Vertex AI).
struct SseDecoder {
    parser: SseParser,
    transform: Box<dyn StreamTransform>,
}

impl SseDecoder {
    fn new(transform: Box<dyn StreamTransform>) -> Self {
        Self { parser: SseParser::default(), transform }
    }
}

impl Decoder for SseDecoder {
    fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        match self.parser.push(chunk) {
            Ok(events) => events.iter().flat_map(|event| self.transform.on_event(event)).collect(),
            Err(error) => error_chunk(&error.to_string(), "bad_upstream_stream"),
        }
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut out: Vec<Bytes> = self.parser.finish().map(|event| self.transform.on_event(&event)).unwrap_or_default();
        out.extend(self.transform.finish());
        out
    }
}

/// Bedrock's event stream → hub.
struct BedrockDecoder {
    decoder: eventstream::Decoder,
    transform: BedrockToHub,
    broken: bool,
}

impl BedrockDecoder {
    fn new(model: &str) -> Self {
        Self { decoder: eventstream::Decoder::default(), transform: BedrockToHub::new(model), broken: false }
    }
}

impl Decoder for BedrockDecoder {
    fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        if self.broken {
            return Vec::new();
        }
        let messages = match self.decoder.push(chunk) {
            Ok(messages) => messages,
            Err(error) => {
                self.broken = true;
                return self.transform.error(&error.to_string(), "bad_upstream_stream");
            }
        };
        let mut out = Vec::new();
        for message in messages {
            let payload: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            match message.header(":message-type") {
                Some("exception" | "error") => {
                    let name = message
                        .header(":exception-type")
                        .or_else(|| message.header(":error-code"))
                        .unwrap_or("exception")
                        .to_owned();
                    let text = payload
                        .get("message")
                        .or_else(|| payload.get("Message"))
                        .and_then(Value::as_str)
                        .map_or_else(|| name.clone(), str::to_owned);
                    let (_, code) = bedrock::exception_status(&name);
                    out.extend(self.transform.error(&format!("Bedrock {name}: {text}"), code));
                }
                _ => out.extend(self.transform.on_message(message.header(":event-type").unwrap_or_default(), &payload)),
            }
        }
        out
    }

    fn finish(&mut self) -> Vec<Bytes> {
        if self.broken {
            return Vec::new();
        }
        self.transform.finish()
    }
}

fn error_chunk(message: &str, code: &str) -> Vec<Bytes> {
    let body = serde_json::json!({"error": {"message": message, "type": "upstream_error", "code": code}});
    vec![crate::sse::encode(None, &body.to_string())]
}

/// The `error` of the first hub event in `chunks`, if the first event is one.
fn leading_error(chunks: &[Bytes]) -> Option<(String, String)> {
    let first = chunks.first()?;
    let text = std::str::from_utf8(first).ok()?;
    let data = text.lines().find_map(|line| line.strip_prefix("data: "))?;
    let value: Value = serde_json::from_str(data).ok()?;
    let error = value.get("error")?;
    Some((
        error.get("message").and_then(Value::as_str).unwrap_or("upstream error").to_owned(),
        error.get("code").and_then(Value::as_str).unwrap_or("upstream_error").to_owned(),
    ))
}

/// Reads the stream up to its first translated event (within `timeout`): an error there becomes
/// the attempt's error; otherwise the stream is handed on, that event first.
async fn first_event(
    mut upstream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    mut decoder: Box<dyn Decoder>,
    timeout: Duration,
) -> Result<UpstreamResponse, AttemptError> {
    let read = async {
        loop {
            match upstream.next().await {
                Some(Ok(chunk)) => {
                    let out = decoder.push(&chunk);
                    if !out.is_empty() {
                        return Ok((out, false));
                    }
                }
                Some(Err(error)) => return Err(AttemptError::Connect(error.to_string())),
                None => return Ok((decoder.finish(), true)),
            }
        }
    };
    let (first, ended) = match tokio::time::timeout(timeout, read).await {
        Err(_) => return Err(AttemptError::Timeout(timeout)),
        Ok(result) => result?,
    };
    if let Some((message, code)) = leading_error(&first) {
        let status = match code.as_str() {
            "content_policy_violation" | "invalid_request" => 400,
            "rate_limit_exceeded" => 429,
            "upstream_auth_failed" => 403,
            "upstream_timeout" => 408,
            "upstream_unavailable" => 503,
            _ => 502,
        };
        return Err(status_error(status, message, &code));
    }
    let head = futures_util::stream::iter([Ok(concat(first))]);
    let body = if ended { head.boxed() } else { head.chain(translated_rest(upstream, decoder)).boxed() };
    Ok(UpstreamResponse { format: ApiFormat::OpenAi, body: UpstreamBody::Stream(body) })
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        1 => chunks.into_iter().next().unwrap_or_default(),
        _ => {
            let mut out = BytesMut::new();
            for chunk in chunks {
                out.extend_from_slice(&chunk);
            }
            out.freeze()
        }
    }
}

/// The rest of the upstream body, translated chunk by chunk.
fn translated_rest(
    upstream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    decoder: Box<dyn Decoder>,
) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(Some((upstream, decoder)), |state| async move {
        let (mut upstream, mut decoder) = state?;
        loop {
            match upstream.next().await {
                Some(Ok(chunk)) => {
                    let out = decoder.push(&chunk);
                    if !out.is_empty() {
                        return Some((Ok(concat(out)), Some((upstream, decoder))));
                    }
                }
                Some(Err(error)) => return Some((Err(error), None)),
                None => {
                    let out = decoder.finish();
                    return (!out.is_empty()).then(|| (Ok(concat(out)), None));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertex_urls_name_the_publisher_of_the_model() {
        assert_eq!(
            vertex_url(
                "https://us-east5-aiplatform.googleapis.com",
                "p",
                "us-east5",
                "claude-3-5-haiku@20241022",
                "rawPredict"
            ),
            "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-3-5-haiku@20241022:rawPredict"
        );
        assert!(
            vertex_url("b", "p", "l", "gemini-2.0-flash", "generateContent")
                .contains("/publishers/google/models/gemini-2.0-flash:")
        );
    }

    #[test]
    fn gemini_base_urls_get_an_api_version_unless_they_name_one() {
        assert_eq!(
            gemini_base("https://generativelanguage.googleapis.com"),
            "https://generativelanguage.googleapis.com/v1beta"
        );
        assert_eq!(gemini_base("http://127.0.0.1:1/v1"), "http://127.0.0.1:1/v1");
    }
}
