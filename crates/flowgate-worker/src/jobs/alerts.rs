//! Budget and key-expiry alerts.
//!
//! **Raised once.** An alert is a row of `alerts`, unique per (kind, subject, period, threshold):
//! a budget crossing 80 % of its daily limit is one alert that day, however often the job runs and
//! however many workers run it. Budget alerts compare the spend of the current period (the larger
//! of the database's figure and Redis's settled counter) with each threshold of
//! `worker.alerts.budget_thresholds`; a key whose `expires_at` is within
//! `worker.alerts.key_expiry_days` raises one expiry alert.
//!
//! **Delivered with retries.** Each alert is sent to every webhook of `worker.alerts.webhooks`;
//! every attempt is logged in `alert_deliveries` (read back at `/api/alerts`). A failed attempt is
//! tried again on a later run, after a pause that doubles from [`RETRY_BASE`], until
//! `max_attempts`; an alert is `delivered` once every webhook took it, `failed` when one gave up,
//! `recorded` when there is no webhook.
//!
//! **Signed.** A `json` webhook receives the alert document with `X-Flowgate-Alert-Id`,
//! `X-Flowgate-Timestamp` (unix seconds) and, with a secret, `X-Flowgate-Signature:
//! sha256=<hex>`: HMAC-SHA256 under the secret of `"{timestamp}.{body}"`. A `slack` webhook
//! receives `{"text": ...}` as Slack's incoming webhooks expect.

use std::time::Duration;

use flowgate_common::budget::{BudgetPeriod, utc_timestamp};
use flowgate_common::settings::{AlertSettings, WebhookFormat};
use flowgate_contracts::budgets::settled_key;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, SharedState};
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};

use super::{budgets, recorded_spend};
use crate::runner::Job;
use crate::{InitError, JobError};

/// Pause before the second attempt of a delivery; doubled for each further one.
pub const RETRY_BASE: Duration = Duration::from_secs(2);
/// The longest pause between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(600);
/// Alerts delivered per run, oldest first.
const BATCH: i64 = 100;
const NANOS_PER_USD: f64 = 1e9;

/// Header with the HMAC-SHA256 signature of a `json` delivery.
pub const SIGNATURE_HEADER: &str = "x-flowgate-signature";
/// Header with the unix time (seconds) the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-flowgate-timestamp";
/// Header with the alert's id (the same on every retry: receivers may drop repeats by it).
pub const ALERT_ID_HEADER: &str = "x-flowgate-alert-id";

#[derive(Debug)]
struct Webhook {
    name: String,
    url: String,
    format: WebhookFormat,
    secret: Option<SecretString>,
}

/// The alert job.
#[derive(Debug)]
pub struct Alerts {
    database: Database,
    shared: SharedState,
    thresholds: Vec<u32>,
    expiry_days: u32,
    max_attempts: u32,
    webhooks: Vec<Webhook>,
    http: reqwest::Client,
}

/// `HMAC-SHA256(secret, "{timestamp}.{body}")` in lowercase hex, as [`SIGNATURE_HEADER`] carries it
/// after `sha256=`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn usd(nanos: i64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a report in dollars, not accounting")]
    let usd = nanos as f64 / NANOS_PER_USD;
    usd
}

impl Alerts {
    /// Alerts over `database`, sent as `settings` says.
    pub fn new(database: Database, shared: SharedState, settings: &AlertSettings) -> Result<Self, InitError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| InitError::HttpClient(error.to_string()))?;
        let mut thresholds = settings.budget_thresholds.clone();
        thresholds.sort_unstable();
        thresholds.dedup();
        Ok(Self {
            database,
            shared,
            thresholds,
            expiry_days: settings.key_expiry_days,
            max_attempts: settings.max_attempts.max(1),
            webhooks: settings
                .webhooks
                .iter()
                .map(|w| Webhook {
                    name: w.name.clone(),
                    url: w.url.clone(),
                    format: w.format,
                    secret: w.secret.clone(),
                })
                .collect(),
            http,
        })
    }

    /// Inserts the alert unless it exists; returns whether it was new.
    #[expect(clippy::too_many_arguments, reason = "one alert row, column by column")]
    async fn raise(
        &self,
        kind: &str,
        subject: &str,
        tenant_id: &str,
        period_start: i64,
        threshold: i64,
        message: &str,
        mut document: serde_json::Value,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let id = uuid::Uuid::now_v7().to_string();
        if let Some(object) = document.as_object_mut() {
            object.insert("id".to_owned(), id.clone().into());
            object.insert("kind".to_owned(), kind.into());
            object.insert("message".to_owned(), message.into());
            object.insert("created_at".to_owned(), utc_timestamp(now_ms).into());
        }
        let status = if self.webhooks.is_empty() { "recorded" } else { "pending" };
        let inserted = sqlx::query(
            "INSERT INTO alerts (id, kind, subject, tenant_id, period_start, threshold, message, document, status, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (kind, subject, period_start, threshold) DO NOTHING",
        )
        .bind(id)
        .bind(kind.to_owned())
        .bind(subject.to_owned())
        .bind(tenant_id.to_owned())
        .bind(period_start)
        .bind(threshold)
        .bind(message.to_owned())
        .bind(document.to_string())
        .bind(status)
        .bind(now_ms)
        .execute(self.database.pool())
        .await?
        .rows_affected();
        if inserted > 0 {
            tracing::info!(kind, subject, threshold, "alert raised");
        }
        Ok(inserted > 0)
    }

    async fn spent(&self, row: &str, period_start: i64) -> Result<i64, JobError> {
        let recorded = recorded_spend(&self.database, row, period_start).await?.map_or(0, |(spent, _)| spent);
        let held = if self.shared.is_shared() {
            match self.shared.get(&settled_key(row, period_start)).await {
                Ok(value) => value.and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<i64>().ok()).unwrap_or(0),
                Err(error) => {
                    tracing::debug!(%error, "cannot read the shared counter; using the database's figure");
                    0
                }
            }
        } else {
            0
        };
        Ok(recorded.max(held))
    }

    async fn raise_budget_alerts(&self, now_ms: i64) -> Result<usize, JobError> {
        let mut raised = 0;
        if self.thresholds.is_empty() {
            return Ok(raised);
        }
        for budget in budgets(&self.database).await? {
            let (start, _) = budget.period.bounds(now_ms);
            let spent = self.spent(&budget.row, start).await?;
            for &threshold in &self.thresholds {
                // spent / limit >= threshold %, in integers.
                if i128::from(spent) * 100 < i128::from(budget.limit_nanos) * i128::from(threshold) {
                    continue;
                }
                let period = if budget.period == BudgetPeriod::Total {
                    "lifetime".to_owned()
                } else {
                    format!("{} period from {}", budget.period, utc_timestamp(start))
                };
                let message = format!(
                    "{} `{}` has spent ${:.2} of its ${:.2} {} budget ({threshold} % threshold, {period})",
                    budget.whose,
                    budget.name,
                    usd(spent),
                    usd(budget.limit_nanos),
                    budget.period,
                );
                let document = serde_json::json!({
                    "subject": budget.row,
                    "whose": budget.whose,
                    "subject_id": budget.id,
                    "name": budget.name,
                    "tenant_id": budget.tenant_id,
                    "threshold_percent": threshold,
                    "period": budget.period.as_str(),
                    "period_start": utc_timestamp(start),
                    "spent_usd": usd(spent),
                    "budget_usd": usd(budget.limit_nanos),
                });
                let new = self
                    .raise(
                        "budget_threshold",
                        &budget.row,
                        &budget.tenant_id,
                        start,
                        i64::from(threshold),
                        &message,
                        document,
                        now_ms,
                    )
                    .await?;
                raised += usize::from(new);
            }
        }
        Ok(raised)
    }

    async fn raise_expiry_alerts(&self, now_ms: i64) -> Result<usize, JobError> {
        if self.expiry_days == 0 {
            return Ok(0);
        }
        let horizon = now_ms + i64::from(self.expiry_days) * 86_400_000;
        let rows = sqlx::query(
            "SELECT id, tenant_id, name, expires_at FROM virtual_keys WHERE revoked_at IS NULL \
             AND expires_at IS NOT NULL AND expires_at > $1 AND expires_at <= $2 ORDER BY expires_at",
        )
        .bind(now_ms)
        .bind(horizon)
        .fetch_all(self.database.pool())
        .await?;
        let mut raised = 0;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let tenant_id: String = row.try_get("tenant_id")?;
            let name: String = row.try_get("name")?;
            let expires_at: i64 = row.try_get("expires_at")?;
            let message = format!("key `{name}` ({id}) expires at {}", utc_timestamp(expires_at));
            let document = serde_json::json!({
                "subject": id,
                "whose": "key",
                "subject_id": id,
                "name": name,
                "tenant_id": tenant_id,
                "expires_at": utc_timestamp(expires_at),
                "days_before": self.expiry_days,
            });
            let new = self
                .raise(
                    "key_expiry",
                    &id,
                    &tenant_id,
                    expires_at,
                    i64::from(self.expiry_days),
                    &message,
                    document,
                    now_ms,
                )
                .await?;
            raised += usize::from(new);
        }
        Ok(raised)
    }

    /// Sends one alert to one webhook; `Ok(status)` on a 2xx answer.
    async fn send(
        &self,
        webhook: &Webhook,
        alert_id: &str,
        document: &str,
        message: &str,
    ) -> Result<u16, (Option<u16>, String)> {
        let now_secs = flowgate_db::now_millis() / 1000;
        let request = match webhook.format {
            WebhookFormat::Json => {
                let body = document.as_bytes().to_vec();
                let mut request = self
                    .http
                    .post(&webhook.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(ALERT_ID_HEADER, alert_id)
                    .header(TIMESTAMP_HEADER, now_secs.to_string());
                if let Some(secret) = &webhook.secret {
                    let signature = signature(secret.expose_secret(), now_secs, &body);
                    request = request.header(SIGNATURE_HEADER, format!("sha256={signature}"));
                }
                request.body(body)
            }
            WebhookFormat::Slack => self
                .http
                .post(&webhook.url)
                .header(ALERT_ID_HEADER, alert_id)
                .json(&serde_json::json!({"text": format!("Flowgate alert: {message}")})),
        };
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => Err((Some(response.status().as_u16()), format!("answered {}", response.status()))),
            // Without the URL: it may carry a token (Slack's do).
            Err(error) => Err((None, error.without_url().to_string())),
        }
    }

    /// Delivers pending alerts; returns (delivered, failed attempts).
    async fn deliver(&self, now_ms: i64) -> Result<(usize, usize), JobError> {
        let pending = sqlx::query(
            "SELECT id, document, message FROM alerts WHERE status = 'pending' ORDER BY created_at, id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(self.database.pool())
        .await?;
        let (mut delivered, mut failures) = (0, 0);
        for row in &pending {
            let id: String = row.try_get("id")?;
            let document: String = row.try_get("document")?;
            let message: String = row.try_get("message")?;
            let (mut done, mut gave_up) = (0, 0);
            for webhook in &self.webhooks {
                let log = sqlx::query(
                    "SELECT COUNT(*), CAST(COALESCE(MAX(delivered), 0) AS BIGINT), CAST(COALESCE(MAX(attempted_at), 0) AS BIGINT) \
                     FROM alert_deliveries WHERE alert_id = $1 AND webhook = $2",
                )
                .bind(id.clone())
                .bind(webhook.name.clone())
                .fetch_one(self.database.pool())
                .await?;
                let attempts: i64 = log.try_get(0)?;
                if log.try_get::<i64, _>(1)? == 1 {
                    done += 1;
                    continue;
                }
                if attempts >= i64::from(self.max_attempts) {
                    gave_up += 1;
                    continue;
                }
                let last: i64 = log.try_get(2)?;
                let pause = RETRY_BASE.saturating_mul(1 << attempts.clamp(1, 20).saturating_sub(1)).min(RETRY_MAX);
                if attempts > 0 && now_ms - last < i64::try_from(pause.as_millis()).unwrap_or(i64::MAX) {
                    continue;
                }
                let outcome = self.send(webhook, &id, &document, &message).await;
                let (status_code, error, ok) = match &outcome {
                    Ok(status) => (Some(i64::from(*status)), None, true),
                    Err((status, error)) => (status.map(i64::from), Some(error.clone()), false),
                };
                sqlx::query(
                    "INSERT INTO alert_deliveries (id, alert_id, webhook, attempt, status_code, error, delivered, attempted_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(id.clone())
                .bind(webhook.name.clone())
                .bind(attempts + 1)
                .bind(status_code)
                .bind(error.clone())
                .bind(i64::from(ok))
                .bind(flowgate_db::now_millis())
                .execute(self.database.pool())
                .await?;
                if ok {
                    done += 1;
                } else {
                    failures += 1;
                    tracing::warn!(alert = %id, webhook = %webhook.name, attempt = attempts + 1, error = error.as_deref().unwrap_or(""), "alert delivery failed");
                    if attempts + 1 >= i64::from(self.max_attempts) {
                        gave_up += 1;
                    }
                }
            }
            let status = match (done + gave_up == self.webhooks.len(), gave_up) {
                (true, 0) => Some("delivered"),
                (true, _) => Some("failed"),
                (false, _) => None,
            };
            if let Some(status) = status {
                sqlx::query("UPDATE alerts SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(status)
                    .bind(now_ms)
                    .bind(id.clone())
                    .execute(self.database.pool())
                    .await?;
                delivered += usize::from(gave_up == 0);
            }
        }
        Ok((delivered, failures))
    }
}

#[async_trait::async_trait]
impl Job for Alerts {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn run(&self, now_ms: i64) -> Result<String, JobError> {
        let budget = self.raise_budget_alerts(now_ms).await?;
        let expiry = self.raise_expiry_alerts(now_ms).await?;
        let (delivered, failures) = if self.webhooks.is_empty() { (0, 0) } else { self.deliver(now_ms).await? };
        Ok(format!(
            "{budget} budget and {expiry} expiry alert(s) raised, {delivered} delivered, {failures} failed attempt(s)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(secret, b"1700000000." + body, sha256).
        let body = br#"{"kind":"budget_threshold"}"#;
        assert_eq!(
            signature("whsec-test", 1_700_000_000, body),
            "9e1003bd4dc4b4d4c985c100f5c2aa044240de72550fe9286e15ba2486076b56"
        );
    }
}
