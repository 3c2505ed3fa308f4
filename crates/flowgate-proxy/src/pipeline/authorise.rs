//! Stage 3, authorise: the client's address against the key's allowlist, the model against the
//! key's `allowed_models`, and the model against the routing table.

use std::net::IpAddr;

use crate::auth::KeyInfo;
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::routing::RoutingTable;

/// Whether `ip` may use `key`.
pub(crate) fn check_ip(key: &KeyInfo, ip: IpAddr) -> Result<(), ProxyError> {
    if key.allows_ip(ip) {
        Ok(())
    } else {
        Err(ProxyError::Forbidden(format!("client address {ip} is not allowed for this key")))
    }
}

/// Whether this request may go ahead with its key and model.
pub(crate) fn authorise(cx: &RequestContext, table: &RoutingTable) -> Result<(), ProxyError> {
    check_ip(&cx.key, cx.client_ip)?;
    if !cx.key.allows_model(&cx.model) {
        return Err(ProxyError::Forbidden(format!("this key may not use model `{}`", cx.model)));
    }
    if !table.contains(&cx.model) {
        return Err(ProxyError::ModelNotFound(cx.model.clone()));
    }
    Ok(())
}
