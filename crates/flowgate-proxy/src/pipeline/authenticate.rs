//! Stage 1, authenticate: the virtual key in `Authorization: Bearer` or `x-api-key`, resolved
//! through the key cache (a miss asks the api-server).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::HeaderMap;

use crate::auth::{KeyInfo, caller_ip};
use crate::error::ProxyError;
use crate::state::ProxyState;

/// The request's key, usable (not revoked, not expired).
pub(crate) async fn authenticate(state: &ProxyState, headers: &HeaderMap) -> Result<Arc<KeyInfo>, ProxyError> {
    state.auth().authenticate(headers).await
}

/// The key of a read-only request (model and guardrail listings), with its IP allowlist checked.
pub(crate) async fn authenticated(
    state: &ProxyState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Arc<KeyInfo>, ProxyError> {
    let key = authenticate(state, headers).await?;
    let ip = caller_ip(peer.ip(), headers, state.limits());
    super::authorise::check_ip(&key, ip)?;
    Ok(key)
}
