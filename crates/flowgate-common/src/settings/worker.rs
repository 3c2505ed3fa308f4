//! The worker's settings: its health port, how often its jobs run, and where alerts go.

use secrecy::SecretString;
use serde::Deserialize;

use super::ConfigError;

/// The background job runner (`worker` mode, also inside `all`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Port of the worker's `/health`, `/readyz` and `/metrics` (it serves nothing else).
    /// Default 7779.
    pub port: u16,
    /// Seconds between two passes of the job scheduler; each job runs at most this often, and
    /// leadership is checked as often. Default 30.
    pub interval_secs: u64,
    /// Budget and key-expiry alerts.
    pub alerts: AlertSettings,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { port: 7779, interval_secs: 30, alerts: AlertSettings::default() }
    }
}

/// Budget and key-expiry alerts, sent by the worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Percentages of a budget that raise an alert, once per threshold and period. Default
    /// `[50, 80, 100]`.
    pub budget_thresholds: Vec<u32>,
    /// Days before a key's `expires_at` when its expiry alert is sent. Default 7; 0 turns key-expiry
    /// alerts off.
    pub key_expiry_days: u32,
    /// Attempts per delivery before it is given up (each logged). Default 5.
    pub max_attempts: u32,
    /// Where alerts go. None: alerts are still recorded (`/api/alerts`), not sent.
    pub webhooks: Vec<WebhookSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self { budget_thresholds: vec![50, 80, 100], key_expiry_days: 7, max_attempts: 5, webhooks: Vec::new() }
    }
}

/// The body an alert webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The alert as a JSON document, signed with HMAC-SHA256 when a secret is set.
    #[default]
    Json,
    /// A Slack-compatible incoming webhook: `{"text": ...}`.
    Slack,
}

/// One alert destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// A short name, shown in the delivery log.
    pub name: String,
    /// `http://` or `https://` URL the alert is POSTed to.
    pub url: String,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Signs `json` deliveries: `X-Flowgate-Signature: sha256=<hex HMAC-SHA256 of
    /// "{timestamp}.{body}">` with `X-Flowgate-Timestamp`.
    #[serde(default)]
    pub secret: Option<SecretString>,
}

/// The audit archive: S3-compatible object storage (`S3_ENDPOINT_URL`, `S3_ACCESS_KEY_ID`,
/// `S3_SECRET_ACCESS_KEY`, `S3_BUCKET`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSettings {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://minio:9000`, ... (`S3_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// The bucket (`S3_BUCKET`).
    pub bucket: Option<String>,
    /// Region the requests are signed for. Default `us-east-1`.
    pub region: String,
    /// `S3_ACCESS_KEY_ID`.
    pub access_key_id: Option<SecretString>,
    /// `S3_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<SecretString>,
    /// Key prefix of every archived object. Default `flowgate/`.
    pub prefix: String,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            bucket: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key: None,
            prefix: "flowgate/".to_owned(),
        }
    }
}

impl ArchiveSettings {
    /// Whether an archive is configured (endpoint and bucket).
    pub fn configured(&self) -> bool {
        self.endpoint_url.is_some() && self.bucket.is_some()
    }
}

impl WorkerSettings {
    /// Start-up checks: a scheduler interval, thresholds that are percentages, webhooks with an
    /// HTTP(S) URL and a unique name.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.interval_secs == 0 {
            return Err(ConfigError::field("worker.interval_secs", "must be at least 1"));
        }
        let alerts = &self.alerts;
        if let Some(bad) = alerts.budget_thresholds.iter().find(|t| !(1..=1000).contains(*t)) {
            return Err(ConfigError::field(
                "worker.alerts.budget_thresholds",
                format!("{bad} is not a percentage between 1 and 1000"),
            ));
        }
        if alerts.max_attempts == 0 {
            return Err(ConfigError::field("worker.alerts.max_attempts", "must be at least 1"));
        }
        for (index, webhook) in alerts.webhooks.iter().enumerate() {
            let field = |name: &str| format!("worker.alerts.webhooks[{index}].{name}");
            let name = webhook.name.trim();
            if name.is_empty() || name.len() > 64 {
                return Err(ConfigError::field(field("name"), "must be 1 to 64 characters"));
            }
            if alerts.webhooks.iter().take(index).any(|other| other.name.trim() == name) {
                return Err(ConfigError::field(field("name"), format!("`{name}` names another webhook too")));
            }
            let url = webhook.url.trim();
            let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
                // The URL itself may hold a token (Slack's do): not repeated in the error.
                return Err(ConfigError::field(field("url"), "must be an http:// or https:// URL with a host"));
            }
        }
        Ok(())
    }
}
