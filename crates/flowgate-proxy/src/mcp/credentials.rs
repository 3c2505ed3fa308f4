//! Per-key and per-tenant upstream credentials (`/api/mcp/auth/{server}`, table
//! `mcp_credentials`): headers a key's (or, failing that, its tenant's) calls to a Streamable HTTP
//! or SSE server carry instead of the server's own. Each credential gets its own upstream client
//! (its own session with the server), shared by the keys it serves; lookups are kept a minute and
//! dropped on `mcp:credentials:changed`. A lookup that fails refuses the call rather than falling
//! back to the server's own credential.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flowgate_common::secretbox::{MCP_HEADERS_CONTEXT, SealKey};
use flowgate_common::settings::McpServerSettings;
use flowgate_common::tasks::Tasks;
use flowgate_contracts::channels::MCP_CREDENTIALS_CHANGED;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, Notification};
use flowgate_proto::keys::VirtualKey;
use secrecy::{ExposeSecret, SecretString};

use super::upstream::Upstream;

/// An upstream client that carries one key's or tenant's credential.
#[derive(Debug)]
pub(crate) struct Credentialed {
    /// `key:{id}` or `tenant:{id}`: whose credential (scopes the tool-call cache).
    pub(crate) owner: String,
    pub(crate) upstream: Upstream,
}

type Found = Option<(String, i64, BTreeMap<String, SecretString>)>;

/// The credentials, looked up and their clients kept.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// (server, key id) → the credential in force.
    lookups: moka::future::Cache<(String, String), Option<Arc<Credentialed>>>,
    /// (server, owner, updated_at) → its client.
    clients: moka::future::Cache<(String, String, i64), Arc<Credentialed>>,
    database: Database,
    seal: Arc<SealKey>,
    client: reqwest::Client,
    tasks: Tasks,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("clients", &self.clients.entry_count()).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The lookups, dropped on `mcp:credentials:changed` (a task under `tasks`).
    pub(crate) fn start(deps: &crate::Dependencies, client: reqwest::Client, tasks: &Tasks) -> Self {
        let this = Self {
            lookups: moka::future::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
            clients: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            database: deps.database.clone(),
            seal: Arc::new(SealKey::from_hasher(&deps.hasher, MCP_HEADERS_CONTEXT)),
            client,
            tasks: tasks.clone(),
        };
        let mut changes = deps.shared.subscribe(MCP_CREDENTIALS_CHANGED);
        let lookups = this.lookups.clone();
        tasks.spawn("mcp-credentials", async move {
            loop {
                let message = changes.recv().await;
                if matches!(message, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
                // A change, or a lost subscription (changes may have been missed): look up again.
                let _: Option<Notification> = message.ok();
                lookups.invalidate_all();
            }
        });
        this
    }

    /// The client carrying `key`'s credential for `server` (its own, else its tenant's); `None`
    /// when neither has one, or the server takes no per-key credentials (`settings` is `None`:
    /// a stdio server).
    pub(crate) async fn for_key(
        &self,
        server: &str,
        settings: Option<&McpServerSettings>,
        key: &VirtualKey,
    ) -> Result<Option<Arc<Credentialed>>, String> {
        let Some(settings) = settings else { return Ok(None) };
        let lookup = (server.to_owned(), key.id.clone());
        let found = self
            .lookups
            .try_get_with(lookup, async {
                let found = self.find(server, key).await.map_err(|e| e.to_string())?;
                let Some((owner, revision, headers)) = found else { return Ok::<_, String>(None) };
                let client_key = (server.to_owned(), owner.clone(), revision);
                let built = self
                    .clients
                    .try_get_with(client_key, async {
                        let mut own = settings.clone();
                        // The credential's headers replace the server's own of the same name.
                        for (name, value) in headers {
                            own.headers.retain(|existing, _| !existing.eq_ignore_ascii_case(&name));
                            own.headers.insert(name, value);
                        }
                        let upstream = Upstream::start(server, &own, self.client.clone(), &self.tasks)?;
                        Ok::<_, String>(Arc::new(Credentialed { owner: owner.clone(), upstream }))
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Some(built))
            })
            .await;
        found.map_err(|e| e.to_string())
    }

    /// The key's credential, else its tenant's: owner, revision and headers.
    async fn find(&self, server: &str, key: &VirtualKey) -> Result<Found, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT owner_kind, owner_id, headers_sealed, updated_at FROM mcp_credentials \
             WHERE server = $1 AND ((owner_kind = 'key' AND owner_id = $2) OR (owner_kind = 'tenant' AND owner_id = $3))",
        )
        .bind(server)
        .bind(&key.id)
        .bind(&key.tenant_id)
        .fetch_all(self.database.pool())
        .await?;
        let mut best: Found = None;
        for row in rows {
            let kind: String = row.try_get("owner_kind")?;
            let id: String = row.try_get("owner_id")?;
            let sealed: Vec<u8> = row.try_get("headers_sealed")?;
            let opened = flowgate_common::secretbox::open(&self.seal, &sealed)
                .ok()
                .and_then(|text| serde_json::from_str::<BTreeMap<String, String>>(text.expose_secret()).ok())
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!("the {kind}'s credential for `{server}` cannot be opened"))
                })?;
            let headers = opened.into_iter().map(|(k, v)| (k, SecretString::from(v))).collect();
            let candidate = (format!("{kind}:{id}"), row.try_get("updated_at")?, headers);
            if kind == "key" || best.is_none() {
                best = Some(candidate);
            }
        }
        Ok(best)
    }
}
