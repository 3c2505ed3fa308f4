//! Prompts and resources of the upstream servers, passed through: `prompts/list` and
//! `resources/list` (and `resources/templates/list`) gather every server the key may reach
//! (a server without them, or that fails, is left out), prompt names namespaced like tools
//! (`server__prompt`); `prompts/get` goes to the prompt's server, and `resources/read` to the
//! server in scope, or in the aggregate to each reachable server in name order until one has the
//! URI (resource URIs are the servers' own and are not rewritten). The key's `mcp_servers`
//! applies; `mcp_tools` is about tools only.

use serde_json::{Map, Value, json};

use super::jsonrpc::{self, Id};
use super::methods::Call;
use super::upstream::UpstreamError;

/// Most pages read from one upstream for one list.
const MAX_PAGES: usize = 20;

/// Every item under `field` of `method`'s pages from `server`.
async fn gather(server: &super::upstream::Upstream, method: &str, field: &str) -> Result<Vec<Value>, UpstreamError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut params = Map::new();
        if let Some(cursor) = cursor.take() {
            params.insert("cursor".to_owned(), Value::String(cursor));
        }
        let page = server.request(method, params).await?;
        if let Some(Value::Array(listed)) = page.get(field) {
            items.extend(listed.iter().cloned());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(items)
}

impl Call<'_> {
    /// `prompts/list`, `resources/list` or `resources/templates/list` over the servers in scope.
    pub(crate) async fn list(&self, id: &Id, method: &str, field: &str, rename: bool) -> Value {
        let lists = futures_util::future::join_all(self.servers().map(|(name, server)| async move {
            match self.upstream(name, server).await {
                Ok(routed) => (name, gather(routed.get(), method, field).await),
                Err(error) => (name, Err(error)),
            }
        }))
        .await;
        let mut items = Vec::new();
        for (name, listed) in lists {
            match listed {
                Ok(listed) => {
                    for mut item in listed {
                        if rename
                            && let Some(bare) = item.get("name").and_then(Value::as_str).map(str::to_owned)
                            && let Some(object) = item.as_object_mut()
                        {
                            object.insert("name".to_owned(), Value::String(self.public_name(name, &bare)));
                        }
                        items.push(item);
                    }
                }
                // A server that has none of these answers "method not found": nothing to say.
                Err(UpstreamError::Rpc { code: jsonrpc::METHOD_NOT_FOUND, .. }) => {}
                Err(error) => {
                    tracing::warn!(server = name, method, %error, "an MCP server's list could not be read; left out")
                }
            }
        }
        jsonrpc::result(id, json!({ field: items }))
    }

    /// `prompts/get`: to the prompt's server, under its own name.
    pub(crate) async fn get_prompt(&self, id: &Id, mut params: Map<String, Value>) -> Value {
        let Some(name) = params.get("name").and_then(Value::as_str).map(str::to_owned) else {
            return jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, "`params.name` (the prompt's name) is required");
        };
        let Some((server_name, server, bare)) = self.resolve(&name) else {
            return jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, &format!("unknown prompt `{name}`"));
        };
        if let Err(refusal) = super::access::KeyAccess::of(&self.key.key).server(server_name) {
            return jsonrpc::error(Some(id), jsonrpc::FORBIDDEN, &refusal.message(server_name, bare));
        }
        params.insert("name".to_owned(), Value::String(bare.to_owned()));
        let routed = match self.upstream(server_name, server).await {
            Ok(routed) => routed,
            Err(error) => return super::methods::upstream_error(id, server_name, error),
        };
        match routed.get().request("prompts/get", params).await {
            Ok(result) => jsonrpc::result(id, result),
            Err(error) => super::methods::upstream_error(id, server_name, error),
        }
    }

    /// `resources/read`: to the server in scope, or to the first reachable server that has it.
    pub(crate) async fn read_resource(&self, id: &Id, params: Map<String, Value>) -> Value {
        if params.get("uri").and_then(Value::as_str).is_none() {
            return jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, "`params.uri` (the resource's URI) is required");
        }
        let mut last = None;
        for (name, server) in self.servers() {
            let answer = match self.upstream(name, server).await {
                Ok(routed) => routed.get().request("resources/read", params.clone()).await,
                Err(error) => Err(error),
            };
            match answer {
                Ok(result) => return jsonrpc::result(id, result),
                Err(error) => last = Some((name, error)),
            }
        }
        match last {
            Some((name, error)) if self.scope.is_some() => super::methods::upstream_error(id, name, error),
            _ => jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, "no MCP server this key may use has this resource"),
        }
    }
}
