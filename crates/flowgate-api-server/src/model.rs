//! The management API's request and response documents, and the validation that turns a request
//! into the values the store writes.
//!
//! Conventions: money is USD in the API and integer nano-dollars in the database; timestamps are
//! RFC 3339 strings in responses and unix milliseconds in the database; `expires_at` is accepted as
//! an RFC 3339 string or as unix seconds. In PATCH bodies an absent field is left alone and `null`
//! clears it (back to its default).

use std::fmt;

use flowgate_common::budget::BudgetPeriod;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;

/// Nano-dollars per US dollar.
#[cfg(test)]
const NANOS_PER_USD: i64 = 1_000_000_000;
/// Largest budget accepted, in USD (keeps nano-dollars far inside `i64`).
const MAX_BUDGET_USD: f64 = 1e9;
/// Longest accepted name (keys and tenants).
const MAX_NAME_LEN: usize = 256;
/// Most entries accepted in `allowed_models` or `ip_allowlist`.
const MAX_LIST_LEN: usize = 1000;
/// Longest rotation grace period: 30 days.
pub(crate) const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;
/// Largest unix-seconds value accepted (9999-12-31T23:59:59Z).
const MAX_UNIX_SECS: i64 = 253_402_300_799;

/// `Some(value)` for a present field, `null` included: with `#[serde(default)]`, an absent field
/// stays `None`, so PATCH bodies can tell "leave alone" (`None`) from "clear" (`Some(None)`).
pub(crate) fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A point in time given as an RFC 3339 string or as unix seconds; held as unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp(pub(crate) i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp such as \"2030-01-31T00:00:00Z\" or unix seconds")
            }

            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Timestamp, E> {
                if (0..=MAX_UNIX_SECS).contains(&secs) {
                    Ok(Timestamp(secs * 1000))
                } else {
                    Err(E::custom(format!("unix seconds {secs} are outside 1970..=9999")))
                }
            }

            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Timestamp, E> {
                let secs = i64::try_from(secs).map_err(|_| E::custom("unix seconds out of range"))?;
                self.visit_i64(secs)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                let parsed = OffsetDateTime::parse(text, &Rfc3339)
                    .map_err(|error| E::custom(format!("`{text}` is not an RFC 3339 timestamp: {error}")))?;
                let millis = parsed.unix_timestamp_nanos() / 1_000_000;
                let millis = i64::try_from(millis).map_err(|_| E::custom("timestamp out of range"))?;
                if (0..=MAX_UNIX_SECS * 1000).contains(&millis) {
                    Ok(Timestamp(millis))
                } else {
                    Err(E::custom(format!("`{text}` is outside 1970..=9999")))
                }
            }
        }

        deserializer.deserialize_any(TimestampVisitor)
    }
}

/// Unix milliseconds as RFC 3339 (UTC).
pub(crate) fn rfc3339(millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| millis.to_string())
}

/// Nano-dollars as USD.
#[expect(clippy::cast_precision_loss, reason = "budgets and spend are far below 2^53 nano-dollars")]
pub(crate) fn usd(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

fn validate_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::field(field, format!("must be at most {MAX_NAME_LEN} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::field(field, "must not contain control characters"));
    }
    Ok(name.to_owned())
}

fn validate_budget(field: &str, usd: f64) -> Result<i64, ApiError> {
    if !usd.is_finite() || usd <= 0.0 {
        return Err(ApiError::field(field, "must be a positive number of USD; send null for no budget"));
    }
    if usd > MAX_BUDGET_USD {
        return Err(ApiError::field(field, format!("must be at most {MAX_BUDGET_USD} USD")));
    }
    #[expect(clippy::cast_possible_truncation, reason = "bounded by MAX_BUDGET_USD above")]
    let nanos = (usd * 1e9).round() as i64;
    Ok(nanos.max(1))
}

fn validate_limit(field: &str, value: u64) -> Result<i64, ApiError> {
    if value == 0 || value > u64::from(u32::MAX) {
        return Err(ApiError::field(field, format!("must be between 1 and {}; send null for no limit", u32::MAX)));
    }
    i64::try_from(value).map_err(|_| ApiError::field(field, "is too large"))
}

fn validate_models(models: &[String]) -> Result<Vec<String>, ApiError> {
    if models.len() > MAX_LIST_LEN {
        return Err(ApiError::field("allowed_models", format!("must list at most {MAX_LIST_LEN} models")));
    }
    let mut out: Vec<String> = Vec::with_capacity(models.len());
    for (index, model) in models.iter().enumerate() {
        let model = model.trim();
        if model.is_empty() {
            return Err(ApiError::field(format!("allowed_models[{index}]"), "must not be empty"));
        }
        if !out.iter().any(|m| m == model) {
            out.push(model.to_owned());
        }
    }
    Ok(out)
}

fn validate_cidrs(cidrs: &[String]) -> Result<Vec<String>, ApiError> {
    if cidrs.len() > MAX_LIST_LEN {
        return Err(ApiError::field("ip_allowlist", format!("must list at most {MAX_LIST_LEN} entries")));
    }
    let mut out: Vec<String> = Vec::with_capacity(cidrs.len());
    for (index, cidr) in cidrs.iter().enumerate() {
        let (addr, prefix) = flowgate_common::settings::parse_cidr(cidr)
            .map_err(|message| ApiError::field(format!("ip_allowlist[{index}]"), message))?;
        let canonical = format!("{addr}/{prefix}");
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

/// A key's `guardrail_policy` or a tenant's `guardrail_defaults`: it must read as a guardrail
/// policy (`flowgate_contracts::GuardrailPolicy`; fields it does not know are kept and ignored),
/// so that no stored policy is one the proxies cannot apply. Returns the text to store.
pub(crate) fn guardrail_policy_text(field: &str, policy: &Map<String, Value>) -> Result<String, ApiError> {
    flowgate_contracts::GuardrailPolicy::from_object(policy).map_err(|error| {
        let at = if error.field.is_empty() { field.to_owned() } else { format!("{field}.{}", error.field) };
        ApiError::field(at, error.message)
    })?;
    Ok(json_text(policy))
}

pub(crate) fn json_text(value: &Map<String, Value>) -> String {
    Value::Object(value.clone()).to_string()
}

/// A stored JSON document back to a value (an empty object when the column is not JSON).
pub(crate) fn parse_object(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::Object(Map::new()))
}

/// A stored JSON list of strings back to a list.
pub(crate) fn parse_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn list_text(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

// ---------------------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------------------

/// `POST /api/enterprise/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTenant {
    name: String,
    budget_usd: Option<f64>,
    budget_period: Option<BudgetPeriod>,
    metadata: Option<Map<String, Value>>,
    guardrail_defaults: Option<Map<String, Value>>,
    store_prompts: Option<bool>,
}

/// A tenant's writable columns, validated.
#[derive(Debug, Clone)]
pub(crate) struct TenantFields {
    pub(crate) name: String,
    pub(crate) budget_nanos: Option<i64>,
    pub(crate) budget_period: BudgetPeriod,
    pub(crate) metadata: String,
    pub(crate) guardrail_defaults: String,
    pub(crate) store_prompts: bool,
}

impl CreateTenant {
    pub(crate) fn validate(self) -> Result<TenantFields, ApiError> {
        Ok(TenantFields {
            name: validate_name("name", &self.name)?,
            budget_nanos: self.budget_usd.map(|usd| validate_budget("budget_usd", usd)).transpose()?,
            budget_period: self.budget_period.unwrap_or_default(),
            metadata: json_text(&self.metadata.unwrap_or_default()),
            guardrail_defaults: guardrail_policy_text(
                "guardrail_defaults",
                &self.guardrail_defaults.unwrap_or_default(),
            )?,
            store_prompts: self.store_prompts.unwrap_or(false),
        })
    }
}

/// `PATCH /api/enterprise/tenants/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchTenant {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    budget_period: Option<Option<BudgetPeriod>>,
    #[serde(default, deserialize_with = "present")]
    metadata: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    guardrail_defaults: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    store_prompts: Option<Option<bool>>,
}

/// One column to set, with its new value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// A TEXT column.
    Text(&'static str, String),
    /// A nullable BIGINT column.
    Int(&'static str, Option<i64>),
    /// A nullable BYTEA/BLOB column.
    Bytes(&'static str, Option<Vec<u8>>),
}

impl PatchTenant {
    /// The columns to change.
    pub(crate) fn changes(self) -> Result<Vec<Change>, ApiError> {
        let mut changes = Vec::new();
        if let Some(name) = self.name {
            let name = name.ok_or_else(|| ApiError::field("name", "cannot be null"))?;
            changes.push(Change::Text("name", validate_name("name", &name)?));
        }
        if let Some(budget) = self.budget_usd {
            let nanos = budget.map(|usd| validate_budget("budget_usd", usd)).transpose()?;
            changes.push(Change::Int("budget_nanos", nanos));
        }
        if let Some(period) = self.budget_period {
            changes.push(Change::Text("budget_period", period.unwrap_or_default().as_str().to_owned()));
        }
        if let Some(metadata) = self.metadata {
            changes.push(Change::Text("metadata", json_text(&metadata.unwrap_or_default())));
        }
        if let Some(defaults) = self.guardrail_defaults {
            let text = guardrail_policy_text("guardrail_defaults", &defaults.unwrap_or_default())?;
            changes.push(Change::Text("guardrail_defaults", text));
        }
        if let Some(store) = self.store_prompts {
            changes.push(Change::Int("store_prompts", Some(i64::from(store.unwrap_or(false)))));
        }
        Ok(changes)
    }
}

/// A tenant row.
#[derive(Debug, Clone)]
pub(crate) struct TenantRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) budget_nanos: Option<i64>,
    pub(crate) budget_period: String,
    pub(crate) guardrail_defaults: String,
    pub(crate) store_prompts: bool,
    pub(crate) metadata: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A tenant as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct TenantView {
    id: String,
    name: String,
    budget_usd: Option<f64>,
    budget_period: String,
    guardrail_defaults: Value,
    store_prompts: bool,
    metadata: Value,
    created_at: String,
    updated_at: String,
}

impl From<TenantRow> for TenantView {
    fn from(row: TenantRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            budget_usd: row.budget_nanos.map(usd),
            budget_period: row.budget_period,
            guardrail_defaults: parse_object(&row.guardrail_defaults),
            store_prompts: row.store_prompts,
            metadata: parse_object(&row.metadata),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Virtual keys
// ---------------------------------------------------------------------------------------------

/// `POST /api/enterprise/vkeys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    name: String,
    pub(crate) tenant_id: Option<String>,
    budget_usd: Option<f64>,
    budget_period: Option<BudgetPeriod>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    requests_per_hour: Option<u64>,
    max_parallel_requests: Option<u64>,
    allowed_models: Option<Vec<String>>,
    ip_allowlist: Option<Vec<String>>,
    expires_at: Option<Timestamp>,
    metadata: Option<Map<String, Value>>,
    guardrail_policy: Option<Map<String, Value>>,
}

/// A key's writable columns, validated.
#[derive(Debug, Clone)]
pub(crate) struct KeyFields {
    pub(crate) name: String,
    pub(crate) budget_nanos: Option<i64>,
    pub(crate) budget_period: BudgetPeriod,
    pub(crate) rpm: Option<i64>,
    pub(crate) tpm: Option<i64>,
    pub(crate) requests_per_hour: Option<i64>,
    pub(crate) max_parallel_requests: Option<i64>,
    pub(crate) allowed_models: String,
    pub(crate) ip_allowlist: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) metadata: String,
    pub(crate) guardrail_policy: String,
}

impl KeyFields {
    /// The fields of a key with only a name (what `flowgate init` creates).
    pub(crate) fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            budget_nanos: None,
            budget_period: BudgetPeriod::Total,
            rpm: None,
            tpm: None,
            requests_per_hour: None,
            max_parallel_requests: None,
            allowed_models: "[]".to_owned(),
            ip_allowlist: "[]".to_owned(),
            expires_at: None,
            metadata: "{}".to_owned(),
            guardrail_policy: "{}".to_owned(),
        }
    }
}

impl CreateKey {
    pub(crate) fn validate(&self) -> Result<KeyFields, ApiError> {
        let limit = |field: &str, value: Option<u64>| value.map(|v| validate_limit(field, v)).transpose();
        if let Some(tenant) = &self.tenant_id
            && tenant.trim().is_empty()
        {
            return Err(ApiError::field("tenant_id", "must not be empty; omit it for the default tenant"));
        }
        Ok(KeyFields {
            name: validate_name("name", &self.name)?,
            budget_nanos: self.budget_usd.map(|usd| validate_budget("budget_usd", usd)).transpose()?,
            budget_period: self.budget_period.unwrap_or_default(),
            rpm: limit("rpm", self.rpm)?,
            tpm: limit("tpm", self.tpm)?,
            requests_per_hour: limit("requests_per_hour", self.requests_per_hour)?,
            max_parallel_requests: limit("max_parallel_requests", self.max_parallel_requests)?,
            allowed_models: list_text(&validate_models(self.allowed_models.as_deref().unwrap_or_default())?),
            ip_allowlist: list_text(&validate_cidrs(self.ip_allowlist.as_deref().unwrap_or_default())?),
            expires_at: self.expires_at.map(|t| t.0),
            metadata: json_text(&self.metadata.clone().unwrap_or_default()),
            guardrail_policy: guardrail_policy_text(
                "guardrail_policy",
                &self.guardrail_policy.clone().unwrap_or_default(),
            )?,
        })
    }
}

/// `PATCH /api/enterprise/vkeys/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchKey {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    tenant_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    budget_period: Option<Option<BudgetPeriod>>,
    #[serde(default, deserialize_with = "present")]
    rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    requests_per_hour: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    max_parallel_requests: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    ip_allowlist: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<Timestamp>>,
    #[serde(default, deserialize_with = "present")]
    metadata: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    guardrail_policy: Option<Option<Map<String, Value>>>,
}

impl PatchKey {
    /// The tenant the key moves to, when the patch moves it.
    pub(crate) fn new_tenant(&self) -> Result<Option<String>, ApiError> {
        match &self.tenant_id {
            None => Ok(None),
            Some(None) => Err(ApiError::field("tenant_id", "cannot be null; every key belongs to a tenant")),
            Some(Some(tenant)) if tenant.trim().is_empty() => Err(ApiError::field("tenant_id", "must not be empty")),
            Some(Some(tenant)) => Ok(Some(tenant.trim().to_owned())),
        }
    }

    /// The columns to change (the tenant excluded: see [`PatchKey::new_tenant`]).
    pub(crate) fn changes(&self) -> Result<Vec<Change>, ApiError> {
        let mut changes = Vec::new();
        if let Some(name) = &self.name {
            let name = name.as_deref().ok_or_else(|| ApiError::field("name", "cannot be null"))?;
            changes.push(Change::Text("name", validate_name("name", name)?));
        }
        if let Some(budget) = self.budget_usd {
            let nanos = budget.map(|usd| validate_budget("budget_usd", usd)).transpose()?;
            changes.push(Change::Int("budget_nanos", nanos));
        }
        if let Some(period) = self.budget_period {
            changes.push(Change::Text("budget_period", period.unwrap_or_default().as_str().to_owned()));
        }
        for (column, value) in [
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("requests_per_hour", self.requests_per_hour),
            ("max_parallel_requests", self.max_parallel_requests),
        ] {
            if let Some(value) = value {
                changes.push(Change::Int(column, value.map(|v| validate_limit(column, v)).transpose()?));
            }
        }
        if let Some(models) = &self.allowed_models {
            let models = validate_models(models.as_deref().unwrap_or_default())?;
            changes.push(Change::Text("allowed_models", list_text(&models)));
        }
        if let Some(cidrs) = &self.ip_allowlist {
            let cidrs = validate_cidrs(cidrs.as_deref().unwrap_or_default())?;
            changes.push(Change::Text("ip_allowlist", list_text(&cidrs)));
        }
        if let Some(expires) = self.expires_at {
            changes.push(Change::Int("expires_at", expires.map(|t| t.0)));
        }
        if let Some(metadata) = &self.metadata {
            changes.push(Change::Text("metadata", json_text(&metadata.clone().unwrap_or_default())));
        }
        if let Some(policy) = &self.guardrail_policy {
            let text = guardrail_policy_text("guardrail_policy", &policy.clone().unwrap_or_default())?;
            changes.push(Change::Text("guardrail_policy", text));
        }
        Ok(changes)
    }
}

/// `POST /api/enterprise/vkeys/{id}/rotate` (the body is optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateKey {
    /// How long the old key keeps working, in seconds (0 or absent: it stops at once).
    pub(crate) grace_period_secs: Option<u64>,
}

/// A key row (never its hashes).
#[derive(Debug, Clone)]
pub(crate) struct KeyRow {
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) name: String,
    pub(crate) budget_nanos: Option<i64>,
    pub(crate) budget_period: String,
    pub(crate) rpm: Option<i64>,
    pub(crate) tpm: Option<i64>,
    pub(crate) requests_per_hour: Option<i64>,
    pub(crate) max_parallel_requests: Option<i64>,
    pub(crate) allowed_models: String,
    pub(crate) ip_allowlist: String,
    pub(crate) expires_at: Option<i64>,
    pub(crate) metadata: String,
    pub(crate) guardrail_policy: String,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) previous_key_expires_at: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl KeyRow {
    /// The key's budget period (`total` for an unrecognised stored value).
    pub(crate) fn period(&self) -> BudgetPeriod {
        self.budget_period.parse().unwrap_or_default()
    }
}

/// A key as the API shows it: every field but the key and its hash.
#[derive(Debug, Serialize)]
pub(crate) struct KeyView {
    id: String,
    name: String,
    tenant_id: String,
    /// `active`, `revoked` or `expired`.
    status: &'static str,
    budget_usd: Option<f64>,
    budget_period: String,
    rpm: Option<i64>,
    tpm: Option<i64>,
    requests_per_hour: Option<i64>,
    max_parallel_requests: Option<i64>,
    allowed_models: Vec<String>,
    ip_allowlist: Vec<String>,
    expires_at: Option<String>,
    metadata: Value,
    guardrail_policy: Value,
    revoked_at: Option<String>,
    /// While a rotation's grace period runs: when the previous key stops working.
    previous_key_expires_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl KeyView {
    pub(crate) fn new(row: KeyRow, now: i64) -> Self {
        let status = if row.revoked_at.is_some() {
            "revoked"
        } else if row.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        Self {
            status,
            budget_usd: row.budget_nanos.map(usd),
            allowed_models: parse_list(&row.allowed_models),
            ip_allowlist: parse_list(&row.ip_allowlist),
            expires_at: row.expires_at.map(rfc3339),
            metadata: parse_object(&row.metadata),
            guardrail_policy: parse_object(&row.guardrail_policy),
            revoked_at: row.revoked_at.map(rfc3339),
            previous_key_expires_at: row.previous_key_expires_at.filter(|at| *at > now).map(rfc3339),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            id: row.id,
            name: row.name,
            tenant_id: row.tenant_id,
            budget_period: row.budget_period,
            rpm: row.rpm,
            tpm: row.tpm,
            requests_per_hour: row.requests_per_hour,
            max_parallel_requests: row.max_parallel_requests,
        }
    }
}

/// A key with its plaintext: only in the responses to create and rotate.
#[derive(Serialize)]
pub struct KeyWithSecret {
    key: String,
    #[serde(flatten)]
    view: KeyView,
}

impl fmt::Debug for KeyWithSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyWithSecret").field("id", &self.view.id).finish_non_exhaustive()
    }
}

impl KeyWithSecret {
    pub(crate) fn new(key: &secrecy::SecretString, view: KeyView) -> Self {
        use secrecy::ExposeSecret;
        Self { key: key.expose_secret().to_owned(), view }
    }

    /// The key's public id.
    pub fn id(&self) -> &str {
        &self.view.id
    }

    /// The plaintext key (shown once; never log it).
    pub fn plaintext(&self) -> &str {
        &self.key
    }
}

/// The settled spend of one key and period.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpendRow {
    pub(crate) spent_nanos: i64,
    pub(crate) requests: i64,
    pub(crate) prompt_tokens: i64,
    pub(crate) completion_tokens: i64,
}

/// `GET /api/enterprise/vkeys/{id}/budget`.
#[derive(Debug, Serialize)]
pub(crate) struct BudgetView {
    key_id: String,
    budget_usd: Option<f64>,
    budget_period: BudgetPeriod,
    spent_usd: f64,
    /// `null` when the key has no budget; never negative.
    remaining_usd: Option<f64>,
    period_start: String,
    period_end: Option<String>,
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
}

impl BudgetView {
    pub(crate) fn new(key: &KeyRow, spend: SpendRow, bounds: (i64, Option<i64>)) -> Self {
        Self {
            key_id: key.id.clone(),
            budget_usd: key.budget_nanos.map(usd),
            budget_period: key.period(),
            spent_usd: usd(spend.spent_nanos),
            remaining_usd: key.budget_nanos.map(|budget| usd(budget.saturating_sub(spend.spent_nanos).max(0))),
            period_start: rfc3339(bounds.0),
            period_end: bounds.1.map(rfc3339),
            requests: spend.requests,
            prompt_tokens: spend.prompt_tokens,
            completion_tokens: spend.completion_tokens,
        }
    }
}

/// `limit` and `cursor` of a list request, plus the key list's tenant filter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub(crate) limit: Option<u32>,
    pub(crate) cursor: Option<String>,
    pub(crate) tenant_id: Option<String>,
}

/// `limit` and `cursor` of the tenant list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    pub(crate) limit: Option<u32>,
    pub(crate) cursor: Option<String>,
}

/// Default and largest page sizes.
pub(crate) const DEFAULT_PAGE: u32 = 50;
pub(crate) const MAX_PAGE: u32 = 500;

/// Where a page starts: after the row with this creation time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) created_at: i64,
    pub(crate) id: String,
}

impl Cursor {
    /// The opaque text handed to clients: `{created_at}.{id}`.
    pub(crate) fn encode(&self) -> String {
        format!("{}.{}", self.created_at, self.id)
    }

    pub(crate) fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::field("cursor", "is not a cursor returned by this API");
        let (created_at, id) = text.split_once('.').ok_or_else(invalid)?;
        let created_at = created_at.parse().map_err(|_| invalid())?;
        if id.is_empty() || id.len() > 128 {
            return Err(invalid());
        }
        Ok(Self { created_at, id: id.to_owned() })
    }
}

/// The page size asked, validated.
pub(crate) fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        0 => Err(ApiError::field("limit", "must be at least 1")),
        n if n > MAX_PAGE => Err(ApiError::field("limit", format!("must be at most {MAX_PAGE}"))),
        n => Ok(n),
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    pub(crate) data: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub(crate) next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(body: &str) -> Result<KeyFields, ApiError> {
        crate::extract::parse_json::<CreateKey>(body.as_bytes())?.validate()
    }

    #[test]
    fn expires_at_takes_rfc3339_or_unix_seconds() {
        let a: Timestamp = serde_json::from_str("\"2030-01-01T00:00:00Z\"").unwrap();
        let b: Timestamp = serde_json::from_str("1893456000").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0, 1_893_456_000_000);
        let c: Timestamp = serde_json::from_str("\"2030-01-01T01:00:00+01:00\"").unwrap();
        assert_eq!(c, a);
        for bad in ["\"tomorrow\"", "-5", "1.5", "true", "99999999999999"] {
            assert!(serde_json::from_str::<Timestamp>(bad).is_err(), "{bad}");
        }
        assert_eq!(rfc3339(1_893_456_000_000), "2030-01-01T00:00:00Z");
    }

    #[test]
    fn create_validates_every_field() {
        let fields = create(
            r#"{"name": " app ", "budget_usd": 12.5, "budget_period": "monthly", "rpm": 60,
                "allowed_models": ["a", "b", "a"], "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"],
                "expires_at": 1893456000, "metadata": {"team": "x"}, "guardrail_policy": {"pii": "redact"}}"#,
        )
        .unwrap();
        assert_eq!(fields.name, "app");
        assert_eq!(fields.budget_nanos, Some(12_500_000_000));
        assert_eq!(fields.budget_period, BudgetPeriod::Monthly);
        assert_eq!(fields.rpm, Some(60));
        assert_eq!(fields.allowed_models, r#"["a","b"]"#);
        assert_eq!(fields.ip_allowlist, r#"["10.0.0.0/8","2001:db8::/32","192.168.1.7/32"]"#);
        assert_eq!(fields.metadata, r#"{"team":"x"}"#);

        for (body, needle) in [
            (r#"{"name": ""}"#, "`name` must not be empty"),
            (r#"{"name": "a", "ip_allowlist": ["10.0.0.0/33"]}"#, "`ip_allowlist[0]`"),
            (r#"{"name": "a", "ip_allowlist": ["nope"]}"#, "not an IP address"),
            (r#"{"name": "a", "budget_usd": -1}"#, "`budget_usd` must be a positive"),
            (r#"{"name": "a", "budget_period": "hourly"}"#, "unknown variant `hourly`"),
            (r#"{"name": "a", "rpm": 0}"#, "`rpm` must be between"),
            (r#"{"name": "a", "rpm": -3}"#, "rpm: invalid value"),
            (r#"{"name": "a", "metadata": [1]}"#, "metadata: invalid type"),
            (r#"{"name": "a", "key": "sk-fg-x"}"#, "unknown field `key`"),
            (r#"{"name": "a", "allowed_models": [""]}"#, "`allowed_models[0]`"),
            (r#"{"name": "a", "expires_at": "soon"}"#, "expires_at: "),
            (
                r#"{"name": "a", "guardrail_policy": {"mandatory_guardrails": "pii-redact"}}"#,
                "`guardrail_policy.mandatory_guardrails` invalid type",
            ),
            (
                r#"{"name": "a", "guardrail_policy": {"guardrail_config_overrides": {"pii-redact": true}}}"#,
                "`guardrail_policy.guardrail_config_overrides.pii-redact` must be an object",
            ),
        ] {
            let error = create(body).unwrap_err().to_string();
            assert!(error.contains(needle), "{body}: {error}");
        }
    }

    #[test]
    fn patch_tells_absent_from_null() {
        let patch: PatchKey = serde_json::from_str(r#"{"rpm": null, "budget_usd": 5}"#).unwrap();
        assert_eq!(
            patch.changes().unwrap(),
            vec![Change::Int("budget_nanos", Some(5_000_000_000)), Change::Int("rpm", None)]
        );
        let patch: PatchKey = serde_json::from_str(r#"{"allowed_models": null, "metadata": null}"#).unwrap();
        assert_eq!(
            patch.changes().unwrap(),
            vec![Change::Text("allowed_models", "[]".into()), Change::Text("metadata", "{}".into())]
        );
        let patch: PatchKey = serde_json::from_str(r#"{"name": null}"#).unwrap();
        assert!(patch.changes().is_err());
        let patch: PatchKey = serde_json::from_str(r#"{"tenant_id": null}"#).unwrap();
        assert!(patch.new_tenant().is_err());
        let patch: PatchKey = serde_json::from_str("{}").unwrap();
        assert!(patch.changes().unwrap().is_empty());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor { created_at: 1_700_000_000_000, id: "abc123".into() };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "x", "abc.def", "12."] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(MAX_PAGE + 1)).is_err());
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
    }

    #[test]
    fn budget_view_never_goes_negative() {
        let mut row = KeyRow {
            id: "k".into(),
            tenant_id: "t".into(),
            name: "n".into(),
            budget_nanos: Some(NANOS_PER_USD),
            budget_period: "daily".into(),
            rpm: None,
            tpm: None,
            requests_per_hour: None,
            max_parallel_requests: None,
            allowed_models: "[]".into(),
            ip_allowlist: "[]".into(),
            expires_at: None,
            metadata: "{}".into(),
            guardrail_policy: "{}".into(),
            revoked_at: None,
            previous_key_expires_at: None,
            created_at: 0,
            updated_at: 0,
        };
        let spend = SpendRow { spent_nanos: 3 * NANOS_PER_USD, ..SpendRow::default() };
        let view = serde_json::to_value(BudgetView::new(&row, spend, (0, Some(86_400_000)))).unwrap();
        assert_eq!(view["remaining_usd"], 0.0);
        assert_eq!(view["spent_usd"], 3.0);
        assert_eq!(view["period_end"], "1970-01-02T00:00:00Z");
        row.budget_nanos = None;
        let view = serde_json::to_value(BudgetView::new(&row, spend, (0, None))).unwrap();
        assert!(view["remaining_usd"].is_null() && view["period_end"].is_null());
    }
}
