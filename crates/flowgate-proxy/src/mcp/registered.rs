//! The upstream servers registered at run time (`/api/admin/mcp/servers`, table `mcp_servers`):
//! loaded beside the config file's, on `mcp:servers:changed`, after a lost subscription and every
//! 30 seconds. A server whose row did not change keeps its client; one whose row changed gets a
//! new one (the old one's connection ends with its last call); a config-file name wins over a
//! registered one. A row that cannot be used (headers that cannot be opened, settings that fail
//! the config file's checks) is logged and left out, never served without its credentials.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flowgate_common::secretbox::{MCP_HEADERS_CONTEXT, SealKey};
use flowgate_common::settings::{McpServerSettings, McpTransport, validate_mcp_server};
use flowgate_common::tasks::Tasks;
use flowgate_contracts::channels::MCP_SERVERS_CHANGED;
use flowgate_contracts::mcp::McpServerOptions;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, Notification};
use secrecy::{ExposeSecret, SecretString};

use super::{Gateway, Server, build_server};

/// A registered server as stored.
struct Registered {
    name: String,
    settings: McpServerSettings,
    revision: i64,
}

/// Default seconds a registered server's call may take (the config file's default too).
const DEFAULT_TIMEOUT_SECS: u64 = 60;

async fn load(database: &Database, seal: &SealKey) -> Result<Vec<Registered>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, transport, url, description, headers_sealed, options, timeout_secs, updated_at FROM mcp_servers",
    )
    .fetch_all(database.pool())
    .await?;
    let mut servers = Vec::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let transport = match row.try_get::<String, _>("transport")?.as_str() {
            "http" => McpTransport::Http,
            "sse" => McpTransport::Sse,
            other => {
                tracing::error!(server = %name, transport = other, "a registered MCP server has a transport this build does not serve; left out");
                continue;
            }
        };
        let headers = match row.try_get::<Option<Vec<u8>>, _>("headers_sealed")? {
            None => BTreeMap::new(),
            Some(sealed) => {
                let opened = flowgate_common::secretbox::open(seal, &sealed)
                    .ok()
                    .and_then(|text| serde_json::from_str::<BTreeMap<String, String>>(text.expose_secret()).ok());
                let Some(map) = opened else {
                    tracing::error!(server = %name, "cannot open a registered MCP server's sealed headers; left out");
                    continue;
                };
                map.into_iter().map(|(k, v)| (k, SecretString::from(v))).collect()
            }
        };
        let Some(options) = McpServerOptions::from_text(&row.try_get::<String, _>("options")?) else {
            tracing::error!(server = %name, "a registered MCP server's options cannot be read; left out");
            continue;
        };
        let timeout_secs: Option<i64> = row.try_get("timeout_secs")?;
        let settings = McpServerSettings {
            url: Some(row.try_get("url")?),
            transport: Some(transport),
            description: row.try_get("description")?,
            headers,
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cacheable_tools: options.cacheable_tools,
            allowed_tools: options.allowed_tools,
            disallowed_tools: options.disallowed_tools,
            tool_costs: options.tool_costs,
            timeout_secs: timeout_secs
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .unwrap_or(DEFAULT_TIMEOUT_SECS),
        };
        if let Err(error) = validate_mcp_server(&name, &settings) {
            tracing::error!(server = %name, %error, "a registered MCP server fails the checks; left out");
            continue;
        }
        servers.push(Registered { name, settings, revision: row.try_get("updated_at")? });
    }
    Ok(servers)
}

/// Loads the registered servers into `gateway` and keeps them fresh, under `tasks`.
pub(super) fn start(
    gateway: Arc<Gateway>,
    configured: BTreeMap<String, Arc<Server>>,
    deps: &crate::Dependencies,
    client: reqwest::Client,
    tasks: &Tasks,
) {
    let database = deps.database.clone();
    let seal = SealKey::from_hasher(&deps.hasher, MCP_HEADERS_CONTEXT);
    let mut changes = deps.shared.subscribe(MCP_SERVERS_CHANGED);
    let job_tasks = tasks.clone();
    tasks.spawn("mcp-registered-servers", async move {
        loop {
            match load(&database, &seal).await {
                Ok(registered) => {
                    let current = gateway.servers();
                    let mut next = configured.clone();
                    for server in registered {
                        if next.contains_key(&server.name) {
                            tracing::warn!(server = %server.name, "a registered MCP server has the name of one in the config file; the config file's is used");
                            continue;
                        }
                        let kept = current.get(&server.name).filter(|s| s.revision == server.revision).cloned();
                        let built = match kept {
                            Some(kept) => kept,
                            None => match build_server(&server.name, &server.settings, client.clone(), &job_tasks, server.revision) {
                                Ok(built) => Arc::new(built),
                                Err(error) => {
                                    tracing::error!(server = %server.name, %error, "a registered MCP server cannot be set up; left out");
                                    continue;
                                }
                            },
                        };
                        next.insert(server.name, built);
                    }
                    gateway.replace_servers(next);
                }
                Err(error) => tracing::warn!(%error, "cannot load the registered MCP servers; keeping the previous ones"),
            }
            tokio::select! {
                message = changes.recv() => {
                    if matches!(message, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                    let _: Option<Notification> = message.ok();
                }
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    });
}
