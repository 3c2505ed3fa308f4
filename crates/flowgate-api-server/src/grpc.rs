//! `flowgate.keys.v1.KeyService`: resolves a virtual key by its keyed hash.

use flowgate_contracts::guardrails::key_guardrails;
use flowgate_db::Database;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::text::{opt_text, text};
use flowgate_proto::keys::key_service_server::KeyService;
use flowgate_proto::keys::virtual_key::Guardrails;
use flowgate_proto::keys::{ResolveKeyRequest, ResolveKeyResponse, VirtualKey};

/// Looks keys up in the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyResolver {
    database: Database,
}

const NANOS_PER_USD: f64 = 1e9;

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn to_u32(value: Option<i64>) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

impl KeyResolver {
    /// A resolver over `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// The key whose current hash, or previous hash still inside its rotation grace period, is
    /// `hash`.
    pub async fn resolve(&self, hash: &[u8]) -> Result<Option<VirtualKey>, sqlx::Error> {
        let now = flowgate_db::now_millis();
        let row = sqlx::query(
            &self.database.sql("SELECT k.id, k.tenant_id, k.name, k.revoked_at, k.expires_at, k.allowed_models, k.ip_allowlist, \
             k.budget_nanos, k.budget_period, k.rpm, k.tpm, k.requests_per_hour, k.max_parallel_requests, \
             k.guardrail_policy, k.metadata, k.mcp_servers, k.mcp_tools, k.mcp_denied_tools, k.a2a_agents, t.budget_nanos AS tenant_budget_nanos, t.budget_period AS tenant_budget_period, \
             t.guardrail_defaults AS tenant_guardrail_defaults, t.store_prompts AS tenant_store_prompts, \
             t.mcp_servers AS tenant_mcp_servers, t.mcp_tools AS tenant_mcp_tools, \
             t.mcp_denied_tools AS tenant_mcp_denied_tools, t.a2a_agents AS tenant_a2a_agents \
             FROM virtual_keys k LEFT JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = $1 OR (k.previous_key_hash = $2 AND k.previous_key_expires_at > $3)")
        )
        .bind(hash.to_vec())
        .bind(hash.to_vec())
        .bind(now)
        .fetch_optional(self.database.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: Option<i64> = row.try_get("expires_at")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let budget_nanos: Option<i64> = row.try_get("budget_nanos")?;
        let tenant_budget_nanos: Option<i64> = row.try_get("tenant_budget_nanos")?;
        let key_policy = text(&row, "guardrail_policy")?;
        let tenant_defaults: String = opt_text(&row, "tenant_guardrail_defaults")?.unwrap_or_default();
        let id: String = row.try_get("id")?;
        let guardrails = key_guardrails(&key_policy, &tenant_defaults);
        if let Guardrails::GuardrailPolicyError(error) = &guardrails {
            tracing::warn!(key_id = %id, %error, "the key's stored guardrail policy cannot be read; proxies will refuse its requests");
        }
        Ok(Some(VirtualKey {
            id,
            tenant_id: row.try_get("tenant_id")?,
            name: row.try_get("name")?,
            revoked: revoked_at.is_some(),
            expires_at: expires_at.map_or(0, |ms| ms / 1000),
            allowed_models: json_list(&text(&row, "allowed_models")?),
            ip_allowlist: json_list(&text(&row, "ip_allowlist")?),
            mcp_servers: json_list(&text(&row, "mcp_servers")?),
            mcp_tools: json_list(&text(&row, "mcp_tools")?),
            mcp_denied_tools: json_list(&text(&row, "mcp_denied_tools")?),
            tenant_mcp_servers: json_list(&opt_text(&row, "tenant_mcp_servers")?.unwrap_or_default()),
            tenant_mcp_tools: json_list(&opt_text(&row, "tenant_mcp_tools")?.unwrap_or_default()),
            tenant_mcp_denied_tools: json_list(&opt_text(&row, "tenant_mcp_denied_tools")?.unwrap_or_default()),
            a2a_agents: json_list(&text(&row, "a2a_agents")?),
            tenant_a2a_agents: json_list(&opt_text(&row, "tenant_a2a_agents")?.unwrap_or_default()),
            #[expect(clippy::cast_precision_loss, reason = "budgets are far below 2^53 nano-dollars")]
            budget_usd: budget_nanos.map_or(0.0, |n| n as f64 / NANOS_PER_USD),
            budget_period: row.try_get("budget_period")?,
            rpm: to_u32(row.try_get("rpm")?),
            tpm: to_u32(row.try_get("tpm")?),
            requests_per_hour: to_u32(row.try_get("requests_per_hour")?),
            max_parallel_requests: to_u32(row.try_get("max_parallel_requests")?),
            metadata_json: text(&row, "metadata")?,
            #[expect(clippy::cast_precision_loss, reason = "budgets are far below 2^53 nano-dollars")]
            tenant_budget_usd: tenant_budget_nanos.map_or(0.0, |n| n as f64 / NANOS_PER_USD),
            tenant_budget_period: row.try_get::<Option<String>, _>("tenant_budget_period")?.unwrap_or_default(),
            tenant_store_prompts: row.try_get::<Option<i64>, _>("tenant_store_prompts")?.unwrap_or(0) != 0,
            // Typed, or marked unreadable: never an empty policy in place of one that cannot be
            // read (the proxy refuses such a key's requests).
            guardrails: Some(guardrails),
        }))
    }
}

#[tonic::async_trait]
impl KeyService for KeyResolver {
    #[tracing::instrument(name = "keys.resolve", skip_all)]
    async fn resolve_key(
        &self,
        request: tonic::Request<ResolveKeyRequest>,
    ) -> Result<tonic::Response<ResolveKeyResponse>, tonic::Status> {
        let hash = request.into_inner().key_hash;
        if hash.len() != 32 {
            return Err(tonic::Status::invalid_argument("key_hash must be 32 bytes"));
        }
        match self.resolve(&hash).await {
            Ok(key) => Ok(tonic::Response::new(ResolveKeyResponse { key })),
            Err(error) => {
                tracing::error!(%error, "key lookup failed");
                Err(tonic::Status::unavailable("key store unavailable"))
            }
        }
    }
}
