//! The services the proxy calls: api-server (key resolution), compliance and policy. Each is either
//! the same implementation in this process (`all` mode, no network hop) or a gRPC client whose
//! every call carries the internal token.

use std::sync::Arc;
use std::time::Duration;

use flowgate_common::internal::InternalToken;
use flowgate_common::server::ReadinessCheck;
use flowgate_proto::compliance::compliance_service_client::ComplianceServiceClient;
use flowgate_proto::compliance::compliance_service_server::ComplianceService;
use flowgate_proto::keys::key_service_client::KeyServiceClient;
use flowgate_proto::keys::key_service_server::KeyService;
use flowgate_proto::policy::policy_service_client::PolicyServiceClient;
use flowgate_proto::policy::policy_service_server::PolicyService;
use tonic::transport::{Channel, Endpoint};

/// A peer service: in process, or across gRPC.
pub enum Peer<S: ?Sized> {
    /// The implementation itself, called directly.
    Local(Arc<S>),
    /// A lazily connected gRPC channel to `url`.
    Remote {
        /// Where it is, for `/readyz`.
        url: String,
        /// The channel (cheap to clone).
        channel: Channel,
        /// Sent with every call.
        token: InternalToken,
    },
}

impl<S: ?Sized> Clone for Peer<S> {
    fn clone(&self) -> Self {
        match self {
            Self::Local(inner) => Self::Local(inner.clone()),
            Self::Remote { url, channel, token } => {
                Self::Remote { url: url.clone(), channel: channel.clone(), token: token.clone() }
            }
        }
    }
}

impl<S: ?Sized> std::fmt::Debug for Peer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(_) => f.write_str("Peer::Local"),
            Self::Remote { url, .. } => write!(f, "Peer::Remote({url})"),
        }
    }
}

/// Why a peer URL was not usable.
#[derive(Debug, thiserror::Error)]
#[error("invalid gRPC endpoint `{url}`: {message}")]
pub struct PeerUrlError {
    url: String,
    message: String,
}

impl<S: ?Sized> Peer<S> {
    /// A lazily connected client for `url`, sending `token` with every call: the proxy starts even
    /// when the peer is not up yet.
    pub fn remote(url: &str, timeout: Duration, token: &InternalToken) -> Result<Self, PeerUrlError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| PeerUrlError { url: url.to_owned(), message: e.to_string() })?
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(Self::Remote { url: url.to_owned(), channel: endpoint.connect_lazy(), token: token.clone() })
    }
}

/// A request carrying the internal token and the current trace context (`traceparent`) as gRPC
/// metadata.
fn traced<T>(message: T, token: &InternalToken) -> tonic::Request<T> {
    let mut request = token.request(message);
    for (name, value) in flowgate_telemetry::current_trace_headers() {
        if let (Ok(name), Ok(value)) = (
            tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            request.metadata_mut().insert(name, value);
        }
    }
    request
}

/// The key service.
pub type KeysPeer = Peer<dyn KeyService>;
/// The compliance service.
pub type CompliancePeer = Peer<dyn ComplianceService>;
/// The policy service.
pub type PolicyPeer = Peer<dyn PolicyService>;

impl KeysPeer {
    /// Resolves a key hash.
    pub async fn resolve(
        &self,
        request: flowgate_proto::keys::ResolveKeyRequest,
    ) -> Result<flowgate_proto::keys::ResolveKeyResponse, tonic::Status> {
        match self {
            Self::Local(service) => {
                service.resolve_key(tonic::Request::new(request)).await.map(tonic::Response::into_inner)
            }
            Self::Remote { channel, token, .. } => KeyServiceClient::new(channel.clone())
                .resolve_key(traced(request, token))
                .await
                .map(tonic::Response::into_inner),
        }
    }
}

impl CompliancePeer {
    /// Scans text.
    pub async fn scan(
        &self,
        request: flowgate_proto::compliance::ScanRequest,
    ) -> Result<flowgate_proto::compliance::ScanResponse, tonic::Status> {
        match self {
            Self::Local(service) => service.scan(tonic::Request::new(request)).await.map(tonic::Response::into_inner),
            Self::Remote { channel, token, .. } => ComplianceServiceClient::new(channel.clone())
                .scan(traced(request, token))
                .await
                .map(tonic::Response::into_inner),
        }
    }
}

impl PolicyPeer {
    /// Evaluates a policy.
    pub async fn evaluate(
        &self,
        request: flowgate_proto::policy::EvaluateRequest,
    ) -> Result<flowgate_proto::policy::EvaluateResponse, tonic::Status> {
        match self {
            Self::Local(service) => {
                service.evaluate(tonic::Request::new(request)).await.map(tonic::Response::into_inner)
            }
            Self::Remote { channel, token, .. } => PolicyServiceClient::new(channel.clone())
                .evaluate(traced(request, token))
                .await
                .map(tonic::Response::into_inner),
        }
    }
}

/// `/readyz` check of a peer: the standard gRPC health RPC for a remote peer, always ready in
/// process.
#[derive(Debug)]
pub struct PeerCheck {
    name: &'static str,
    channel: Option<Channel>,
}

impl PeerCheck {
    /// A check named `name` for `peer`.
    pub fn new<S: ?Sized>(name: &'static str, peer: &Peer<S>) -> Self {
        let channel = match peer {
            Peer::Local(_) => None,
            Peer::Remote { channel, .. } => Some(channel.clone()),
        };
        Self { name, channel }
    }
}

#[async_trait::async_trait]
impl ReadinessCheck for PeerCheck {
    fn name(&self) -> &str {
        self.name
    }

    async fn check(&self) -> Result<(), String> {
        let Some(channel) = &self.channel else { return Ok(()) };
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let response = client
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .map_err(|status| format!("{}: {}", status.code(), status.message()))?;
        if response.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err("not serving".to_owned())
        }
    }
}
