//! Virtual-key documents: the create, patch and rotate requests with their validation, the
//! stored row, the view (never the key or its hash), the key shown once with its plaintext, and
//! the budget view.

use std::fmt;

use flowgate_common::budget::BudgetPeriod;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fields::{
    Change, Timestamp, guardrail_policy_text, json_text, list_text, parse_list, parse_object, present, rfc3339, usd,
    validate_budget, validate_name, validate_patterns,
};

/// Most entries accepted in `allowed_models` or `ip_allowlist`.
const MAX_LIST_LEN: usize = 1000;
/// Longest rotation grace period: 30 days.
pub(crate) const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;

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
    mcp_servers: Option<Vec<String>>,
    mcp_tools: Option<Vec<String>>,
    mcp_denied_tools: Option<Vec<String>>,
    a2a_agents: Option<Vec<String>>,
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
    pub(crate) mcp_servers: String,
    pub(crate) mcp_tools: String,
    pub(crate) mcp_denied_tools: String,
    pub(crate) a2a_agents: String,
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
            mcp_servers: "[]".to_owned(),
            mcp_tools: "[]".to_owned(),
            mcp_denied_tools: "[]".to_owned(),
            a2a_agents: "[]".to_owned(),
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
            mcp_servers: list_text(&validate_patterns("mcp_servers", self.mcp_servers.as_deref().unwrap_or_default())?),
            mcp_tools: list_text(&validate_patterns("mcp_tools", self.mcp_tools.as_deref().unwrap_or_default())?),
            mcp_denied_tools: list_text(&validate_patterns(
                "mcp_denied_tools",
                self.mcp_denied_tools.as_deref().unwrap_or_default(),
            )?),
            a2a_agents: list_text(&validate_patterns("a2a_agents", self.a2a_agents.as_deref().unwrap_or_default())?),
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
    #[serde(default, deserialize_with = "present")]
    mcp_servers: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    mcp_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    mcp_denied_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    a2a_agents: Option<Option<Vec<String>>>,
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
        for (column, patterns) in [
            ("mcp_servers", &self.mcp_servers),
            ("mcp_tools", &self.mcp_tools),
            ("mcp_denied_tools", &self.mcp_denied_tools),
            ("a2a_agents", &self.a2a_agents),
        ] {
            if let Some(patterns) = patterns {
                let patterns = validate_patterns(column, patterns.as_deref().unwrap_or_default())?;
                changes.push(Change::Text(column, list_text(&patterns)));
            }
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
    pub(crate) mcp_servers: String,
    pub(crate) mcp_tools: String,
    pub(crate) mcp_denied_tools: String,
    pub(crate) a2a_agents: String,
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
    mcp_servers: Vec<String>,
    mcp_tools: Vec<String>,
    mcp_denied_tools: Vec<String>,
    a2a_agents: Vec<String>,
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
            mcp_servers: parse_list(&row.mcp_servers),
            mcp_tools: parse_list(&row.mcp_tools),
            mcp_denied_tools: parse_list(&row.mcp_denied_tools),
            a2a_agents: parse_list(&row.a2a_agents),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Nano-dollars per US dollar.
    const NANOS_PER_USD: i64 = 1_000_000_000;

    fn create(body: &str) -> Result<KeyFields, ApiError> {
        crate::extract::parse_json::<CreateKey>(body.as_bytes())?.validate()
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
            (r#"{"name": "a", "mcp_tools": ["github__*", " "]}"#, "`mcp_tools[1]`"),
            (r#"{"name": "a", "mcp_denied_tools": "x"}"#, "mcp_denied_tools: invalid type"),
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
            mcp_servers: "[]".into(),
            mcp_tools: "[]".into(),
            mcp_denied_tools: "[]".into(),
            a2a_agents: "[]".into(),
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
