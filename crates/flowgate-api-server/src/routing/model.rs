//! Deployment documents: the checks of a written entry, the config file's deployments, and the
//! views `GET /api/routing` answers with.

use std::collections::BTreeMap;

use flowgate_common::settings::{ConfigError, ModelEntry, model_entry_from_json};
use flowgate_contracts::routing::{CREDENTIAL_PREFIX, DeploymentHealth, ENV_PREFIX, HealthSnapshot};
use flowgate_db::routing::StoredDeployment;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::fields::rfc3339;

/// The `litellm_params` fields that hold credentials: only references are accepted there.
pub(crate) const SECRET_PARAMS: [&str; 5] =
    ["api_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "vertex_credentials"];

fn config_error(error: ConfigError) -> ApiError {
    match error {
        ConfigError::Field { field, message } => ApiError::field(field, message),
        other => ApiError::InvalidRequest(other.to_string()),
    }
}

/// A checked entry: its id, model name, the JSON to store, and the credentials it names.
#[derive(Debug)]
pub(crate) struct CheckedEntry {
    pub(crate) id: String,
    pub(crate) model_name: String,
    pub(crate) text: String,
    pub(crate) credentials: Vec<String>,
    /// LiteLLM fields Flowgate has no equivalent for (removed, as from a config file).
    pub(crate) ignored: Vec<String>,
}

/// Checks `body` as one `model_list` entry. `id` is the deployment's id when it is replaced
/// (the entry may repeat it in `model_info.id` or leave it out); a new one gets
/// `model_info.id` or a generated id.
pub(crate) fn check_entry(body: Value, id: Option<&str>) -> Result<CheckedEntry, ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::InvalidRequest("the body must be a model_list entry (a JSON object)".to_owned()));
    };
    let params_field = if body.contains_key("litellm_params") { "litellm_params" } else { "params" };
    let mut credentials = Vec::new();
    if let Some(Value::Object(params)) = body.get(params_field) {
        for name in SECRET_PARAMS {
            let Some(value) = params.get(name) else { continue };
            let field = format!("litellm_params.{name}");
            let reference = value.as_str().unwrap_or_default();
            if let Some(credential) = reference.strip_prefix(CREDENTIAL_PREFIX) {
                crate::fields::validate_kebab(&field, credential).map_err(|_| {
                    ApiError::field(
                        &field,
                        format!("`{reference}` does not name a credential (credential/NAME, NAME kebab-case)"),
                    )
                })?;
                credentials.push(credential.to_owned());
            } else if reference.strip_prefix(ENV_PREFIX).is_none_or(str::is_empty) {
                return Err(ApiError::field(
                    field,
                    "must be a reference, `credential/NAME` (a key stored through /api/credentials) or \
                     `os.environ/NAME` (a variable of the proxies): keys are never stored in a deployment",
                ));
            }
        }
    }
    let info = body.entry("model_info").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(info) = info else {
        return Err(ApiError::field("model_info", "must be an object"));
    };
    let id = match (info.get("id"), id) {
        (Some(Value::String(given)), Some(id)) if given != id => {
            return Err(ApiError::field("model_info.id", format!("must be `{id}` (the deployment's id) or left out")));
        }
        (Some(Value::String(given)), _) => given.clone(),
        (Some(_), _) => return Err(ApiError::field("model_info.id", "must be a string")),
        (None, Some(id)) => id.to_owned(),
        (None, None) => uuid::Uuid::now_v7().to_string(),
    };
    if id.trim().is_empty() || id.len() > 128 || id.contains('/') || id.chars().any(char::is_control) {
        return Err(ApiError::field("model_info.id", "must be 1 to 128 characters, without `/`"));
    }
    info.insert("id".to_owned(), Value::String(id.clone()));
    let body = Value::Object(body);
    let (entry, ignored) = model_entry_from_json(body.clone(), None).map_err(config_error)?;
    entry.validate(&|field| field.to_owned()).map_err(config_error)?;
    Ok(CheckedEntry { id, model_name: entry.model_name, text: body.to_string(), credentials, ignored })
}

/// A deployment of the config file, as the API shows it (never its keys).
#[derive(Debug, Clone)]
pub(crate) struct FileDeployment {
    id: String,
    model_name: String,
    model: String,
    api_base: Option<String>,
    has_api_key: bool,
}

/// The config file's deployments, with the ids the proxies give them.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileDeployments(pub(crate) Vec<FileDeployment>);

impl FileDeployments {
    /// From the file's `model_list`.
    pub(crate) fn new(model_list: &[ModelEntry]) -> Self {
        Self(
            model_list
                .iter()
                .enumerate()
                .map(|(index, entry)| FileDeployment {
                    id: entry.model_info.id.clone().unwrap_or_else(|| format!("{}/{index}", entry.model_name)),
                    model_name: entry.model_name.clone(),
                    model: entry.litellm_params.model.clone(),
                    api_base: entry.litellm_params.base_url(),
                    has_api_key: entry.litellm_params.api_key.is_some(),
                })
                .collect(),
        )
    }

    /// Whether `id` is a file deployment's.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|d| d.id == id)
    }

    /// The view of file deployment `id`, if there is one.
    pub(crate) fn view(&self, id: &str, live: &[HealthSnapshot]) -> Option<DeploymentView> {
        self.0.iter().find(|d| d.id == id).map(|d| DeploymentView::file(d, live))
    }
}

/// One proxy's view of one deployment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LiveView {
    instance: String,
    revision: i64,
    #[serde(flatten)]
    health: DeploymentHealth,
}

/// A deployment as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct DeploymentView {
    id: String,
    model_name: String,
    /// `api` (written through this API) or `file` (the config file's, read-only).
    source: &'static str,
    read_only: bool,
    /// The entry as written (references, never keys); for file deployments, a summary.
    entry: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<String>,
    /// What every live proxy reports about it.
    live: Vec<LiveView>,
}

impl DeploymentView {
    /// A stored deployment.
    pub(crate) fn stored(row: &StoredDeployment, live: &[HealthSnapshot]) -> Self {
        Self {
            id: row.id.clone(),
            model_name: row.model_name.clone(),
            source: "api",
            read_only: false,
            entry: serde_json::from_str(&row.entry).unwrap_or(Value::Null),
            revision: Some(row.revision),
            created_at: Some(rfc3339(row.created_at)),
            updated_at: Some(rfc3339(row.updated_at)),
            live: live_of(&row.id, live),
        }
    }

    fn file(deployment: &FileDeployment, live: &[HealthSnapshot]) -> Self {
        let mut params = Map::new();
        params.insert("model".to_owned(), Value::String(deployment.model.clone()));
        if let Some(base) = &deployment.api_base {
            params.insert("api_base".to_owned(), Value::String(base.clone()));
        }
        params.insert("api_key_set".to_owned(), Value::Bool(deployment.has_api_key));
        Self {
            id: deployment.id.clone(),
            model_name: deployment.model_name.clone(),
            source: "file",
            read_only: true,
            entry: serde_json::json!({"model_name": deployment.model_name, "litellm_params": params}),
            revision: None,
            created_at: None,
            updated_at: None,
            live: live_of(&deployment.id, live),
        }
    }
}

fn live_of(id: &str, live: &[HealthSnapshot]) -> Vec<LiveView> {
    live.iter()
        .filter_map(|snapshot| {
            snapshot.deployments.get(id).map(|health| LiveView {
                instance: snapshot.instance.clone(),
                revision: snapshot.revision,
                health: health.clone(),
            })
        })
        .collect()
}

/// A model name and its deployments.
#[derive(Debug, Serialize)]
pub(crate) struct ModelView {
    model_name: String,
    deployments: Vec<DeploymentView>,
}

/// A proxy that reported recently.
#[derive(Debug, Serialize)]
pub(crate) struct ProxyView {
    instance: String,
    revision: i64,
    reported_at: String,
}

/// `GET /api/routing`.
#[derive(Debug, Serialize)]
pub(crate) struct RoutingView {
    revision: i64,
    models: Vec<ModelView>,
    proxies: Vec<ProxyView>,
}

impl RoutingView {
    /// The file's deployments, then the stored ones, grouped by model name (in first-seen order).
    pub(crate) fn new(
        revision: i64,
        file: &FileDeployments,
        stored: &[StoredDeployment],
        live: &[HealthSnapshot],
    ) -> Self {
        let mut order: Vec<String> = Vec::new();
        let mut by_model: BTreeMap<String, Vec<DeploymentView>> = BTreeMap::new();
        let views = file
            .0
            .iter()
            .map(|d| DeploymentView::file(d, live))
            .chain(stored.iter().map(|row| DeploymentView::stored(row, live)));
        for view in views {
            if !by_model.contains_key(&view.model_name) {
                order.push(view.model_name.clone());
            }
            by_model.entry(view.model_name.clone()).or_default().push(view);
        }
        let models = order
            .into_iter()
            .map(|model_name| {
                let deployments = by_model.remove(&model_name).unwrap_or_default();
                ModelView { model_name, deployments }
            })
            .collect();
        let proxies = live
            .iter()
            .map(|s| ProxyView { instance: s.instance.clone(), revision: s.revision, reported_at: rfc3339(s.at) })
            .collect();
        Self { revision, models, proxies }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<CheckedEntry, ApiError> {
        check_entry(serde_json::from_str(body).unwrap(), None)
    }

    #[test]
    fn valid_entries_get_an_id_and_keep_references() {
        let checked = check(
            r#"{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "credential/openai-prod", "temperature": 0.2}}"#,
        )
        .unwrap();
        assert_eq!(checked.model_name, "m");
        assert_eq!(checked.credentials, ["openai-prod"]);
        assert!(!checked.id.is_empty());
        let stored: Value = serde_json::from_str(&checked.text).unwrap();
        assert_eq!(stored["model_info"]["id"], checked.id.as_str());
        let checked = check(r#"{"model_name": "m", "params": {"model": "mock/x", "api_key": "os.environ/K"}, "model_info": {"id": "mine"}}"#).unwrap();
        assert_eq!(checked.id, "mine");
    }

    #[test]
    fn invalid_entries_name_the_field_at_fault() {
        for (body, needle) in [
            (
                r#"{"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "sk-123"}}"#,
                "`litellm_params.api_key` must be a reference",
            ),
            (
                r#"{"model_name": "m", "litellm_params": {"model": "mock/x", "aws_secret_access_key": 5}}"#,
                "`litellm_params.aws_secret_access_key` must be a reference",
            ),
            (
                r#"{"model_name": "m", "litellm_params": {"model": "mock/x", "api_key": "credential/Bad Name"}}"#,
                "`litellm_params.api_key` `credential/Bad Name` does not name a credential",
            ),
            (
                r#"{"model_name": "m", "litellm_params": {"model": "azure/x", "api_base": "https://a"}}"#,
                "`litellm_params.api_version` is required for azure",
            ),
            (r#"{"model_name": " ", "litellm_params": {"model": "mock/x"}}"#, "`model_name` must not be empty"),
            (
                r#"{"model_name": "m", "litellm_params": {"model": "mock/x", "weight": -1}}"#,
                "`litellm_params.weight` must be a number >= 0",
            ),
            (
                r#"{"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": "ftp://x"}}"#,
                "`litellm_params.api_base` must start with http",
            ),
            (r#"{"model_name": "m", "litellm_params": {"model": "mock/x", "rpm": "many"}}"#, "`litellm_params.rpm`"),
            (r#"{"model_name": "m"}"#, "missing field `litellm_params`"),
            (
                r#"{"model_name": "m", "litellm_params": {"model": "mock/x"}, "model_info": {"id": "a/b"}}"#,
                "`model_info.id` must be 1 to 128",
            ),
        ] {
            let error = check(body).unwrap_err().to_string();
            assert!(error.contains(needle), "{body}: {error}");
        }
        let error = check_entry(
            serde_json::json!({"model_name": "m", "litellm_params": {"model": "mock/x"}, "model_info": {"id": "x"}}),
            Some("y"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`model_info.id` must be `y`"), "{error}");
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        use super::check_entry;

        const KEYS: [&str; 16] = [
            "model_name",
            "litellm_params",
            "params",
            "model_info",
            "id",
            "model",
            "api_key",
            "api_base",
            "rpm",
            "tpm",
            "weight",
            "timeout",
            "aws_secret_access_key",
            "extra_headers",
            "temperature",
            "x",
        ];

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
                prop_oneof![
                    Just("mock/m".to_owned()),
                    Just("openai/gpt".to_owned()),
                    Just("azure/d".to_owned()),
                    Just("credential/k".to_owned()),
                    Just("credential/".to_owned()),
                    Just("os.environ/".to_owned()),
                    Just("http://127.0.0.1:1/v1".to_owned()),
                    ".{0,12}",
                ]
                .prop_map(Value::String),
            ]
        }

        fn tree() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(|pairs| {
                        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
                    }),
                ]
            })
        }

        fn json(text: &str) -> Value {
            serde_json::from_str(text).unwrap()
        }

        /// Equal, numbers within a relative 1e-12 (serde_json's float text does not always read
        /// back to the same last digit).
        fn same(a: &Value, b: &Value) -> bool {
            match (a, b) {
                (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                    _ => x == y,
                },
                (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
                (Value::Object(x), Value::Object(y)) => {
                    x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
                }
                _ => a == b,
            }
        }

        proptest! {
            /// Any JSON body is answered (never a panic); an accepted one is stored in a form that
            /// is accepted again, with the same id and no literal key.
            #[test]
            fn any_body_is_checked_without_panicking(body in tree()) {
                if let Ok(checked) = check_entry(body, None) {
                    let stored: Value = serde_json::from_str(&checked.text).unwrap();
                    let again = check_entry(stored, Some(&checked.id)).unwrap();
                    prop_assert_eq!(&again.id, &checked.id);
                    prop_assert!(same(&json(&again.text), &json(&checked.text)), "{} vs {}", again.text, checked.text);
                }
            }

            /// Entries shaped like real ones (a name, a model, random extra parameters): the same,
            /// and a literal secret is never accepted.
            #[test]
            fn entry_shaped_bodies_keep_their_guarantees(
                name in ".{0,8}",
                model in prop::sample::select(vec!["mock/m", "openai/gpt", "azure/d", "bedrock/x", "nope/x", ""]),
                extra in prop::collection::vec((prop::sample::select(KEYS.to_vec()), tree()), 0..5),
                info in tree(),
            ) {
                let mut params: Map<String, Value> = extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                params.insert("model".to_owned(), Value::String(model.to_owned()));
                let body = serde_json::json!({"model_name": name, "litellm_params": params, "model_info": info});
                if let Ok(checked) = check_entry(body, None) {
                    let stored: Value = serde_json::from_str(&checked.text).unwrap();
                    for secret in super::SECRET_PARAMS {
                        if let Some(value) = stored["litellm_params"].get(secret) {
                            let text = value.as_str().unwrap_or_default();
                            prop_assert!(text.starts_with("credential/") || text.starts_with("os.environ/"), "{}", text);
                        }
                    }
                    let again = check_entry(stored, Some(&checked.id)).unwrap();
                    prop_assert!(same(&json(&again.text), &json(&checked.text)), "{} vs {}", again.text, checked.text);
                }
            }
        }
    }
}
