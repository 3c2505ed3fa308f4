//! Routing at run time, as the api-server and the proxies both see it: where a proxy publishes
//! its live view of the deployments (health, cooldown, latency) for `GET /api/routing`, and the
//! shape of that snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Shared-state key prefix of the proxies' snapshots: each proxy writes
/// `{HEALTH_KEY_PREFIX}{instance}` with [`HEALTH_TTL_SECS`]; the api-server reads every key under
/// the prefix.
pub const HEALTH_KEY_PREFIX: &str = "routing:health:";

/// How long a snapshot lives: a proxy that stopped publishing disappears from `GET /api/routing`
/// after this.
pub const HEALTH_TTL_SECS: u64 = 10;

/// How often a proxy publishes its snapshot.
pub const HEALTH_PUBLISH_SECS: u64 = 2;

/// A provider key given by reference to a sealed credential (`credential/NAME`).
pub const CREDENTIAL_PREFIX: &str = "credential/";

/// A provider key given by reference to the environment of the proxy (`os.environ/NAME`).
pub const ENV_PREFIX: &str = "os.environ/";

/// One proxy's view of its deployments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    /// The proxy instance (host name and process id).
    pub instance: String,
    /// The routing revision its table was built from.
    pub revision: i64,
    /// When the snapshot was taken, unix milliseconds.
    pub at: i64,
    /// Each deployment, by id.
    pub deployments: BTreeMap<String, DeploymentHealth>,
}

/// One deployment as one proxy sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentHealth {
    /// `healthy` or `cooling_down`.
    pub state: String,
    /// Seconds left of the cooldown, when cooling down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_seconds_left: Option<u64>,
    /// Smoothed latency of its answers, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Requests since the proxy started.
    pub requests: u64,
    /// Failed requests since the proxy started.
    pub errors: u64,
    /// Requests running now.
    pub in_flight: u64,
}
