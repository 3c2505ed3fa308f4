//! The settings sections every service reads: listeners and ports, peers, storage, Redis,
//! secrets, limits, cache, MCP, telemetry and audit, each with its documented defaults.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

use super::values::Cidr;

/// Listener settings shared by every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address every service binds. Default `127.0.0.1`: nothing is reachable from another
    /// machine until asked. The container image sets `0.0.0.0` (`FLOWGATE__SERVER__HOST`).
    pub host: String,
    /// Seconds in-flight requests (streams included) get to finish after SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self { host: "127.0.0.1".to_owned(), shutdown_grace_secs: 30 }
    }
}

/// The management plane's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiServerSettings {
    /// HTTP and gRPC port (one socket serves both). Default 7778.
    pub port: u16,
    /// How long a management session (the portal's sign-in) lasts, in seconds. Default 28800
    /// (8 hours); at least 60.
    pub session_ttl_secs: u64,
    /// Always mark the session cookie `Secure`. Without it the cookie is `Secure` when the
    /// request came through a TLS-terminating proxy (`X-Forwarded-Proto: https`). Default false.
    pub secure_cookies: bool,
    /// Single sign-on and bearer JWTs from an OpenID Connect provider. Off unless `issuer_url`
    /// (`OIDC_ISSUER_URL`) is set.
    pub oidc: OidcSettings,
}

impl Default for ApiServerSettings {
    fn default() -> Self {
        Self { port: 7778, session_ttl_secs: 28_800, secure_cookies: false, oidc: OidcSettings::default() }
    }
}

/// The OpenID Connect provider the management plane trusts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// The issuer (`OIDC_ISSUER_URL`); its `/.well-known/openid-configuration` is read on first
    /// use. Unset: no single sign-on and no bearer JWTs.
    pub issuer_url: Option<String>,
    /// This gateway's client id at the provider (`OIDC_CLIENT_ID`); also the audience bearer JWTs
    /// must carry (with `audiences`).
    pub client_id: Option<String>,
    /// The client secret (`OIDC_CLIENT_SECRET`), for the code exchange of the browser sign-in.
    pub client_secret: Option<secrecy::SecretString>,
    /// Where the provider sends the browser back: the public URL of
    /// `/api/admin/oidc/callback` (e.g. `https://gateway.example.com/api/admin/oidc/callback`).
    pub redirect_url: Option<String>,
    /// The claim whose values map to roles (`OIDC_ROLE_CLAIM`). Default `groups`. A string or a
    /// list of strings.
    pub role_claim: String,
    /// Claim value → role: `admin`, `operator`, `auditor`, `viewer`, or `tenant-admin:<tenant>`
    /// (the tenant by id or by name).
    /// A user whose claim matches no entry cannot sign in. The most powerful match wins.
    pub role_mapping: std::collections::BTreeMap<String, String>,
    /// Further audiences accepted on bearer JWTs, besides `client_id`.
    pub audiences: Vec<String>,
    /// Scopes asked at sign-in. Default `openid email profile`.
    pub scopes: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 30.
    pub leeway_secs: u64,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            issuer_url: None,
            client_id: None,
            client_secret: None,
            redirect_url: None,
            role_claim: "groups".to_owned(),
            role_mapping: std::collections::BTreeMap::new(),
            audiences: Vec::new(),
            scopes: "openid email profile".to_owned(),
            leeway_secs: 30,
        }
    }
}

/// The policy service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// HTTP and gRPC port (one socket serves both). Default 7782.
    pub port: u16,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self { port: 7782 }
    }
}

/// The data plane's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// HTTP port. Default 7775.
    pub port: u16,
    /// The api-server's gRPC endpoint, for key resolution. Default `http://127.0.0.1:7778`.
    pub api_server_url: String,
    /// The compliance service's gRPC endpoint. Default `http://127.0.0.1:7777`.
    pub compliance_url: String,
    /// The policy service's gRPC endpoint. Default `http://127.0.0.1:7782`.
    pub policy_url: String,
    /// Largest request body accepted, in bytes; bigger bodies get 413. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Longest a streamed response may last, in seconds (`DISPATCH_STREAM_TIMEOUT_S`). Default 600.
    pub stream_timeout_secs: u64,
    /// Peers (CIDRs) whose `X-Forwarded-For` is trusted, e.g. Caddy's address. Default none.
    pub trusted_proxies: Vec<Cidr>,
    /// The edge pre-filter's shared secret (`FLOWGATE__PROXY__EDGE_TOKEN`): a request carrying it
    /// in `X-Flowgate-Edge` has its `X-Flowgate-Client-IP` and `X-Request-Id` believed. Default
    /// none (an empty value too): those headers are ignored. Read it through
    /// [`ProxySettings::edge_token`].
    pub edge_token: Option<SecretString>,
}

impl ProxySettings {
    /// The edge secret, when one is set and not empty (Compose passes `${VAR:-}` as "").
    pub fn edge_token(&self) -> Option<&SecretString> {
        use secrecy::ExposeSecret;
        self.edge_token.as_ref().filter(|token| !token.expose_secret().is_empty())
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            port: 7775,
            api_server_url: "http://127.0.0.1:7778".to_owned(),
            compliance_url: "http://127.0.0.1:7777".to_owned(),
            policy_url: "http://127.0.0.1:7782".to_owned(),
            max_body_bytes: 10 * 1024 * 1024,
            stream_timeout_secs: 600,
            trusted_proxies: Vec::new(),
            edge_token: None,
        }
    }
}

/// The compliance service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceSettings {
    /// HTTP and gRPC port. Default 7777.
    pub port: u16,
    /// Longest a scan may take before the guardrail fails closed (`COMPLIANCE_TIMEOUT_SECS`).
    /// Default 8.
    pub timeout_secs: u64,
}

impl Default for ComplianceSettings {
    fn default() -> Self {
        Self { port: 7777, timeout_secs: 8 }
    }
}

/// Where embedded data lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Directory for the SQLite file, the generated admin key and the audit spool
    /// (`FLOWGATE_DATA_DIR`). Default `./data`.
    pub data_dir: PathBuf,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./data") }
    }
}

/// The SQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://...` or `sqlite://...` (`DATABASE_URL`). Unset: a SQLite file in the data
    /// directory.
    pub url: Option<SecretString>,
    /// Pool size. Default 10.
    pub max_connections: u32,
    /// Seconds to wait for a connection. Default 5.
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: None, max_connections: 10, connect_timeout_secs: 5 }
    }
}

/// Redis, for rate-limit windows, spend and cache shared by replicas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://...` (`KEYSTORE_REDIS_URL` or `REDIS_URL`). Unset: in-process state.
    pub url: Option<SecretString>,
    /// Prefix of every key and channel Flowgate uses, so one Redis can serve several
    /// installations. Default `flowgate:`.
    pub prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self { url: None, prefix: "flowgate:".to_owned() }
    }
}

/// Secrets that protect the management plane and the key store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Bearer token for the management API (`ADMIN_API_KEY`).
    pub admin_api_key: Option<SecretString>,
    /// Server secret for the keyed hash of virtual keys. Unset in `all` mode: generated once into
    /// the data directory.
    pub key_hash_secret: Option<SecretString>,
    /// Shared token every internal gRPC call carries (`FLOWGATE__SECURITY__INTERNAL_TOKEN`): at
    /// least 16 printable ASCII characters, the same on every service. Required by every service
    /// mode but `all`, which makes one in process when unset. See docs/security.md.
    pub internal_token: Option<SecretString>,
}

/// Defaults for virtual keys that set no limit of their own, and limits on one request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Requests per hour per key (`RATE_LIMIT_REQUESTS_PER_HOUR`). 0 = unlimited. Default 0.
    pub requests_per_hour: u32,
    /// Most answers one request may ask for (`n`, and the legacy completions' `best_of`); more is
    /// answered 400. Each answer is reserved against the budget. Default 16.
    pub max_n: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self { requests_per_hour: 0, max_n: 16 }
    }
}

/// What a request to a model without a price does for a key (or tenant) with a budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnpricedModels {
    /// Served, at $0: the budget does not see it.
    Allow,
    /// Refused with 403 `model_unpriced`, so no request escapes its budget.
    #[default]
    Deny,
}

/// Budgets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSettings {
    /// Models with no price (neither `input_cost_per_token` / `output_cost_per_token` nor the
    /// built-in table; `mock` deployments are free, not unpriced), for keys whose key or tenant has
    /// a budget: `deny` (default) or `allow`. Keys without a budget may always use them.
    pub unpriced: UnpricedModels,
}

/// Response caching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Exact-match response caching (`FLOWGATE__CACHE__ENABLED`). Default off: answers of the same
    /// request are then served from the cache instead of the model.
    pub enabled: bool,
    /// How long an answer stays cached, in seconds. Default 3600.
    pub ttl_secs: u64,
    /// Answers held in each process's memory (Redis, when configured, holds them for all
    /// replicas). Default 10,000.
    pub max_entries: u64,
    /// Largest answer stored, in bytes; larger ones pass uncached. Default 1 MiB.
    pub max_entry_bytes: usize,
    /// The semantic phases (3 and 4): paraphrases answered from the cache.
    pub semantic: SemanticCacheSettings,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl_secs: 3600,
            max_entries: 10_000,
            max_entry_bytes: 1 << 20,
            semantic: SemanticCacheSettings::default(),
        }
    }
}

/// The semantic cache (`cache.semantic`): a request whose text is close enough to a cached one's
/// (and agrees on numbers, names, negation, antonyms and direction) gets its answer. Needs
/// `cache.enabled`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticCacheSettings {
    /// Whether the semantic phases run. Default off: they cost an embedding per cache miss.
    pub enabled: bool,
    /// Cosine similarity at or above which an entry is a hit (`SEMANTIC_CACHE_THRESHOLD`).
    /// Default 0.90.
    pub threshold: f64,
    /// A directory with `model.safetensors`, `tokenizer.json` and `config.json` of a
    /// sentence-transformers BERT model (all-MiniLM-L6-v2), run in the proxy. Required when enabled.
    pub local_model_dir: Option<std::path::PathBuf>,
    /// What is embedded: `last_user` (the last user message, default) or `conversation` (the
    /// system prompt and the last `turns` messages).
    pub key_text: SemanticKeyText,
    /// Messages embedded with `key_text: conversation`. Default 4.
    pub turns: usize,
    /// Request fields that must be equal for a hit besides the built-in partition (model, tools,
    /// response format, temperature bucket), e.g. `["top_p", "seed"]`.
    pub partition_fields: Vec<String>,
    /// Memory the process's index may use, in bytes (answers included); least recently hit
    /// entries are evicted past it. Default 256 MiB.
    pub max_bytes: usize,
    /// Embeddings computed at once (threads of the blocking pool). Default 1.
    pub embed_concurrency: usize,
    /// Longest wait for an embedding, in milliseconds; past it the lookup is a miss. Default 250.
    pub embed_timeout_ms: u64,
}

impl Default for SemanticCacheSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            threshold: 0.90,
            local_model_dir: None,
            key_text: SemanticKeyText::LastUser,
            turns: 4,
            partition_fields: Vec::new(),
            max_bytes: 256 << 20,
            embed_concurrency: 1,
            embed_timeout_ms: 250,
        }
    }
}

/// What the semantic cache embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SemanticKeyText {
    /// The last user message.
    LastUser,
    /// The system prompt and the last `turns` messages.
    Conversation,
}

/// The MCP gateway.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpSettings {
    /// Whether MCP routes are served (`MCP_GATEWAY_ENABLED`). Default false.
    pub enabled: bool,
}

/// The audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Write one audit record per proxied request. Default true; turning it off is meant for
    /// benchmarks and throwaway setups, not for production.
    pub enabled: bool,
    /// Days records stay in the database; older ones are archived to object storage (`archive`)
    /// by the worker, then deleted. Default 0: kept forever.
    pub retention_days: u32,
    /// Where records past their retention go (S3-compatible object storage).
    pub archive: super::worker::ArchiveSettings,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self { enabled: true, retention_days: 0, archive: super::worker::ArchiveSettings::default() }
    }
}

/// The Responses API's conversation state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesSettings {
    /// Hours a response kept with `store` can be continued (`previous_response_id`) or read back
    /// (`GET /v1/responses/{id}`). Default 720 (30 days, as OpenAI keeps them); 0 keeps none.
    pub retention_hours: u64,
}

impl Default for ResponsesSettings {
    fn default() -> Self {
        Self { retention_hours: 720 }
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// `tracing` filter directive (`LOG_LEVEL`), e.g. `info` or `flowgate_proxy=debug`. Default `info`.
    pub log_level: String,
    /// `text` or `json` (`LOG_FORMAT`). Default `text`.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`). Unset: no trace export.
    pub otlp_endpoint: Option<String>,
    /// Fraction of traces sampled, 0.0–1.0. Default 1.0.
    pub trace_sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self { log_level: "info".to_owned(), log_format: LogFormat::Text, otlp_endpoint: None, trace_sample_ratio: 1.0 }
    }
}
