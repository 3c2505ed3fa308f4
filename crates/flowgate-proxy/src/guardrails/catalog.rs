//! The guardrail catalog as the proxy holds it: loaded from the database, HTTP guardrail tokens
//! opened from their sealed form, and reloaded on `guardrails:changed`, after a lost subscription
//! and every 30 seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use flowgate_common::secretbox::{GUARDRAIL_TOKEN_CONTEXT, SealKey};
use flowgate_common::tasks::Tasks;
use flowgate_contracts::channels::GUARDRAILS_CHANGED;
use flowgate_contracts::{GuardrailKind, GuardrailStage};
use flowgate_db::sqlx::{self, Row};
use flowgate_db::text::{opt_text, text};
use flowgate_db::{Database, Notification, SharedState};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::GuardrailPolicy;

/// One catalog entry, as the proxy uses it.
#[derive(Debug, Clone)]
pub(crate) struct Guardrail {
    /// Unique name, e.g. `pii-redact`.
    pub(crate) name: String,
    /// What it checks.
    pub(crate) kind: GuardrailKind,
    /// Stages it supports.
    pub(crate) stages: Vec<GuardrailStage>,
    /// Configuration (catalog defaults).
    pub(crate) config: Value,
    /// Applied to every key that does not forbid it.
    pub(crate) default_on: bool,
    /// Let the request through when the guardrail cannot run.
    pub(crate) fail_open: bool,
    /// HTTP guardrails: where to POST.
    pub(crate) http_url: Option<String>,
    /// HTTP guardrails: timeout.
    pub(crate) http_timeout: Duration,
    /// HTTP guardrails: bearer token (opened from its sealed form).
    pub(crate) http_token: Option<SecretString>,
}

impl Guardrail {
    /// Whether it runs at `stage`.
    pub(crate) fn supports(&self, stage: GuardrailStage) -> bool {
        self.stages.contains(&stage)
    }
}

/// The catalog, reloaded from the database when it changes.
#[derive(Clone)]
pub(crate) struct Catalog {
    pub(super) entries: Arc<ArcSwap<HashMap<String, Arc<Guardrail>>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("entries", &self.entries.load().len()).finish()
    }
}

async fn load(database: &Database, seal: &SealKey) -> Result<HashMap<String, Arc<Guardrail>>, sqlx::Error> {
    let rows = sqlx::query(
        &database.sql("SELECT name, kind, stages, runtime_config, default_on, fail_open, http_url, http_timeout_ms, http_token_sealed FROM guardrails")
    )
    .fetch_all(database.pool())
    .await?;
    let mut entries = HashMap::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let stages = text(&row, "stages")?;
        let config = text(&row, "runtime_config")?;
        let sealed: Option<Vec<u8>> = row.try_get("http_token_sealed")?;
        let http_token = sealed.and_then(|sealed| match flowgate_common::secretbox::open(seal, &sealed) {
            Ok(token) => Some(token),
            Err(error) => {
                tracing::error!(guardrail = %name, %error, "cannot open the guardrail's bearer token");
                None
            }
        });
        let timeout_ms: Option<i64> = row.try_get("http_timeout_ms")?;
        let kind: String = row.try_get("kind")?;
        let Some(kind) = GuardrailKind::from_name(&kind) else {
            // Left out: a request that must apply it fails closed ("not in the catalog").
            tracing::error!(guardrail = %name, %kind, "unknown guardrail kind; the guardrail is not loaded");
            continue;
        };
        let stages: Vec<String> = serde_json::from_str(&stages).unwrap_or_default();
        let guardrail = Guardrail {
            kind,
            stages: stages.iter().filter_map(|stage| GuardrailStage::from_name(stage)).collect(),
            config: serde_json::from_str(&config).unwrap_or_else(|_| json!({})),
            default_on: row.try_get::<i64, _>("default_on")? != 0,
            fail_open: row.try_get::<i64, _>("fail_open")? != 0,
            http_url: opt_text(&row, "http_url")?,
            http_timeout: Duration::from_millis(u64::try_from(timeout_ms.unwrap_or(5000)).unwrap_or(5000)),
            http_token,
            name: name.clone(),
        };
        entries.insert(name, Arc::new(guardrail));
    }
    Ok(entries)
}

impl Catalog {
    /// Loads the catalog and keeps it fresh: on `guardrails:changed`, after a lost subscription,
    /// and every 30 seconds.
    pub(crate) fn start(
        database: Database,
        shared: &SharedState,
        hasher: &flowgate_common::keys::KeyHasher,
        tasks: &Tasks,
    ) -> Self {
        let entries: Arc<ArcSwap<HashMap<String, Arc<Guardrail>>>> = Arc::default();
        let seal = SealKey::from_hasher(hasher, GUARDRAIL_TOKEN_CONTEXT);
        let mut changes = shared.subscribe(GUARDRAILS_CHANGED);
        let target = entries.clone();
        tasks.spawn("guardrail-catalog", async move {
            loop {
                match load(&database, &seal).await {
                    Ok(loaded) => target.store(Arc::new(loaded)),
                    Err(error) => tracing::warn!(%error, "cannot load the guardrail catalog; keeping the previous one"),
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
        Self { entries }
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<Guardrail>> {
        self.entries.load().get(name).cloned()
    }

    /// Names a key may discover: default-on, mandatory and optional ones, minus forbidden ones.
    pub(crate) fn visible(&self, policy: &GuardrailPolicy) -> Vec<Value> {
        let entries = self.entries.load();
        let mut names: Vec<&String> = entries.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter(|name| !policy.forbidden_guardrails.contains(name))
            .filter_map(|name| {
                let g = entries.get(name)?;
                let mode = if policy.mandatory_guardrails.contains(name) {
                    "mandatory"
                } else if g.default_on {
                    "default"
                } else if policy.optional_guardrails.contains(name) {
                    "optional"
                } else {
                    return None;
                };
                Some(json!({"name": name, "kind": g.kind, "stages": g.stages, "mode": mode}))
            })
            .collect()
    }
}
