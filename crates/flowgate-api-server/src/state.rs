//! What the management handlers share: the database, the shared state that carries events, the
//! key hasher, the seal key of HTTP guardrail tokens, and what the health check needs.

use std::sync::Arc;

use flowgate_common::keys::KeyHasher;
use flowgate_common::metrics::Metrics;
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
    /// For the health checks of the other services.
    pub(crate) http: reqwest::Client,
    /// Where the other services answer.
    pub(crate) targets: Arc<HealthTargets>,
    /// The process registry (cache counters).
    pub(crate) metrics: Metrics,
    /// The audit archive (object storage), when configured: `/api/audit?archived=true`.
    pub(crate) archive: Option<Arc<crate::audit::archived::Archive>>,
}
