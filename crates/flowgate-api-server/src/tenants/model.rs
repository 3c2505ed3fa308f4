//! Tenant documents: the create and patch requests with their validation, the stored row and
//! the view.

use flowgate_common::budget::BudgetPeriod;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fields::{
    Change, guardrail_policy_text, json_text, list_text, parse_list, parse_object, present, rfc3339, usd,
    validate_budget, validate_name, validate_patterns,
};

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
    mcp_servers: Option<Vec<String>>,
    mcp_tools: Option<Vec<String>>,
    mcp_denied_tools: Option<Vec<String>>,
    a2a_agents: Option<Vec<String>>,
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
    pub(crate) mcp_servers: String,
    pub(crate) mcp_tools: String,
    pub(crate) mcp_denied_tools: String,
    pub(crate) a2a_agents: String,
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
            mcp_servers: list_text(&validate_patterns("mcp_servers", &self.mcp_servers.unwrap_or_default())?),
            mcp_tools: list_text(&validate_patterns("mcp_tools", &self.mcp_tools.unwrap_or_default())?),
            mcp_denied_tools: list_text(&validate_patterns(
                "mcp_denied_tools",
                &self.mcp_denied_tools.unwrap_or_default(),
            )?),
            a2a_agents: list_text(&validate_patterns("a2a_agents", &self.a2a_agents.unwrap_or_default())?),
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
    #[serde(default, deserialize_with = "present")]
    mcp_servers: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    mcp_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    mcp_denied_tools: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    a2a_agents: Option<Option<Vec<String>>>,
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
        for (column, patterns) in [
            ("mcp_servers", self.mcp_servers),
            ("mcp_tools", self.mcp_tools),
            ("mcp_denied_tools", self.mcp_denied_tools),
            ("a2a_agents", self.a2a_agents),
        ] {
            if let Some(patterns) = patterns {
                let patterns = validate_patterns(column, &patterns.unwrap_or_default())?;
                changes.push(Change::Text(column, list_text(&patterns)));
            }
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
    pub(crate) mcp_servers: String,
    pub(crate) mcp_tools: String,
    pub(crate) mcp_denied_tools: String,
    pub(crate) a2a_agents: String,
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
    mcp_servers: Vec<String>,
    mcp_tools: Vec<String>,
    mcp_denied_tools: Vec<String>,
    a2a_agents: Vec<String>,
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
            mcp_servers: parse_list(&row.mcp_servers),
            mcp_tools: parse_list(&row.mcp_tools),
            mcp_denied_tools: parse_list(&row.mcp_denied_tools),
            a2a_agents: parse_list(&row.a2a_agents),
            metadata: parse_object(&row.metadata),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }
}
