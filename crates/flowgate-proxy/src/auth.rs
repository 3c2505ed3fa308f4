//! Virtual-key authentication and authorisation on the hot path.
//!
//! A presented key is format- and checksum-checked without any lookup, hashed with the server
//! secret, and looked up in an in-process cache; a miss asks the api-server (over gRPC, or directly
//! in `all` mode) and concurrent misses for one key share a single lookup. Revocations, rotations
//! and edits arrive on the `keys:invalidate` channel and evict the key at once; after a lost Redis
//! subscription the whole cache is dropped. Where that channel cannot reach this process (a split
//! deployment without Redis), a resolved key is trusted for half a second only, so a revoked key
//! stops working within a second anyway.
//!
//! The key's guardrail policy arrives typed; it is resolved over the tenant's defaults once, when
//! the key is, and kept with it. A policy the api-server could not read is kept as that error:
//! the key's requests are then refused (`guardrail_unavailable`), never let through unguarded.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use flowgate_common::auth::constant_time_eq;
use flowgate_common::keys::{self, KeyHasher};
use flowgate_common::settings::parse_cidr;
use flowgate_contracts::channels::KEYS_INVALIDATE;
use flowgate_contracts::{GuardrailPolicy, PolicyError};
use flowgate_db::{Notification, SharedState};
use flowgate_proto::keys::{ResolveKeyRequest, VirtualKey};
use secrecy::ExposeSecret;

use crate::error::{KeyProblem, ProxyError};
use crate::peers::KeysPeer;
use crate::state::RequestLimits;
use flowgate_common::tasks::Tasks;

/// How long a resolved key is trusted without hearing about it, where changes are heard of
/// (`keys:invalidate` over Redis, or from the api-server in this process).
const CACHE_TTL: Duration = Duration::from_secs(60);
/// How long a resolved key is trusted where changes cannot be heard of: a proxy calling a remote
/// api-server with no Redis between them. Half of the second a revocation may take to apply.
const UNINFORMED_CACHE_TTL: Duration = Duration::from_millis(500);

/// A resolved, usable key.
#[derive(Debug)]
pub(crate) struct KeyInfo {
    /// What the api-server returned.
    pub key: VirtualKey,
    /// `ip_allowlist`, parsed.
    pub allowlist: Vec<(IpAddr, u8)>,
    /// The key's guardrail policy over its tenant's defaults, or why it cannot be read.
    guardrails: Result<GuardrailPolicy, PolicyError>,
}

impl KeyInfo {
    /// A key as the api-server returned it, with its allowlist parsed and its guardrail policy
    /// resolved (once, here, not per request).
    pub(crate) fn new(key: VirtualKey) -> Self {
        let allowlist = key.ip_allowlist.iter().filter_map(|c| parse_cidr(c).ok()).collect();
        let guardrails = GuardrailPolicy::from_key_guardrails(key.guardrails.as_ref());
        Self { key, allowlist, guardrails }
    }

    /// The guardrail policy the key's requests run under. When it cannot be read the request
    /// stops here (fail closed), with a warning naming the key id.
    pub(crate) fn guardrail_policy(&self) -> Result<&GuardrailPolicy, ProxyError> {
        self.guardrails.as_ref().map_err(|error| {
            tracing::warn!(key_id = %self.key.id, %error, "refusing a request: the key's guardrail policy cannot be read");
            ProxyError::GuardrailUnavailable {
                message: "the guardrail policy of this key cannot be read; the request was not forwarded".to_owned(),
            }
        })
    }

    /// Whether `model` may be used with this key.
    pub(crate) fn allows_model(&self, model: &str) -> bool {
        self.key.allowed_models.is_empty() || self.key.allowed_models.iter().any(|m| m == model)
    }

    /// Whether `ip` may use this key.
    pub(crate) fn allows_ip(&self, ip: IpAddr) -> bool {
        self.allowlist.is_empty() || self.allowlist.iter().any(|(net, prefix)| cidr_contains(*net, *prefix, ip))
    }
}

/// Whether `ip` is inside `net/prefix` (IPv4-mapped IPv6 addresses match IPv4 networks).
pub(crate) fn cidr_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// The key cache and resolver.
#[derive(Clone)]
pub(crate) struct Authenticator {
    hasher: KeyHasher,
    peer: KeysPeer,
    /// keyed hash → resolved key (`None`: no such key, cached briefly too).
    cache: moka::future::Cache<Vec<u8>, Option<Arc<KeyInfo>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("cached", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// A cache over `peer`, invalidated through `shared`'s `keys:invalidate` channel.
    pub(crate) fn new(hasher: KeyHasher, peer: KeysPeer, shared: &SharedState, tasks: &Tasks) -> Self {
        let informed = shared.is_shared() || matches!(peer, crate::peers::Peer::Local(_));
        let ttl = if informed { CACHE_TTL } else { UNINFORMED_CACHE_TTL };
        if !informed {
            tracing::info!(
                ttl_ms = ttl.as_millis(),
                "no Redis: key changes cannot reach this proxy, so resolved keys are checked with the api-server again after the TTL"
            );
        }
        let cache = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        let this = Self { hasher, peer, cache };
        let mut notifications = shared.subscribe(KEYS_INVALIDATE);
        let cache = this.cache.clone();
        tasks.spawn("key-invalidation", async move {
            loop {
                match notifications.recv().await {
                    Ok(Notification::Message(message)) => {
                        // `{key_id}`, or `tenant:{tenant_id}` for every key of a tenant.
                        let (tenant, id): (bool, Arc<str>) = match message.strip_prefix("tenant:") {
                            Some(tenant) => (true, Arc::from(tenant)),
                            None => (false, Arc::from(message.as_str())),
                        };
                        let matches = move |_: &Vec<u8>, entry: &Option<Arc<KeyInfo>>| {
                            entry.as_ref().is_some_and(|info| {
                                if tenant { *info.key.tenant_id == *id } else { *info.key.id == *id }
                            })
                        };
                        if let Err(error) = cache.invalidate_entries_if(matches) {
                            tracing::warn!(%error, "cannot invalidate key; dropping the key cache");
                            cache.invalidate_all();
                        }
                    }
                    Ok(Notification::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        cache.invalidate_all();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        this
    }

    /// The key presented in `headers` (`Authorization: Bearer` or `x-api-key`), checked for
    /// revocation and expiry.
    pub(crate) async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<KeyInfo>, ProxyError> {
        let token = flowgate_common::auth::bearer_token(headers)
            .filter(|t| !t.is_empty())
            .ok_or(ProxyError::Unauthorized(KeyProblem::Missing))?;
        keys::parse(token).map_err(|_| ProxyError::Unauthorized(KeyProblem::Invalid))?;
        let hash = self.hasher.hash(token);
        let peer = self.peer.clone();
        let lookup_hash = hash.clone();
        let resolved = self
            .cache
            .try_get_with(hash, async move {
                let response = peer.resolve(ResolveKeyRequest { key_hash: lookup_hash }).await?;
                Ok::<_, tonic::Status>(response.key.map(|key| Arc::new(KeyInfo::new(key))))
            })
            .await
            .map_err(|status| {
                tracing::error!(code = ?status.code(), message = status.message(), "key lookup failed");
                ProxyError::Unavailable { message: "key store unavailable".to_owned(), retry_after_secs: Some(1) }
            })?;
        let info = resolved.ok_or(ProxyError::Unauthorized(KeyProblem::Invalid))?;
        if info.key.revoked {
            return Err(ProxyError::Unauthorized(KeyProblem::Revoked));
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if info.key.expires_at > 0 && u64::try_from(info.key.expires_at).unwrap_or(0) <= now {
            return Err(ProxyError::Unauthorized(KeyProblem::Expired));
        }
        Ok(info)
    }
}

/// The edge pre-filter's shared secret, sent by the edge on every request it passes on.
const EDGE_TOKEN_HEADER: &str = "x-flowgate-edge";
/// The client's address as the edge saw it.
const EDGE_CLIENT_IP_HEADER: &str = "x-flowgate-client-ip";
/// The request id the edge gave the request.
const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id taken from the edge.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether the request carries the edge's shared secret (compared in constant time). Without a
/// configured `proxy.edge_token`, nothing is from the edge.
pub(crate) fn from_edge(headers: &HeaderMap, limits: &RequestLimits) -> bool {
    let Some(token) = &limits.edge_token else { return false };
    headers
        .get(EDGE_TOKEN_HEADER)
        .is_some_and(|presented| constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()))
}

/// The client's address: the edge's `X-Flowgate-Client-IP` when the request carries the edge's
/// secret, else what [`client_ip`] finds. A client calling the origin directly cannot set it.
pub(crate) fn caller_ip(peer: IpAddr, headers: &HeaderMap, limits: &RequestLimits) -> IpAddr {
    if from_edge(headers, limits)
        && let Some(ip) = headers
            .get(EDGE_CLIENT_IP_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return ip;
    }
    client_ip(peer, headers, &limits.trusted_proxies)
}

/// The request id the edge set (`X-Request-Id`, up to 64 of `[A-Za-z0-9._-]`), when the request
/// carries the edge's secret; `None` otherwise (the proxy makes its own).
pub(crate) fn edge_request_id(headers: &HeaderMap, limits: &RequestLimits) -> Option<String> {
    if !from_edge(headers, limits) {
        return None;
    }
    let id = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?.trim();
    let valid = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    valid.then(|| id.to_owned())
}

/// The client's address: the socket peer, or the first untrusted hop of `X-Forwarded-For` when the
/// peer is a trusted proxy.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[(IpAddr, u8)]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|(net, prefix)| cidr_contains(*net, *prefix, ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    // Walk from the nearest hop outwards; the first address we do not trust is the client.
    hops.into_iter().rev().find(|ip| !is_trusted(*ip)).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_match_v4_v6_and_mapped_addresses() {
        assert!(cidr_contains(ip("10.0.0.0"), 8, ip("10.2.3.4")));
        assert!(!cidr_contains(ip("10.0.0.0"), 8, ip("11.0.0.1")));
        assert!(cidr_contains(ip("10.0.0.0"), 8, ip("::ffff:10.9.9.9")));
        assert!(cidr_contains(ip("2001:db8::"), 32, ip("2001:db8:1::5")));
        assert!(!cidr_contains(ip("2001:db8::"), 32, ip("2001:db9::5")));
        assert!(cidr_contains(ip("0.0.0.0"), 0, ip("8.8.8.8")));
    }

    #[test]
    fn the_guardrail_policy_is_resolved_once_and_an_unreadable_one_fails_closed() {
        use flowgate_contracts::guardrails::key_guardrails;

        let key = |guardrails| VirtualKey { id: "key-1".into(), guardrails, ..VirtualKey::default() };
        let good = KeyInfo::new(key(Some(key_guardrails(
            r#"{"optional_guardrails":["pii-redact"]}"#,
            r#"{"mandatory_guardrails":["secrets-detect"],"policy_id":"strict"}"#,
        ))));
        let policy = good.guardrail_policy().unwrap();
        assert_eq!(policy.mandatory_guardrails, ["secrets-detect"]);
        assert_eq!(policy.optional_guardrails, ["pii-redact"]);
        assert_eq!(policy.policy_id.as_deref(), Some("strict"));

        let unreadable = KeyInfo::new(key(Some(key_guardrails(r#"{"mandatory_guardrails": 7}"#, "{}"))));
        let error = unreadable.guardrail_policy().unwrap_err();
        assert!(matches!(error, ProxyError::GuardrailUnavailable { .. }), "{error:?}");
        assert_eq!(error.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let missing = KeyInfo::new(key(None));
        assert!(matches!(missing.guardrail_policy(), Err(ProxyError::GuardrailUnavailable { .. })));
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_trusted_peers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7, 10.0.0.2".parse().unwrap());
        let trusted = [(ip("10.0.0.0"), 8), (ip("127.0.0.1"), 32)];
        assert_eq!(client_ip(ip("127.0.0.1"), &headers, &trusted), ip("203.0.113.7"));
        assert_eq!(client_ip(ip("198.51.100.1"), &headers, &trusted), ip("198.51.100.1"), "spoofed header ignored");
        assert_eq!(client_ip(ip("127.0.0.1"), &HeaderMap::new(), &trusted), ip("127.0.0.1"));
    }

    fn limits(edge_token: Option<&str>, trusted: &[(IpAddr, u8)]) -> RequestLimits {
        RequestLimits {
            max_body_bytes: 1024,
            stream_timeout: Duration::from_secs(1),
            trusted_proxies: trusted.to_vec(),
            edge_token: edge_token.map(secrecy::SecretString::from),
            max_n: 1,
            deny_unpriced: false,
        }
    }

    #[test]
    fn the_edge_client_ip_and_request_id_are_believed_only_with_the_edge_secret() {
        let token = "edge-token-0123456789";
        let mut headers = HeaderMap::new();
        headers.insert("x-flowgate-client-ip", "203.0.113.7".parse().unwrap());
        headers.insert("x-request-id", "0193-edge-id".parse().unwrap());
        let peer = ip("198.51.100.1");
        let edge = limits(Some(token), &[]);
        assert_eq!(caller_ip(peer, &headers, &edge), peer, "no secret: forged header ignored");
        assert_eq!(edge_request_id(&headers, &edge), None);
        headers.insert("x-flowgate-edge", "edge-token-0123456788".parse().unwrap());
        assert_eq!(caller_ip(peer, &headers, &edge), peer, "wrong secret: ignored");
        headers.insert("x-flowgate-edge", token.parse().unwrap());
        assert_eq!(caller_ip(peer, &headers, &edge), ip("203.0.113.7"));
        assert_eq!(edge_request_id(&headers, &edge).as_deref(), Some("0193-edge-id"));
        assert_eq!(caller_ip(peer, &headers, &limits(None, &[])), peer, "no edge configured: ignored");
        assert_eq!(edge_request_id(&headers, &limits(None, &[])), None);

        headers.insert("x-flowgate-client-ip", "not-an-ip".parse().unwrap());
        headers.insert("x-forwarded-for", "192.0.2.5".parse().unwrap());
        let behind_proxy = limits(Some(token), &[(peer, 32)]);
        assert_eq!(caller_ip(peer, &headers, &behind_proxy), ip("192.0.2.5"), "a bad edge IP falls back");
        for bad in ["", "has space", "semi;colon", &"x".repeat(65)] {
            headers.insert("x-request-id", bad.parse().unwrap());
            assert_eq!(edge_request_id(&headers, &edge), None, "{bad:?}");
        }
    }
}
