//! The guardrail catalog's documents: the create, patch and list requests with their validation,
//! the stored row (its kind typed, or kept by name when this build does not know it) and the view
//! (which has no field that could carry the bearer token).

use std::fmt;

use flowgate_contracts::{GuardrailKind as Kind, GuardrailStage as Stage};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::schema::{check_schema, is_builtin, kind_schema};
use crate::error::ApiError;
use crate::fields::{Change, json_text, parse_object, present, rfc3339, validate_kebab};

const MAX_DESCRIPTION_LEN: usize = 2048;
const MAX_URL_LEN: usize = 2048;
const MAX_TOKEN_LEN: usize = 4096;
/// Default and largest timeout of an HTTP guardrail call, in milliseconds.
pub(crate) const DEFAULT_HTTP_TIMEOUT_MS: i64 = 5000;
const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;

/// A guardrail's kind as stored: one this build knows, or the name of one it does not (written
/// by a newer build; such a guardrail can be read and deleted, not changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredKind {
    /// A kind of this build.
    Known(Kind),
    /// A kind this build does not know, by its stored name.
    Unknown(String),
}

impl StoredKind {
    /// The kind stored as `name`.
    pub(crate) fn from_name(name: String) -> Self {
        Kind::from_name(&name).map_or(Self::Unknown(name), Self::Known)
    }

    /// The kind, if this build knows it.
    pub(crate) fn known(&self) -> Option<Kind> {
        match self {
            Self::Known(kind) => Some(*kind),
            Self::Unknown(_) => None,
        }
    }

    /// The name stored and shown.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Known(kind) => kind.as_str(),
            Self::Unknown(name) => name,
        }
    }
}

impl fmt::Display for StoredKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StoredKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Stages as stored: a JSON array of stage names.
pub(crate) fn stages_text(stages: &[Stage]) -> String {
    Value::Array(stages.iter().map(|s| Value::String(s.as_str().to_owned())).collect()).to_string()
}

fn validate_description(text: &str) -> Result<String, ApiError> {
    if text.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::field("description", format!("must be at most {MAX_DESCRIPTION_LEN} characters")));
    }
    Ok(text.trim().to_owned())
}

/// The stages of a guardrail of `kind`: at least one, none twice, each one the kind supports.
pub(super) fn validate_stages(kind: Kind, stages: &[Stage]) -> Result<Vec<Stage>, ApiError> {
    if stages.is_empty() {
        return Err(ApiError::field("stages", "must name at least one of pre_call, post_call, during_call"));
    }
    for (index, stage) in stages.iter().enumerate() {
        if stages.iter().take(index).any(|earlier| earlier == stage) {
            return Err(ApiError::field(format!("stages[{index}]"), "repeats an earlier stage"));
        }
        if !kind.supported_stages().contains(stage) {
            return Err(ApiError::field(
                format!("stages[{index}]"),
                format!("`{}` is not supported by {} guardrails", stage.as_str(), kind.as_str()),
            ));
        }
    }
    Ok(stages.to_vec())
}

fn validate_config(kind: Kind, config: Map<String, Value>) -> Result<String, ApiError> {
    let config = Value::Object(config);
    if let Some(schema) = kind_schema(kind) {
        check_schema(&schema, &config, "runtime_config")?;
    }
    Ok(config.to_string())
}

fn validate_url(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    let invalid = |message: &str| ApiError::field("http_url", message);
    if text.len() > MAX_URL_LEN {
        return Err(invalid("must be at most 2048 characters"));
    }
    let uri: axum::http::Uri = text.parse().map_err(|_| invalid("is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("must be an http:// or https:// URL"));
    }
    let Some(authority) = uri.authority() else { return Err(invalid("must name a host")) };
    if authority.as_str().contains('@') {
        return Err(invalid("must not contain credentials; send the token as `bearer_token`, which is stored sealed"));
    }
    if authority.host().is_empty() {
        return Err(invalid("must name a host"));
    }
    Ok(text.to_owned())
}

fn validate_timeout(ms: u64) -> Result<i64, ApiError> {
    if ms == 0 || ms > MAX_HTTP_TIMEOUT_MS {
        return Err(ApiError::field("http_timeout_ms", format!("must be between 1 and {MAX_HTTP_TIMEOUT_MS}")));
    }
    i64::try_from(ms).map_err(|_| ApiError::field("http_timeout_ms", "is too large"))
}

/// A bearer token must fit an `Authorization` header: visible ASCII, no spaces. The error never
/// repeats it.
fn validate_token(token: &SecretString) -> Result<(), ApiError> {
    let text = token.expose_secret();
    if text.is_empty() || text.len() > MAX_TOKEN_LEN {
        return Err(ApiError::field("bearer_token", format!("must be 1 to {MAX_TOKEN_LEN} characters")));
    }
    if !text.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::field("bearer_token", "must be visible ASCII without spaces"));
    }
    Ok(())
}

fn http_only(kind: Kind, field: &str) -> Result<(), ApiError> {
    if kind == Kind::Http {
        Ok(())
    } else {
        Err(ApiError::field(field, format!("applies only to http guardrails, not {}", kind.as_str())))
    }
}

fn schema_for(kind: Kind, given: Option<Map<String, Value>>) -> Result<String, ApiError> {
    match (kind_schema(kind), given) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "config_schema",
            format!("is defined by Flowgate for {} guardrails and cannot be set", kind.as_str()),
        )),
        (Some(schema), None) => Ok(schema.to_string()),
        (None, given) => Ok(json_text(&given.unwrap_or_default())),
    }
}

/// `POST /api/guardrails`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGuardrail {
    name: String,
    kind: Kind,
    description: Option<String>,
    stages: Option<Vec<Stage>>,
    runtime_config: Option<Map<String, Value>>,
    config_schema: Option<Map<String, Value>>,
    default_on: Option<bool>,
    fail_open: Option<bool>,
    http_url: Option<String>,
    http_timeout_ms: Option<u64>,
    bearer_token: Option<SecretString>,
}

impl fmt::Debug for CreateGuardrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateGuardrail").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// A new guardrail's columns, validated; the token is sealed by the caller.
pub(crate) struct GuardrailFields {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) description: String,
    pub(crate) stages: Vec<Stage>,
    pub(crate) runtime_config: String,
    pub(crate) config_schema: String,
    pub(crate) default_on: bool,
    pub(crate) fail_open: bool,
    pub(crate) http_url: Option<String>,
    pub(crate) http_timeout_ms: Option<i64>,
    pub(crate) bearer_token: Option<SecretString>,
}

impl fmt::Debug for GuardrailFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardrailFields").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl CreateGuardrail {
    pub(crate) fn validate(self) -> Result<GuardrailFields, ApiError> {
        let kind = self.kind;
        let name = validate_kebab("name", &self.name)?;
        let (http_url, http_timeout_ms) = if kind == Kind::Http {
            let url = self
                .http_url
                .as_deref()
                .ok_or_else(|| ApiError::field("http_url", "is required for http guardrails"))?;
            let timeout = self.http_timeout_ms.map(validate_timeout).transpose()?.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS);
            (Some(validate_url(url)?), Some(timeout))
        } else {
            for (field, given) in [
                ("http_url", self.http_url.is_some()),
                ("http_timeout_ms", self.http_timeout_ms.is_some()),
                ("bearer_token", self.bearer_token.is_some()),
            ] {
                if given {
                    http_only(kind, field)?;
                }
            }
            (None, None)
        };
        if let Some(token) = &self.bearer_token {
            validate_token(token)?;
        }
        Ok(GuardrailFields {
            description: validate_description(self.description.as_deref().unwrap_or_default())?,
            stages: validate_stages(kind, self.stages.as_deref().unwrap_or(&[Stage::PreCall]))?,
            runtime_config: validate_config(kind, self.runtime_config.unwrap_or_default())?,
            config_schema: schema_for(kind, self.config_schema)?,
            default_on: self.default_on.unwrap_or(false),
            fail_open: self.fail_open.unwrap_or(false),
            http_url,
            http_timeout_ms,
            bearer_token: self.bearer_token,
            name,
            kind,
        })
    }
}

/// `PATCH /api/guardrails/{name}`: absent fields stay; `null` resets (empty description, the
/// `pre_call` stage, `{}` config, `false` flags, the default timeout, no token).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchGuardrail {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    kind: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    stages: Option<Option<Vec<Stage>>>,
    #[serde(default, deserialize_with = "present")]
    runtime_config: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    config_schema: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "present")]
    default_on: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    fail_open: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    http_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    http_timeout_ms: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    bearer_token: Option<Option<SecretString>>,
}

impl fmt::Debug for PatchGuardrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatchGuardrail").finish_non_exhaustive()
    }
}

/// What a patch does to the bearer token.
#[derive(Default)]
pub(crate) enum TokenChange {
    /// Leave it.
    #[default]
    Keep,
    /// Remove it.
    Clear,
    /// Replace it (sealed by the caller).
    Set(SecretString),
}

impl PatchGuardrail {
    /// The columns to change on a guardrail of `kind`, and what happens to its token.
    pub(crate) fn changes(self, kind: &StoredKind) -> Result<(Vec<Change>, TokenChange), ApiError> {
        if self.name.is_some() {
            return Err(ApiError::field(
                "name",
                "cannot be changed (keys and policies refer to it); create a new guardrail",
            ));
        }
        if self.kind.is_some() {
            return Err(ApiError::field("kind", "cannot be changed; create a new guardrail"));
        }
        // A stored kind this build does not know can only be deleted.
        let kind =
            kind.known().ok_or_else(|| ApiError::Conflict(format!("this guardrail has unknown kind `{kind}`")))?;
        let mut changes = Vec::new();
        if let Some(description) = self.description {
            changes
                .push(Change::Text("description", validate_description(description.as_deref().unwrap_or_default())?));
        }
        if let Some(stages) = self.stages {
            let stages = validate_stages(kind, stages.as_deref().unwrap_or(&[Stage::PreCall]))?;
            changes.push(Change::Text("stages", stages_text(&stages)));
        }
        if let Some(config) = self.runtime_config {
            changes.push(Change::Text("runtime_config", validate_config(kind, config.unwrap_or_default())?));
        }
        if let Some(schema) = self.config_schema {
            // null on a built-in kind is a no-op reset to Flowgate's schema.
            match (kind_schema(kind), schema) {
                (Some(_), None) => {}
                (_, schema) => changes.push(Change::Text("config_schema", schema_for(kind, schema)?)),
            }
        }
        for (column, value) in [("default_on", self.default_on), ("fail_open", self.fail_open)] {
            if let Some(value) = value {
                changes.push(Change::Int(column, Some(i64::from(value.unwrap_or(false)))));
            }
        }
        if let Some(url) = self.http_url {
            http_only(kind, "http_url")?;
            let url = url.ok_or_else(|| ApiError::field("http_url", "cannot be null for http guardrails"))?;
            changes.push(Change::Text("http_url", validate_url(&url)?));
        }
        if let Some(timeout) = self.http_timeout_ms {
            http_only(kind, "http_timeout_ms")?;
            let timeout = timeout.map(validate_timeout).transpose()?.unwrap_or(DEFAULT_HTTP_TIMEOUT_MS);
            changes.push(Change::Int("http_timeout_ms", Some(timeout)));
        }
        let token = match self.bearer_token {
            None => TokenChange::Keep,
            Some(token) => {
                http_only(kind, "bearer_token")?;
                match token {
                    None => TokenChange::Clear,
                    Some(token) => {
                        validate_token(&token)?;
                        TokenChange::Set(token)
                    }
                }
            }
        };
        Ok((changes, token))
    }
}

/// `GET /api/guardrails?kind=`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListGuardrails {
    pub(crate) kind: Option<Kind>,
}

/// A guardrail row (the sealed token is never selected, only whether there is one).
#[derive(Debug, Clone)]
pub(crate) struct GuardrailRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: StoredKind,
    pub(crate) description: String,
    /// The stored JSON array of stage names.
    pub(crate) stages: String,
    pub(crate) runtime_config: String,
    pub(crate) config_schema: String,
    pub(crate) default_on: bool,
    pub(crate) fail_open: bool,
    pub(crate) http_url: Option<String>,
    pub(crate) http_timeout_ms: Option<i64>,
    pub(crate) has_token: bool,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

impl GuardrailRow {
    /// Shipped with Flowgate: configurable, not deletable.
    pub(crate) fn is_builtin(&self) -> bool {
        self.kind.known().is_some_and(|kind| is_builtin(&self.name, kind))
    }
}

/// A guardrail as the API shows it. There is no field that could carry the token.
#[derive(Debug, Serialize)]
pub(crate) struct GuardrailView {
    id: String,
    name: String,
    kind: StoredKind,
    /// Shipped with Flowgate: configurable, not deletable.
    builtin: bool,
    description: String,
    stages: Value,
    runtime_config: Value,
    config_schema: Value,
    default_on: bool,
    fail_open: bool,
    http_url: Option<String>,
    http_timeout_ms: Option<i64>,
    has_bearer_token: bool,
    created_at: String,
    updated_at: String,
}

impl From<GuardrailRow> for GuardrailView {
    fn from(row: GuardrailRow) -> Self {
        // Built-in kinds always show the schema of this build.
        let config_schema = row.kind.known().and_then(kind_schema).unwrap_or_else(|| parse_object(&row.config_schema));
        Self {
            builtin: row.is_builtin(),
            stages: serde_json::from_str(&row.stages).unwrap_or_else(|_| Value::Array(Vec::new())),
            runtime_config: parse_object(&row.runtime_config),
            config_schema,
            default_on: row.default_on,
            fail_open: row.fail_open,
            has_bearer_token: row.has_token,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            id: row.id,
            name: row.name,
            kind: row.kind,
            description: row.description,
            http_url: row.http_url,
            http_timeout_ms: row.http_timeout_ms,
        }
    }
}

/// The catalog, as `GET /api/guardrails` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct GuardrailList {
    pub(crate) data: Vec<GuardrailView>,
}
