//! Stage 3, authorise: the client's address against the key's allowlist, the model against the
//! key's `allowed_models`, and the model against the routing table (known, and of a mode that
//! serves the endpoint).

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
    if let Some(mode) = table.wrong_mode(&cx.model, cx.ingress.endpoint) {
        let served = match mode {
            "embedding" => "it serves /v1/embeddings only".to_owned(),
            "chat" | "completion" | "responses" => "it serves chat and completions, not embeddings".to_owned(),
            _ => "this gateway has no endpoint for that mode yet".to_owned(),
        };
        return Err(ProxyError::BadRequest {
            message: format!(
                "model `{}` has mode `{mode}` (model_info.mode) and cannot serve {} requests: {served}",
                cx.model,
                crate::routing::mode_endpoint_name(cx.ingress.endpoint),
            ),
            param: Some("model".to_owned()),
        });
    }
    Ok(())
}
