//! Start-up validation of what types alone cannot check: known providers, required URLs, sane
//! numbers, fallbacks that name real models. Every error names the field at fault.

use super::{ConfigError, ModelEntry, Provider, Seconds, Settings};

impl Settings {
    /// Checks what types alone cannot: known providers, required URLs, sane numbers, fallbacks that
    /// name real models. (CIDRs and lengths of time were checked while parsing; see `values.rs`.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let log_level = &self.telemetry.log_level;
        if log_level.trim().is_empty() {
            return Err(ConfigError::field("telemetry.log_level", "must not be empty"));
        }
        if self.cache.enabled && self.cache.ttl_secs == 0 {
            return Err(ConfigError::field("cache.ttl_secs", "must be at least 1 when the cache is enabled"));
        }
        let semantic = &self.cache.semantic;
        if !(0.0..=1.0).contains(&semantic.threshold) {
            return Err(ConfigError::field("cache.semantic.threshold", "must be between 0 and 1"));
        }
        if semantic.enabled && semantic.local_model_dir.is_none() {
            return Err(ConfigError::field(
                "cache.semantic.local_model_dir",
                "is required when the semantic cache is enabled (a directory with model.safetensors, tokenizer.json and config.json)",
            ));
        }
        if semantic.enabled && semantic.embed_concurrency == 0 {
            return Err(ConfigError::field("cache.semantic.embed_concurrency", "must be at least 1"));
        }
        if semantic.enabled && semantic.turns == 0 {
            return Err(ConfigError::field("cache.semantic.turns", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.telemetry.trace_sample_ratio) {
            return Err(ConfigError::field("telemetry.trace_sample_ratio", "must be between 0 and 1"));
        }
        if let Some(token) = &self.security.internal_token {
            use secrecy::ExposeSecret;
            crate::internal::check_token(token.expose_secret())
                .map_err(|error| ConfigError::field("security.internal_token", error.to_string()))?;
        }
        super::mcp::validate(&self.mcp_servers)?;
        super::a2a::validate(&self.a2a_agents)?;
        self.worker.validate()?;
        let archive = &self.audit.archive;
        if self.audit.retention_days > 0 && !archive.configured() {
            return Err(ConfigError::field(
                "audit.retention_days",
                "needs an archive to move old records to: set S3_ENDPOINT_URL and S3_BUCKET (audit.archive)",
            ));
        }
        if archive.configured() && (archive.access_key_id.is_none() || archive.secret_access_key.is_none()) {
            return Err(ConfigError::field(
                "audit.archive.access_key_id",
                "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are required with an archive",
            ));
        }
        if let Some(token) = self.proxy.edge_token() {
            use secrecy::ExposeSecret;
            crate::internal::check_token(token.expose_secret())
                .map_err(|error| ConfigError::field("proxy.edge_token", error.to_string()))?;
        }
        if self.compliance.timeout_secs == 0 {
            return Err(ConfigError::field("compliance.timeout_secs", "must be at least 1"));
        }
        if self.limits.max_n == 0 {
            return Err(ConfigError::field("limits.max_n", "must be at least 1"));
        }
        if self.api_server.session_ttl_secs < 60 {
            return Err(ConfigError::field("api_server.session_ttl_secs", "must be at least 60"));
        }
        let oidc = &self.api_server.oidc;
        if let Some(issuer) = &oidc.issuer_url {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(ConfigError::field("api_server.oidc.issuer_url", "must start with https:// or http://"));
            }
            if oidc.client_id.as_deref().is_none_or(|id| id.trim().is_empty()) {
                return Err(ConfigError::field("api_server.oidc.client_id", "is required with an issuer_url"));
            }
            if oidc.role_claim.trim().is_empty() {
                return Err(ConfigError::field("api_server.oidc.role_claim", "must not be empty"));
            }
        }
        for (value, role) in &oidc.role_mapping {
            let known = ["admin", "operator", "auditor", "viewer"].contains(&role.as_str())
                || role.strip_prefix("tenant-admin:").is_some_and(|tenant| !tenant.trim().is_empty());
            if !known {
                return Err(ConfigError::field(
                    format!("api_server.oidc.role_mapping.{value}"),
                    "must be admin, operator, auditor, viewer or tenant-admin:<tenant id>",
                ));
            }
        }
        if self.proxy.max_body_bytes < 1024 {
            return Err(ConfigError::field("proxy.max_body_bytes", "must be at least 1024"));
        }
        for (name, url) in [
            ("proxy.api_server_url", &self.proxy.api_server_url),
            ("proxy.compliance_url", &self.proxy.compliance_url),
            ("proxy.policy_url", &self.proxy.policy_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::field(name, "must start with http:// or https://"));
            }
        }
        for (index, entry) in self.model_list.iter().enumerate() {
            let at = |field: &str| format!("model_list[{index}].{field}");
            entry.validate(&at)?;
            if let Some(id) = &entry.model_info.id
                && self.model_list.iter().take(index).any(|other| other.model_info.id.as_ref() == Some(id))
            {
                return Err(ConfigError::field(
                    at("model_info.id"),
                    format!("`{id}` is the id of an earlier deployment"),
                ));
            }
        }
        if self.routing.refresh_ms < 100 {
            return Err(ConfigError::field("routing.refresh_ms", "must be at least 100"));
        }
        if self.credentials.kek_provider == super::KekProviderKind::Vault {
            if self.credentials.vault.addr.is_none() {
                return Err(ConfigError::field(
                    "credentials.vault.addr",
                    "is required with kek_provider: vault (VAULT_ADDR)",
                ));
            }
            if self.credentials.vault.token.is_none() {
                return Err(ConfigError::field(
                    "credentials.vault.token",
                    "is required with kek_provider: vault (VAULT_TOKEN)",
                ));
            }
        }
        let router = &self.router_settings;
        if router.timeout.is_zero() {
            return Err(ConfigError::field("router_settings.timeout", "must be > 0 seconds"));
        }
        for (list_name, list) in [
            ("fallbacks", &router.fallbacks),
            ("context_window_fallbacks", &router.context_window_fallbacks),
            ("content_policy_fallbacks", &router.content_policy_fallbacks),
        ] {
            for (index, map) in list.iter().enumerate() {
                for (from, targets) in map {
                    for name in std::iter::once(from).chain(targets) {
                        if !self.model_list.iter().any(|m| &m.model_name == name)
                            && !router.model_group_alias.contains_key(name)
                        {
                            return Err(ConfigError::field(
                                format!("router_settings.{list_name}[{index}]"),
                                format!("model `{name}` is not in model_list"),
                            ));
                        }
                    }
                }
            }
        }
        for (index, name) in router.default_fallbacks.iter().enumerate() {
            if !self.model_list.iter().any(|m| &m.model_name == name) && !router.model_group_alias.contains_key(name) {
                return Err(ConfigError::field(
                    format!("router_settings.default_fallbacks[{index}]"),
                    format!("model `{name}` is not in model_list"),
                ));
            }
        }
        for (alias, target) in &router.model_group_alias {
            let at = format!("router_settings.model_group_alias.{alias}");
            if !self.model_list.iter().any(|m| m.model_name == target.model()) {
                return Err(ConfigError::field(at, format!("model `{}` is not in model_list", target.model())));
            }
            if self.model_list.iter().any(|m| &m.model_name == alias) {
                return Err(ConfigError::field(at, "is already a model_name"));
            }
        }
        if router.stream_timeout.is_some_and(Seconds::is_zero) {
            return Err(ConfigError::field("router_settings.stream_timeout", "must be > 0 seconds"));
        }
        Ok(())
    }
}

impl ModelEntry {
    /// Checks one `model_list` entry: the checks start-up runs on every entry of the file, and
    /// `/api/routing` on every deployment written through it. `at` turns a field of the entry
    /// (`litellm_params.model`) into the path an error names (`model_list[2].litellm_params.model`).
    pub fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let entry = self;
        if entry.model_name.trim().is_empty() {
            return Err(ConfigError::field(at("model_name"), "must not be empty"));
        }
        let params = &entry.litellm_params;
        let (provider, upstream) = params.provider().map_err(|m| ConfigError::field(at("litellm_params.model"), m))?;
        if upstream.is_empty() {
            return Err(ConfigError::field(at("litellm_params.model"), "names no upstream model"));
        }
        match provider {
            Provider::Bedrock if params.base_url().is_none() => {
                return Err(ConfigError::field(
                    at("litellm_params.aws_region_name"),
                    "is required for bedrock (or AWS_REGION, or aws_bedrock_runtime_endpoint)",
                ));
            }
            Provider::Bedrock if params.aws_access_key_id.is_none() || params.aws_secret_access_key.is_none() => {
                return Err(ConfigError::field(
                    at("litellm_params.aws_access_key_id"),
                    "bedrock needs aws_access_key_id and aws_secret_access_key (or AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY)",
                ));
            }
            Provider::VertexAi => {
                for (field, value) in [
                    ("vertex_project", params.vertex_project.is_some()),
                    ("vertex_location", params.vertex_location.is_some()),
                    ("vertex_credentials", params.vertex_credentials.is_some()),
                ] {
                    if !value {
                        return Err(ConfigError::field(
                            at(&format!("litellm_params.{field}")),
                            "is required for vertex_ai",
                        ));
                    }
                }
            }
            Provider::Mock => {}
            _ if params.base_url().is_none() => {
                return Err(ConfigError::field(at("litellm_params.api_base"), "is required for this provider"));
            }
            _ => {}
        }
        if params.stream_timeout.is_some_and(Seconds::is_zero) {
            return Err(ConfigError::field(at("litellm_params.stream_timeout"), "must be > 0 seconds"));
        }
        if entry.model_info.id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            return Err(ConfigError::field(at("model_info.id"), "must not be empty"));
        }
        for (name, header) in &params.extra_headers {
            if http::HeaderName::try_from(name.as_str()).is_err()
                || http::HeaderValue::try_from(header.as_str()).is_err()
            {
                return Err(ConfigError::field(
                    at(&format!("litellm_params.extra_headers.{name}")),
                    "is not a valid HTTP header",
                ));
            }
        }
        if params.api_base.as_ref().is_some_and(|b| !(b.starts_with("http://") || b.starts_with("https://"))) {
            return Err(ConfigError::field(at("litellm_params.api_base"), "must start with http:// or https://"));
        }
        if params.api == Some(super::UpstreamApi::Responses) && provider == Provider::Anthropic {
            return Err(ConfigError::field(
                at("litellm_params.api"),
                "`responses` is for OpenAI, Azure and mock deployments; Anthropic speaks Messages",
            ));
        }
        if provider == Provider::Azure && params.api_version.is_none() {
            return Err(ConfigError::field(at("litellm_params.api_version"), "is required for azure"));
        }
        if params.weight.is_some_and(|w| !(w.is_finite() && w >= 0.0)) {
            return Err(ConfigError::field(at("litellm_params.weight"), "must be a number >= 0"));
        }
        if params.timeout.is_some_and(Seconds::is_zero) {
            return Err(ConfigError::field(at("litellm_params.timeout"), "must be > 0 seconds"));
        }
        for (field, cost) in [
            ("litellm_params.input_cost_per_token", params.input_cost_per_token),
            ("litellm_params.output_cost_per_token", params.output_cost_per_token),
            ("model_info.input_cost_per_token", entry.model_info.input_cost_per_token),
            ("model_info.output_cost_per_token", entry.model_info.output_cost_per_token),
        ] {
            if cost.is_some_and(|c| !(c.is_finite() && c >= 0.0)) {
                return Err(ConfigError::field(at(field), "must be a number >= 0"));
            }
        }
        Ok(())
    }
}
