//! Routing at run time: the proxy's table made of the config file's deployments and those written
//! through `/api/routing` (stored in the database), with `credential/NAME` references opened from
//! the sealed credentials; rebuilt and swapped whole when the routing revision moves.
//!
//! A [`Follower`] task applies a change on `routing:changed` (the revision as payload), after a
//! lost subscription (`Resync`), and, as the backstop when pub/sub is down, whenever the
//! database's revision differs from the table's on its periodic check (`routing.refresh_ms`).
//! It also publishes this proxy's view of its deployments (health, cooldown, latency) to the
//! shared state every few seconds, with a TTL, for `GET /api/routing`.
//!
//! Nothing here runs on the request path: requests load the current table once (one atomic
//! load) and keep it to the end, so a request, or a stream, started on a deployment that is then
//! removed finishes on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use flowgate_common::Settings;
use flowgate_common::settings::{ModelEntry, model_entry_from_json};
use flowgate_common::tasks::Tasks;
use flowgate_contracts::channels::ROUTING_CHANGED;
use flowgate_contracts::routing::{
    CREDENTIAL_PREFIX, DeploymentHealth, HEALTH_KEY_PREFIX, HEALTH_PUBLISH_SECS, HEALTH_TTL_SECS, HealthSnapshot,
};
use flowgate_db::credentials::{CredentialError, Keyring};
use flowgate_db::{Database, Notification, SharedState};
use secrecy::{ExposeSecret, SecretString};

use super::RoutingTable;
use crate::state::ProxyState;

/// Where the routing comes from: the file's settings, the database, the credentials' keys and
/// the environment `os.environ/` references of stored deployments are read from.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    settings: Arc<Settings>,
    database: Database,
    keyring: Option<Arc<Keyring>>,
    env: Arc<HashMap<String, String>>,
}

/// One load: the revision it reflects, the settings to build the table from, and each
/// deployment's version (health is kept for a deployment whose version did not change).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) revision: i64,
    pub(crate) settings: Settings,
    pub(crate) versions: HashMap<String, i64>,
}

impl Source {
    /// The source for a proxy configured by `settings` (fails when the key-encryption key
    /// settings cannot be used).
    pub(crate) fn new(settings: &Settings, database: Database) -> Result<Self, CredentialError> {
        let keyring = flowgate_db::credentials::keyring_from_settings(&settings.credentials)?.map(Arc::new);
        Ok(Self { settings: Arc::new(settings.clone()), database, keyring, env: Arc::new(std::env::vars().collect()) })
    }

    /// The first load, at start, within `wait`: fails when stored credentials exist and the
    /// configured key-encryption key is not theirs (a clear error at start). A database that
    /// cannot be read in time (not migrated, down, slow) gives `None`: the config file's
    /// deployments serve until the follower can read it.
    pub(crate) async fn first_load(&self, wait: Duration) -> Result<Option<Loaded>, CredentialError> {
        let attempt = async {
            flowgate_db::credentials::check(&self.database, self.keyring.as_deref()).await?;
            Ok::<Loaded, CredentialError>(self.load().await?)
        };
        match tokio::time::timeout(wait, attempt).await {
            Ok(Ok(loaded)) => Ok(Some(loaded)),
            Ok(Err(CredentialError::Database(error))) => {
                tracing::warn!(%error, "cannot read the stored routing yet; serving the config file's deployments until it can be read");
                Ok(None)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => {
                tracing::warn!(
                    wait_ms = wait.as_millis(),
                    "the stored routing was not read in time; serving the config file's deployments until it can be read"
                );
                Ok(None)
            }
        }
    }

    /// The file's deployments and the stored ones, with credentials opened.
    pub(crate) async fn load(&self) -> Result<Loaded, flowgate_db::sqlx::Error> {
        let (revision, stored) = flowgate_db::routing::snapshot(&self.database).await?;
        let secrets = flowgate_db::credentials::open_all(&self.database, self.keyring.as_deref()).await?;
        let mut settings = (*self.settings).clone();
        let mut versions: HashMap<String, i64> = HashMap::new();
        for (index, entry) in settings.model_list.iter().enumerate() {
            versions.insert(entry.model_info.id.clone().unwrap_or_else(|| format!("{}/{index}", entry.model_name)), 0);
        }
        for row in stored {
            if versions.contains_key(&row.id) {
                tracing::warn!(deployment = %row.id, "a stored deployment has the id of a file deployment; the file's is used");
                continue;
            }
            let value = match serde_json::from_str(&row.entry) {
                Ok(value) => value,
                Err(error) => {
                    tracing::error!(deployment = %row.id, %error, "a stored deployment is not JSON; it is left out");
                    continue;
                }
            };
            match model_entry_from_json(value, Some(&self.env)) {
                Ok((entry, _)) => {
                    versions.insert(row.id.clone(), row.revision);
                    settings.model_list.push(entry);
                }
                Err(error) => {
                    tracing::error!(deployment = %row.id, %error, "a stored deployment cannot be used by this proxy; it is left out");
                }
            }
        }
        for entry in &mut settings.model_list {
            open_references(entry, &secrets);
        }
        Ok(Loaded { revision, settings, versions })
    }
}

/// Replaces `credential/NAME` in the entry's secret fields with the credential's value. A
/// credential that does not exist (or cannot be opened) leaves the deployment without that
/// secret, and says so: its requests fail upstream, the others are unaffected.
fn open_references(entry: &mut ModelEntry, secrets: &HashMap<String, SecretString>) {
    let id = entry.model_info.id.clone().unwrap_or_else(|| entry.model_name.clone());
    let params = &mut entry.litellm_params;
    for (field, slot) in [
        ("api_key", &mut params.api_key),
        ("aws_access_key_id", &mut params.aws_access_key_id),
        ("aws_secret_access_key", &mut params.aws_secret_access_key),
        ("aws_session_token", &mut params.aws_session_token),
        ("vertex_credentials", &mut params.vertex_credentials),
    ] {
        let Some(name) =
            slot.as_ref().and_then(|v| v.expose_secret().strip_prefix(CREDENTIAL_PREFIX).map(str::to_owned))
        else {
            continue;
        };
        match secrets.get(&name) {
            Some(value) => *slot = Some(value.clone()),
            None => {
                tracing::error!(deployment = %id, field, credential = %name, "the credential does not exist or cannot be opened; the deployment is left without it");
                *slot = None;
            }
        }
    }
}

/// This process's name in the snapshots: host and process id.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "proxy".to_owned());
    format!("{host}:{}", std::process::id())
}

/// The table's deployments as this proxy sees them.
fn snapshot(instance: &str, revision: i64, table: &RoutingTable) -> HealthSnapshot {
    let mut deployments = BTreeMap::new();
    for d in table.deployments() {
        let (requests, errors) = d.stats.totals();
        let cooldown = d.stats.cooldown_remaining();
        deployments.insert(
            d.id.clone(),
            DeploymentHealth {
                state: if cooldown.is_some() { "cooling_down" } else { "healthy" }.to_owned(),
                cooldown_seconds_left: cooldown.map(|c| c.as_secs().max(1)),
                latency_ms: d.stats.latency().map(|l| l.as_secs_f64() * 1000.0),
                requests,
                errors,
                in_flight: u64::from(d.stats.in_flight()),
            },
        );
    }
    HealthSnapshot { instance: instance.to_owned(), revision, at: flowgate_db::now_millis(), deployments }
}

/// Keeps a proxy's table in step with the stored routing.
pub(crate) struct Follower {
    source: Source,
    state: ProxyState,
    shared: SharedState,
    refresh: Duration,
    revision: i64,
    instance: String,
}

impl Follower {
    /// Starts following, from `revision` (what the current table was built from).
    pub(crate) fn start(
        source: Source,
        state: ProxyState,
        shared: SharedState,
        revision: i64,
        refresh: Duration,
        tasks: &Tasks,
    ) {
        let changes = shared.subscribe(ROUTING_CHANGED);
        let follower = Self { source, state, shared, refresh, revision, instance: instance_name() };
        tasks.spawn("routing-follower", follower.run(changes));
    }

    async fn apply(&mut self) {
        match self.source.load().await {
            Ok(loaded) => {
                let Loaded { revision, settings, versions } = loaded;
                let deployments = versions.len();
                self.state.swap_table(|health| {
                    health.keep(&versions);
                    let table = RoutingTable::build(&settings, health);
                    table.warn_unpriced();
                    table
                });
                if revision != self.revision {
                    tracing::info!(from = self.revision, to = revision, deployments, "routing table replaced");
                }
                self.revision = revision;
                self.publish().await;
            }
            Err(error) => tracing::warn!(%error, "cannot load the stored routing; keeping the current table"),
        }
    }

    async fn publish(&self) {
        let snapshot = snapshot(&self.instance, self.revision, &self.state.table());
        let Ok(bytes) = serde_json::to_vec(&snapshot) else { return };
        let key = format!("{HEALTH_KEY_PREFIX}{}", self.instance);
        if let Err(error) = self.shared.set_ex(&key, &bytes, Duration::from_secs(HEALTH_TTL_SECS)).await {
            tracing::debug!(%error, "cannot publish the deployment snapshot");
        }
    }

    async fn run(mut self, mut changes: tokio::sync::broadcast::Receiver<Notification>) {
        let mut check = tokio::time::interval(self.refresh);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = tokio::time::interval(Duration::from_secs(HEALTH_PUBLISH_SECS));
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                message = changes.recv() => match message {
                    Ok(Notification::Message(payload)) => {
                        if payload.parse::<i64>().is_ok_and(|r| r == self.revision) {
                            continue;
                        }
                        self.apply().await;
                    }
                    Ok(Notification::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.apply().await,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = check.tick() => match flowgate_db::routing::revision(&self.source.database).await {
                    Ok(revision) => {
                        failing = false;
                        if revision != self.revision {
                            self.apply().await;
                        }
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(%error, "cannot read the routing revision; keeping the current table");
                        }
                        failing = true;
                    }
                },
                _ = report.tick() => self.publish().await,
            }
        }
    }
}
