//! Calls to model providers: request building per provider (OpenAI-compatible, Azure, Anthropic,
//! mock), the shared pooled HTTP client, and the classification of failures into retryable or not.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use secrecy::ExposeSecret;
use serde_json::Value;

pub(crate) mod providers;

use crate::mock;
use crate::routing::{Deployment, FallbackTrigger};
use crate::translate::ApiFormat;
pub(crate) use crate::wire::Endpoint;
use flowgate_common::settings::{FailureClass, Provider, UpstreamApi};

/// An upstream body: whole, or a byte stream (SSE).
pub(crate) enum UpstreamBody {
    /// The complete body.
    Full(Bytes),
    /// Chunks as they arrive.
    Stream(BoxStream<'static, Result<Bytes, std::io::Error>>),
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(bytes) => write!(f, "Full({} bytes)", bytes.len()),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A successful upstream answer (2xx), in the upstream's format.
#[derive(Debug)]
pub(crate) struct UpstreamResponse {
    /// The format of `body`.
    pub format: ApiFormat,
    /// The body.
    pub body: UpstreamBody,
}

/// Why one attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AttemptError {
    /// Could not connect or the connection broke before the response head.
    #[error("cannot reach upstream: {0}")]
    Connect(String),
    /// No response head within the deployment's timeout.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The upstream answered with an error status.
    #[error("upstream returned {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The upstream's error message.
        message: String,
        /// The upstream's error type or code.
        code: Option<String>,
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
        /// The provider's `retry-after` and rate-limit headers, for the client.
        headers: crate::rate_headers::ProviderHeaders,
    },
    /// This deployment cannot serve this endpoint (e.g. embeddings on Anthropic).
    #[error("{0}")]
    Unsupported(String),
}

impl AttemptError {
    /// Whether another attempt (same or another deployment) may succeed.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Timeout(_) => true,
            Self::Status { status, .. } => matches!(status, 408 | 409 | 429) || *status >= 500,
            Self::Unsupported(_) => false,
        }
    }

    /// Whether the provider refused the deployment's credentials (401, 403): the deployment is
    /// misconfigured, so it cools down at once and another deployment may be tried.
    pub(crate) fn credentials_rejected(&self) -> bool {
        matches!(self, Self::Status { status: 401 | 403, .. })
    }

    /// The kind of failure, as `retry_policy` and `allowed_fails_policy` name them.
    pub(crate) fn class(&self) -> FailureClass {
        match self {
            Self::Connect(_) => FailureClass::InternalServer,
            Self::Timeout(_) => FailureClass::Timeout,
            Self::Status { status: 401 | 403, .. } => FailureClass::Authentication,
            Self::Status { status: 408, .. } => FailureClass::Timeout,
            Self::Status { status: 429, .. } => FailureClass::RateLimit,
            Self::Status { .. } if self.fallback_trigger() == Some(FallbackTrigger::ContentPolicy) => {
                FailureClass::ContentPolicyViolation
            }
            Self::Status { status, .. } if *status >= 500 => FailureClass::InternalServer,
            Self::Status { .. } | Self::Unsupported(_) => FailureClass::BadRequest,
        }
    }

    /// Whether this failure has its own fallback list: a prompt longer than the context window
    /// (`context_window_fallbacks`), or content the provider refused (`content_policy_fallbacks`).
    /// Read from the error code the providers send, or their wording.
    pub(crate) fn fallback_trigger(&self) -> Option<FallbackTrigger> {
        let Self::Status { status: 400 | 413 | 422, message, code, .. } = self else { return None };
        let code = code.as_deref().unwrap_or_default();
        let message = message.to_ascii_lowercase();
        if code == "context_length_exceeded"
            || message.contains("context length")
            || message.contains("context window")
            || message.contains("prompt is too long")
            || message.contains("input is too long")
            || message.contains("maximum context")
        {
            return Some(FallbackTrigger::ContextWindow);
        }
        if matches!(code, "content_filter" | "content_policy_violation")
            || message.contains("content management policy")
            || message.contains("content policy")
        {
            return Some(FallbackTrigger::ContentPolicy);
        }
        None
    }

    /// A short label for metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout(_) => "timeout",
            Self::Status { status: 429, .. } => "rate_limited",
            Self::Status { status: 401 | 403, .. } => "credentials_rejected",
            Self::Status { status, .. } if *status >= 500 => "server_error",
            Self::Status { .. } => "client_error",
            Self::Unsupported(_) => "unsupported",
        }
    }
}

/// The upstream format a deployment speaks: its provider's, or the Responses API where the
/// deployment says `api: responses`. Gemini, Bedrock and Vertex AI speak their own wire formats,
/// translated from and to the hub at the edge (`upstream/providers.rs`), so to the pipeline they
/// are hub-format upstreams.
pub(crate) fn upstream_format(provider: Provider, api: UpstreamApi) -> ApiFormat {
    match (provider, api) {
        (Provider::Anthropic, _) => ApiFormat::Anthropic,
        (Provider::OpenAi | Provider::Azure | Provider::Mock, UpstreamApi::Responses) => ApiFormat::Responses,
        (
            Provider::OpenAi
            | Provider::Azure
            | Provider::Mock
            | Provider::Gemini
            | Provider::Bedrock
            | Provider::VertexAi,
            _,
        ) => ApiFormat::OpenAi,
    }
}

/// Builds the pooled upstream client: keep-alive, HTTP/2 where the server offers it, TCP_NODELAY.
pub(crate) fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Duration::from_secs(30))
        // A provider API does not redirect, and retries are the router's (with other
        // deployments, back-off and cooldowns): without these layers a request costs less.
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .build()
}

/// The client for OpenAI-compatible, Azure and Anthropic deployments: hyper's pooled client used
/// directly. Per request it does less than `reqwest` (which re-parses the URL three times and runs
/// a redirect layer on every request): a URI parsed once per deployment and endpoint
/// ([`UrlCache`]), the body sent as bytes. Keep-alive, HTTP/2 where the server offers it (ALPN),
/// TCP_NODELAY; TLS is rustls with the platform's roots, as for `reqwest`.
pub(crate) type DirectClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

/// Builds the [`DirectClient`].
pub(crate) fn direct_client() -> Result<DirectClient, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(30)));
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(connector))
}

fn upstream_message(body: &[u8]) -> (String, Option<String>) {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let error = value.get("error").unwrap_or(&value);
        let message = error.get("message").and_then(Value::as_str).or_else(|| error.as_str()).map(str::to_owned);
        let code = error
            .get("code")
            .and_then(Value::as_str)
            .or_else(|| error.get("type").and_then(Value::as_str))
            .map(str::to_owned);
        if let Some(message) = message {
            return (message, code);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(500).collect();
    (if text.trim().is_empty() { "upstream error".to_owned() } else { text }, None)
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    // `try_from`: a huge value (`1e300`) is no reason to panic.
    value.trim().parse::<f64>().ok().and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

/// Sends `body` (already in the upstream's format, model set) to `deployment`.
pub(crate) async fn send(
    client: &reqwest::Client,
    direct: &DirectClient,
    deployment: &Deployment,
    endpoint: Endpoint,
    body: Value,
    stream: bool,
    passthrough: &[(String, String)],
) -> Result<UpstreamResponse, AttemptError> {
    if deployment.provider == Provider::Mock {
        if !stream && !deployment.mock.latency.is_zero() {
            tokio::time::sleep(deployment.mock.latency).await;
        }
        return Ok(mock_response(deployment, endpoint, &body, stream));
    }
    let timeout = if stream { deployment.stream_timeout } else { deployment.timeout };
    if !providers::is_native(deployment.provider) {
        return send_direct(direct, deployment, endpoint, &body, stream, passthrough, timeout).await;
    }
    let request = providers::request(client, deployment, endpoint, &body, stream).await?;
    let response = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => return Err(AttemptError::Timeout(timeout)),
        Ok(Err(error)) => return Err(AttemptError::Connect(error.without_url().to_string())),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        let headers = crate::rate_headers::ProviderHeaders::from_response(status.as_u16(), response.headers());
        let response_headers = response.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(10), response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let (message, code) = upstream_message(&body);
        let error = AttemptError::Status { status: status.as_u16(), message, code, retry_after, headers };
        return Err(providers::error(deployment.provider, error, &response_headers));
    }
    providers::answer(deployment, endpoint, &body, response, stream, timeout).await
}

/// Sends a request to an OpenAI-compatible, Azure or Anthropic deployment with the
/// [`DirectClient`].
async fn send_direct(
    client: &DirectClient,
    deployment: &Deployment,
    endpoint: Endpoint,
    body: &Value,
    stream: bool,
    passthrough: &[(String, String)],
    timeout: Duration,
) -> Result<UpstreamResponse, AttemptError> {
    use http_body_util::BodyExt as _;
    let request = standard_request(deployment, endpoint, body, stream, passthrough)?;
    let response = match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => return Err(AttemptError::Timeout(timeout)),
        Ok(Err(error)) => return Err(AttemptError::Connect(connect_error(&error))),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let format = deployment.format_for(endpoint);
    if !status.is_success() {
        let retry_after = retry_after(response.headers());
        let headers = crate::rate_headers::ProviderHeaders::from_response(status.as_u16(), response.headers());
        // An error body is read whole, but not forever and not without bound.
        let limited = http_body_util::Limited::new(response.into_body(), 1024 * 1024);
        let body = tokio::time::timeout(Duration::from_secs(10), limited.collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        let (message, code) = upstream_message(&body);
        return Err(AttemptError::Status { status: status.as_u16(), message, code, retry_after, headers });
    }
    if stream {
        let frames = http_body_util::BodyDataStream::new(response.into_body());
        let bytes = frames.map(|chunk| chunk.map_err(std::io::Error::other));
        return Ok(UpstreamResponse { format, body: UpstreamBody::Stream(bytes.boxed()) });
    }
    match tokio::time::timeout(timeout, response.into_body().collect()).await {
        Err(_) => Err(AttemptError::Timeout(timeout)),
        Ok(Err(error)) => Err(AttemptError::Connect(error.to_string())),
        Ok(Ok(collected)) => Ok(UpstreamResponse { format, body: UpstreamBody::Full(collected.to_bytes()) }),
    }
}

/// A connection failure's message, with its causes (hyper's own says only "client error
/// (Connect)").
fn connect_error(error: &hyper_util::client::legacy::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The request to an OpenAI-compatible, Azure or Anthropic deployment.
fn standard_request(
    deployment: &Deployment,
    endpoint: Endpoint,
    body: &Value,
    stream: bool,
    passthrough: &[(String, String)],
) -> Result<http::Request<http_body_util::Full<Bytes>>, AttemptError> {
    use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
    // An Azure deployment's URL names the model; a wildcard one (`azure/*`) names the model asked
    // for, so its URL is made for each request instead of once.
    let per_request;
    let uri = if deployment.provider == Provider::Azure && deployment.upstream_model.ends_with('*') {
        let model = body.get("model").and_then(Value::as_str).unwrap_or_default();
        // A deployment name, never a path: the key's holder must not reach other Azure APIs.
        if model.is_empty()
            || model.starts_with('.')
            || model.contains("..")
            || !model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(AttemptError::Unsupported(format!(
                "model `{model}` is not an Azure deployment name (letters, digits, `-`, `_`, `.`)"
            )));
        }
        per_request = url_of(deployment, endpoint, model)?
            .parse::<http::Uri>()
            .map_err(|error| AttemptError::Unsupported(format!("invalid upstream URL for model `{model}`: {error}")))?;
        &per_request
    } else {
        deployment.urls.get_or_parse(endpoint, stream, || url_of(deployment, endpoint, &deployment.upstream_model))?
    };
    let bytes = serde_json::to_vec(body).map_err(|error| AttemptError::Unsupported(error.to_string()))?;
    let mut request = http::Request::new(http_body_util::Full::new(Bytes::from(bytes)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let secret = |value: String| {
        HeaderValue::try_from(value).map(|mut value| {
            value.set_sensitive(true);
            value
        })
    };
    let invalid_key = |_| AttemptError::Unsupported("the deployment's API key is not a valid header value".to_owned());
    if let Some(key) = &deployment.api_key {
        let key = key.expose_secret();
        let (name, value) = match deployment.provider {
            Provider::Anthropic => (HeaderName::from_static("x-api-key"), secret(key.to_owned())),
            Provider::Azure => (HeaderName::from_static("api-key"), secret(key.to_owned())),
            _ => (AUTHORIZATION, secret(format!("Bearer {key}"))),
        };
        headers.insert(name, value.map_err(invalid_key)?);
    }
    if let Some(organization) = &deployment.organization
        && deployment.provider == Provider::OpenAi
        && let Ok(value) = HeaderValue::try_from(organization.as_str())
    {
        headers.insert(HeaderName::from_static("openai-organization"), value);
    }
    if deployment.provider == Provider::Anthropic {
        let version =
            passthrough.iter().find(|(k, _)| k == "anthropic-version").map_or("2023-06-01", |(_, v)| v.as_str());
        if let Ok(value) = HeaderValue::try_from(version) {
            headers.insert(HeaderName::from_static("anthropic-version"), value);
        }
        if let Some((_, beta)) = passthrough.iter().find(|(k, _)| k == "anthropic-beta")
            && let Ok(value) = HeaderValue::try_from(beta.as_str())
        {
            headers.insert(HeaderName::from_static("anthropic-beta"), value);
        }
    }
    if stream {
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    }
    for (name, value) in &deployment.extra_headers {
        headers.insert(name.clone(), value.clone());
    }
    // W3C trace context, so a provider (or a gateway behind us) can join the trace.
    for (name, value) in flowgate_telemetry::current_trace_headers() {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
    Ok(request)
}

/// The URL of `endpoint` at `deployment` for the upstream model `model`, as text.
fn url_of(deployment: &Deployment, endpoint: Endpoint, model: &str) -> Result<String, AttemptError> {
    let responses = deployment.format == ApiFormat::Responses && endpoint == Endpoint::Chat;
    Ok(match (deployment.provider, endpoint) {
        (Provider::Anthropic, Endpoint::Chat) => format!("{}/v1/messages", deployment.base_url),
        (Provider::Azure, _) if responses => format!(
            "{}/openai/responses?api-version={}",
            deployment.base_url,
            deployment.api_version.as_deref().unwrap_or_default()
        ),
        (Provider::OpenAi | Provider::Mock, _) if responses => format!("{}/responses", deployment.base_url),
        (Provider::Anthropic, _) => {
            return Err(AttemptError::Unsupported(format!(
                "model `{}` is served by Anthropic, which has no {} endpoint",
                deployment.model_name,
                if endpoint == Endpoint::Embeddings { "embeddings" } else { "text completions" }
            )));
        }
        (Provider::Azure, _) => format!(
            "{}/openai/deployments/{}/{}?api-version={}",
            deployment.base_url,
            model,
            openai_path(endpoint),
            deployment.api_version.as_deref().unwrap_or_default()
        ),
        (_, _) => format!("{}/{}", deployment.base_url, openai_path(endpoint)),
    })
}

/// A deployment's upstream URLs, parsed on first use and kept: parsing one costs more than the
/// rest of building the request. One slot per endpoint and streaming flag (a provider may
/// stream from another URL); a URL must depend on nothing else of the request.
#[derive(Debug, Default)]
pub(crate) struct UrlCache([std::sync::OnceLock<http::Uri>; 6]);

impl UrlCache {
    /// The URL for `endpoint` (streamed or not), made by `make` the first time.
    fn get_or_parse(
        &self,
        endpoint: Endpoint,
        stream: bool,
        make: impl FnOnce() -> Result<String, AttemptError>,
    ) -> Result<&http::Uri, AttemptError> {
        let slot = match endpoint {
            Endpoint::Chat => 0,
            Endpoint::Completions => 2,
            Endpoint::Embeddings => 4,
        } + usize::from(stream);
        let Some(cell) = self.0.get(slot) else {
            return Err(AttemptError::Unsupported(format!("no URL slot for {endpoint:?}")));
        };
        if let Some(url) = cell.get() {
            return Ok(url);
        }
        let text = make()?;
        let url = text
            .parse::<http::Uri>()
            .map_err(|error| AttemptError::Connect(format!("invalid upstream URL for this deployment: {error}")))?;
        Ok(cell.get_or_init(|| url))
    }
}

fn openai_path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "chat/completions",
        Endpoint::Completions => "completions",
        Endpoint::Embeddings => "embeddings",
    }
}

fn mock_response(deployment: &Deployment, endpoint: Endpoint, body: &Value, stream: bool) -> UpstreamResponse {
    // The model the request names (a wildcard deployment's is the one asked).
    let model = body.get("model").and_then(Value::as_str).unwrap_or(&deployment.upstream_model);
    let params = &deployment.mock;
    let format = deployment.format_for(endpoint);
    let body = match endpoint {
        Endpoint::Chat => {
            let codec = format.codec();
            let answer = codec.mock_answer(body, params);
            if stream {
                let include_usage = body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
                UpstreamBody::Stream(mock::timed(codec.mock_events(&answer, model, params, include_usage), params))
            } else {
                UpstreamBody::Full(Bytes::from(codec.mock_body(&answer, model).to_string()))
            }
        }
        Endpoint::Embeddings => UpstreamBody::Full(Bytes::from(mock::embeddings(body, model).to_string())),
        Endpoint::Completions if stream => {
            UpstreamBody::Stream(mock::timed(mock::completion_events(body, model, params), params))
        }
        Endpoint::Completions => UpstreamBody::Full(Bytes::from(mock::completion(body, model, params).to_string())),
    };
    UpstreamResponse { format, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_without_panicking_on_any_value() {
        let hint = |value: &'static str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_static(value));
            retry_after(&headers)
        };
        assert_eq!(hint("2"), Some(Duration::from_secs(2)));
        assert_eq!(hint(" 0.5 "), Some(Duration::from_millis(500)));
        for odd in ["1e300", "-1", "NaN", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(hint(odd), None, "{odd}");
        }
    }

    #[test]
    fn a_provider_refusing_the_key_is_told_apart() {
        let status = |status| AttemptError::Status {
            status,
            message: String::new(),
            code: None,
            retry_after: None,
            headers: crate::rate_headers::ProviderHeaders::default(),
        };
        assert!(status(401).credentials_rejected() && status(403).credentials_rejected());
        assert!(!status(400).credentials_rejected() && !status(429).credentials_rejected());
        assert_eq!(status(401).kind(), "credentials_rejected");
    }
}
