//! `/api/mcp/auth/{server}`: a key's or a tenant's own credential for one upstream MCP server,
//! sent instead of the server's own for that key's calls (the key's before its tenant's). Stored
//! by an admin (for any key or tenant) or by a key's holder (for that key, authenticating with
//! it); sealed under [`flowgate_common::secretbox::MCP_HEADERS_CONTEXT`], never returned (only the
//! header names). Every write publishes the server's name on `mcp:credentials:changed`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use flowgate_common::secretbox;
use flowgate_contracts::channels::MCP_CREDENTIALS_CHANGED;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::store;
use crate::error::ApiError;
use crate::events::publish;
use crate::extract::{ApiJson, ApiQuery};
use crate::fields::{list_text, rfc3339};
use crate::state::AppState;

/// Who is asking.
enum Caller {
    Admin,
    /// A virtual key's holder: its id.
    Key(String),
}

/// Whose credential.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Owner {
    key_id: Option<String>,
    tenant_id: Option<String>,
}

/// `PUT /api/mcp/auth/{server}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutCredential {
    key_id: Option<String>,
    tenant_id: Option<String>,
    headers: Option<BTreeMap<String, SecretString>>,
    bearer_token: Option<SecretString>,
}

/// A credential as shown: whose, and the names of its headers.
#[derive(Debug, Serialize)]
pub(crate) struct CredentialView {
    server: String,
    owner_kind: String,
    owner_id: String,
    header_names: Vec<String>,
    updated_at: String,
}

/// `GET /api/mcp/auth/{server}`.
#[derive(Debug, Serialize)]
pub(crate) struct CredentialList {
    data: Vec<CredentialView>,
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let presented = flowgate_common::auth::bearer_token(headers).unwrap_or_default();
    if presented.is_empty() {
        return Err(ApiError::Unauthorized {
            code: "unauthorized",
            message: "send Authorization: Bearer <ADMIN_API_KEY or a virtual key>".to_owned(),
        });
    }
    if flowgate_common::auth::constant_time_eq(presented.as_bytes(), state.admin_key.expose_secret().as_bytes()) {
        return Ok(Caller::Admin);
    }
    if flowgate_common::keys::parse(presented).is_ok() {
        let hash = state.hasher.hash(presented);
        if let Some(key) = crate::grpc::KeyResolver::new(state.database.clone()).resolve(&hash).await? {
            let expired = key.expires_at != 0 && key.expires_at * 1000 <= flowgate_db::now_millis();
            if !key.revoked && !expired {
                return Ok(Caller::Key(key.id));
            }
        }
    }
    Err(ApiError::Unauthorized { code: "unauthorized", message: "the key is not valid".to_owned() })
}

/// The owner the caller may act for: an admin names a key or a tenant, a key holder only itself.
fn owner(
    caller: &Caller,
    key_id: Option<String>,
    tenant_id: Option<String>,
) -> Result<(&'static str, String), ApiError> {
    match (caller, key_id, tenant_id) {
        (Caller::Admin, Some(key), None) => Ok(("key", key)),
        (Caller::Admin, None, Some(tenant)) => Ok(("tenant", tenant)),
        (Caller::Admin, _, _) => {
            Err(ApiError::InvalidRequest("name exactly one of `key_id` and `tenant_id`".to_owned()))
        }
        (Caller::Key(own), key, None) if key.as_deref().is_none_or(|k| k == own) => Ok(("key", own.clone())),
        (Caller::Key(_), _, _) => Err(ApiError::Forbidden {
            code: "forbidden",
            message: "a key may store a credential only for itself".to_owned(),
        }),
    }
}

async fn known_server(state: &AppState, server: &str) -> Result<(), ApiError> {
    if state.config_mcp_servers.iter().any(|n| n == server)
        || store::get_server(&state.database, server).await?.is_some()
    {
        Ok(())
    } else {
        Err(ApiError::NotFound { kind: "MCP server", id: server.to_owned() })
    }
}

/// `PUT /api/mcp/auth/{server}`: stores (or replaces) the credential.
#[tracing::instrument(name = "mcp_auth.put", skip_all, fields(server = %server))]
pub(crate) async fn put(
    State(state): State<AppState>,
    Path(server): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PutCredential>,
) -> Result<Json<CredentialView>, ApiError> {
    let caller = caller(&state, &headers).await?;
    let (kind, id) = owner(&caller, request.key_id, request.tenant_id)?;
    known_server(&state, &server).await?;
    let headers = super::model::merge_headers(request.headers, request.bearer_token)?;
    if headers.is_empty() {
        return Err(ApiError::InvalidRequest("give `headers` or `bearer_token`".to_owned()));
    }
    for name in headers.keys() {
        if !flowgate_common::settings::valid_header_name(name) {
            return Err(ApiError::field(format!("headers.{name}"), "is not a valid header name"));
        }
    }
    let plain: BTreeMap<&str, &str> = headers.iter().map(|(k, v)| (k.as_str(), v.expose_secret())).collect();
    let text = SecretString::from(serde_json::to_string(&plain).unwrap_or_default());
    let sealed = secretbox::seal(&state.mcp_seal_key, text.expose_secret()).map_err(ApiError::Seal)?;
    let names: Vec<String> = headers.keys().cloned().collect();
    let updated_at = store::put_credential(&state.database, &server, kind, &id, sealed, &list_text(&names)).await?;
    publish(&state, MCP_CREDENTIALS_CHANGED, &server).await;
    tracing::info!(server = %server, owner_kind = kind, "MCP upstream credential stored");
    Ok(Json(CredentialView {
        server,
        owner_kind: kind.to_owned(),
        owner_id: id,
        header_names: names,
        updated_at: rfc3339(updated_at),
    }))
}

/// `DELETE /api/mcp/auth/{server}?key_id=|tenant_id=` → 204.
#[tracing::instrument(name = "mcp_auth.delete", skip_all, fields(server = %server))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(server): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<Owner>,
) -> Result<StatusCode, ApiError> {
    let caller = caller(&state, &headers).await?;
    let (kind, id) = owner(&caller, query.key_id, query.tenant_id)?;
    if !store::delete_credential(&state.database, &server, kind, &id).await? {
        return Err(ApiError::NotFound { kind: "MCP credential", id: format!("{server} {kind}:{id}") });
    }
    publish(&state, MCP_CREDENTIALS_CHANGED, &server).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/mcp/auth/{server}`: every credential for the server (an admin), or the caller's own.
#[tracing::instrument(name = "mcp_auth.list", skip_all, fields(server = %server))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CredentialList>, ApiError> {
    let caller = caller(&state, &headers).await?;
    let only = match &caller {
        Caller::Admin => None,
        Caller::Key(id) => Some(id.as_str()),
    };
    let rows = store::list_credentials(&state.database, &server, only).await?;
    let data = rows
        .into_iter()
        .map(|(kind, id, names, updated)| CredentialView {
            server: server.clone(),
            owner_kind: kind,
            owner_id: id,
            header_names: crate::fields::parse_list(&names),
            updated_at: rfc3339(updated),
        })
        .collect();
    Ok(Json(CredentialList { data }))
}
