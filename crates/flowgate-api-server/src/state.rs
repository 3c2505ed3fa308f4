//! What the management handlers share: the database, the shared state that carries events, the
//! key hasher, the seal key of HTTP guardrail tokens, and what the health check needs.

use std::sync::Arc;

use flowgate_common::keys::KeyHasher;
use flowgate_common::metrics::Metrics;
use flowgate_common::secretbox::SealKey;
use flowgate_db::{Database, SharedState};
use secrecy::SecretString;

use crate::targets::HealthTargets;

/// What the handlers share.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) database: Database,
    pub(crate) shared: SharedState,
    pub(crate) hasher: KeyHasher,
    /// Seals HTTP guardrail bearer tokens.
    pub(crate) seal_key: Arc<SealKey>,
    /// For the health checks of the other services.
    pub(crate) http: reqwest::Client,
    /// Where the other services answer.
    pub(crate) targets: Arc<HealthTargets>,
    /// The process registry (cache counters).
    pub(crate) metrics: Metrics,
    /// The admin key (full access; exchanged for a session at sign-in).
    pub(crate) admin_key: Arc<SecretString>,
    /// How long a portal session lasts (`api_server.session_ttl_secs`).
    pub(crate) session_ttl_secs: u64,
    /// Always mark the session cookie `Secure` (`api_server.secure_cookies`).
    pub(crate) secure_cookies: bool,
    /// The OpenID Connect provider, when single sign-on is configured.
    pub(crate) oidc: Option<Arc<crate::access::oidc::Oidc>>,
}
