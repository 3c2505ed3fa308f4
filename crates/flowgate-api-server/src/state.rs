//! What the management handlers share: the database, the shared state that carries events, the
//! key hasher, the seal key of HTTP guardrail tokens, and what the health check needs.

use std::sync::Arc;

use flowgate_common::keys::KeyHasher;
use flowgate_common::secretbox::SealKey;
use flowgate_db::{Database, SharedState};

use crate::targets::HealthTargets;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) database: Database,
    pub(crate) shared: SharedState,
    pub(crate) hasher: KeyHasher,
    /// Seals HTTP guardrail bearer tokens.
    pub(crate) seal_key: Arc<SealKey>,
    /// Seals the headers sent to registered A2A agents.
    pub(crate) a2a_seal_key: Arc<SealKey>,
    /// The A2A agents of the config file (read-only through the API).
    pub(crate) config_agents: Arc<Vec<String>>,
    /// Seals the headers sent to MCP servers registered at run time.
    pub(crate) mcp_seal_key: Arc<SealKey>,
    /// The MCP servers of the config file (read-only through the API).
    pub(crate) config_mcp_servers: Arc<Vec<String>>,
    /// The admin key (routes that take it or a virtual key check it themselves).
    pub(crate) admin_key: Arc<secrecy::SecretString>,
    /// For the health checks of the other services.
    pub(crate) http: reqwest::Client,
    /// Where the other services answer.
    pub(crate) targets: Arc<HealthTargets>,
    /// The config file's deployments (read-only through `/api/routing`).
    pub(crate) file_deployments: Arc<crate::routing::FileDeployments>,
    /// The key-encryption keys of provider credentials, when configured.
    pub(crate) keyring: Option<Arc<flowgate_db::credentials::Keyring>>,
    /// The audit archive (object storage), when configured: `/api/audit?archived=true`.
    pub(crate) archive: Option<Arc<crate::audit::archived::Archive>>,
    /// How long a portal session lasts (`api_server.session_ttl_secs`).
    pub(crate) session_ttl_secs: u64,
    /// Always mark the session cookie `Secure` (`api_server.secure_cookies`).
    pub(crate) secure_cookies: bool,
    /// The OpenID Connect provider, when single sign-on is configured.
    pub(crate) oidc: Option<Arc<crate::access::oidc::Oidc>>,
}
