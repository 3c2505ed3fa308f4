//! LiteLLM compatibility: a LiteLLM proxy config loads as it is. Before the file is typed, this
//! pass works on its tree:
//!
//! 1. `environment_variables` are laid over the process environment (as LiteLLM sets them in
//!    `os.environ`), before any `os.environ/NAME` is read;
//! 2. `litellm_settings`, `general_settings` and `router_settings` fields with a Flowgate
//!    equivalent are moved to it (`master_key` → `security.admin_api_key`, `num_retries` →
//!    `router_settings.num_retries`, `cache_params` → `cache`, `redis`, ...), unless the Flowgate
//!    setting is given too, which wins;
//! 3. request parameters written in `litellm_params` (`temperature`, `max_tokens`, ...) are
//!    gathered into `litellm_params.request_defaults`;
//! 4. LiteLLM's `mcp_servers` entries are mapped onto Flowgate's (`mcp::from_litellm`);
//! 5. every other field of LiteLLM's sections (and LiteLLM's other top-level sections) is removed
//!    and reported, with its path, as "not supported, ignored": logged once at start and printed
//!    by `flowgate config check`. Flowgate's own sections are not touched: they stay strict;
//! 6. `os.environ/NAME` is replaced by the variable's value in every string of the file.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::ConfigError;

/// What the LiteLLM compatibility pass did to a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compat {
    /// Fields Flowgate has no equivalent for: removed, and reported at start.
    pub ignored: Vec<Ignored>,
    /// Fields read as a Flowgate setting.
    pub mapped: Vec<Mapped>,
}

/// A field that was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Its dotted path, e.g. `litellm_settings.success_callback[0]`.
    pub path: String,
    /// What it held, when that says more than the path (a callback's name).
    pub value: Option<String>,
}

/// A LiteLLM field read as a Flowgate setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The LiteLLM field's path.
    pub from: String,
    /// The Flowgate setting it became, or what it means in Flowgate.
    pub to: String,
}

/// LiteLLM's top-level sections Flowgate has no equivalent for: reported, not refused.
const IGNORED_SECTIONS: &[&str] = &[
    "guardrails",
    "callback_settings",
    "credential_list",
    "mcp_aliases",
    "search_tools",
    "vector_store_registry",
    "files_settings",
    "assistant_settings",
    "finetune_settings",
    "include",
    "prompts",
];

/// The fields of a `model_list` entry.
const ENTRY_FIELDS: &[&str] = &["model_name", "litellm_params", "params", "model_info", "rpm", "tpm"];

/// The fields of `litellm_params` Flowgate reads (the members of `ModelParams`, aliases included).
pub(super) const PARAM_FIELDS: &[&str] = &[
    "model",
    "custom_llm_provider",
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "api",
    "organization",
    "rpm",
    "tpm",
    "weight",
    "timeout",
    "stream_timeout",
    "max_retries",
    "input_cost_per_token",
    "output_cost_per_token",
    "extra_headers",
    "headers",
    "request_defaults",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region_name",
    "aws_bedrock_runtime_endpoint",
    "vertex_project",
    "vertex_location",
    "vertex_credentials",
    "mock_response",
    "mock_latency_ms",
    "mock_chunk_delay_ms",
    "mock_chunks",
];

/// Request parameters a deployment may set defaults for (OpenAI Chat Completions names); they are
/// merged under the client's values.
pub(super) const REQUEST_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "user",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "service_tier",
    "modalities",
    "metadata",
    "thinking",
];

/// The fields of `router_settings` Flowgate reads (the members of `RouterSettings`).
pub(super) const ROUTER_FIELDS: &[&str] = &[
    "routing_strategy",
    "num_retries",
    "retry_policy",
    "timeout",
    "stream_timeout",
    "fallbacks",
    "default_fallbacks",
    "allowed_fails",
    "allowed_fails_policy",
    "cooldown_time",
    "disable_cooldowns",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "model_group_alias",
    "enable_pre_call_checks",
];

/// Runs steps 1–5 on the tree of a config file; `env` gets `environment_variables`.
pub(super) fn normalise(tree: &mut Value, env: &mut HashMap<String, String>) -> Result<Compat, ConfigError> {
    let mut compat = Compat::default();
    let Some(root) = tree.as_object_mut() else { return Ok(compat) };
    if let Some(variables) = root.remove("environment_variables") {
        let Value::Object(variables) = variables else {
            return Err(ConfigError::field("environment_variables", "must be a mapping of names to values"));
        };
        for (name, value) in variables {
            let text = match value {
                Value::String(text) => text,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => continue,
                Value::Array(_) | Value::Object(_) => {
                    return Err(ConfigError::field(format!("environment_variables.{name}"), "must be a single value"));
                }
            };
            env.insert(name, text);
        }
        // LiteLLM reads its Redis from these variables when its settings name none.
        if let Some(host) = env.get("REDIS_HOST").cloned() {
            let port = env.get("REDIS_PORT").map(String::as_str);
            let url = redis_url(&host, port, env.get("REDIS_PASSWORD").map(String::as_str));
            redis_setting(root, url, "environment_variables.REDIS_HOST", &mut compat);
        }
    }
    for section in IGNORED_SECTIONS {
        if root.remove(*section).is_some() {
            compat.ignored.push(Ignored { path: (*section).to_owned(), value: None });
        }
    }
    if let Some(settings) = root.remove("litellm_settings") {
        litellm_settings(root, settings, env, &mut compat)?;
    }
    if let Some(settings) = root.remove("general_settings") {
        general_settings(root, settings, env, &mut compat)?;
    }
    let mut router_redis: Option<(String, &str)> = None;
    if let Some(Value::Object(router)) = root.get_mut("router_settings") {
        let (mut host, mut port, mut password) = (None, None, None);
        let names: Vec<String> = router.keys().cloned().collect();
        for name in names {
            if ROUTER_FIELDS.contains(&name.as_str()) {
                continue;
            }
            let Some(value) = router.remove(&name) else { continue };
            let path = format!("router_settings.{name}");
            match name.as_str() {
                "redis_host" => host = scalar_text(&resolved(value, &path, env)?),
                "redis_port" => port = scalar_text(&resolved(value, &path, env)?),
                "redis_password" => password = scalar_text(&resolved(value, &path, env)?),
                "redis_url" => {
                    router_redis =
                        scalar_text(&resolved(value, &path, env)?).map(|url| (url, "router_settings.redis_url"));
                }
                _ => compat.ignored.push(Ignored { path, value: None }),
            }
        }
        if let Some(host) = host {
            router_redis = Some((redis_url(&host, port.as_deref(), password.as_deref()), "router_settings.redis_host"));
        }
    }
    if let Some((url, from)) = router_redis {
        redis_setting(root, url, from, &mut compat);
    }
    if let Some(Value::Object(servers)) = root.get_mut("mcp_servers") {
        for (name, entry) in servers.iter_mut() {
            super::mcp::from_litellm(name, entry, env, &mut compat)?;
        }
    }
    if let Some(Value::Array(entries)) = root.get_mut("model_list") {
        for (index, entry) in entries.iter_mut().enumerate() {
            model_entry(index, entry, &mut compat);
        }
    }
    Ok(compat)
}

/// `redis.url` from a LiteLLM field, unless Flowgate's own setting is given.
fn redis_setting(root: &mut Map<String, Value>, url: String, from: &str, compat: &mut Compat) {
    if set_if_absent(root, &["redis", "url"], Value::String(url)) {
        compat.mapped.push(Mapped { from: from.to_owned(), to: "redis.url".into() });
    }
}

fn redis_url(host: &str, port: Option<&str>, password: Option<&str>) -> String {
    let port = port.unwrap_or("6379");
    match password.filter(|p| !p.is_empty()) {
        Some(password) => format!("redis://:{password}@{host}:{port}"),
        None => format!("redis://{host}:{port}"),
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Sets `path` in `root` when nothing is there yet; true when it was set.
fn set_if_absent(root: &mut Map<String, Value>, path: &[&str], value: Value) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut node = root;
    for parent in parents {
        let slot = node.entry((*parent).to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return false };
        node = next;
    }
    if node.get(*last).is_some_and(|v| !v.is_null()) {
        return false;
    }
    node.insert((*last).to_owned(), value);
    true
}

/// Appends the entries of a LiteLLM fallback list to a `router_settings` list.
fn append_list(root: &mut Map<String, Value>, field: &str, value: Value) {
    let Value::Array(items) = value else { return };
    let router = root.entry("router_settings").or_insert_with(|| Value::Object(Map::new()));
    if router.is_null() {
        *router = Value::Object(Map::new());
    }
    let Value::Object(router) = router else { return };
    let list = router.entry(field.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        list.extend(items);
    }
}

fn litellm_settings(
    root: &mut Map<String, Value>,
    settings: Value,
    env: &HashMap<String, String>,
    compat: &mut Compat,
) -> Result<(), ConfigError> {
    let Value::Object(settings) = settings else {
        if !settings.is_null() {
            compat.ignored.push(Ignored { path: "litellm_settings".into(), value: None });
        }
        return Ok(());
    };
    for (name, value) in settings {
        let path = format!("litellm_settings.{name}");
        let target: Option<&[&str]> = match name.as_str() {
            "num_retries" => Some(&["router_settings", "num_retries"]),
            "request_timeout" => Some(&["router_settings", "timeout"]),
            "cache" => Some(&["cache", "enabled"]),
            _ => None,
        };
        if let Some(to) = target {
            map_to(root, to, single(resolved(value, &path, env)?, &path)?, path, compat);
            continue;
        }
        match name.as_str() {
            "fallbacks" | "context_window_fallbacks" | "content_policy_fallbacks" | "default_fallbacks" => {
                append_list(root, &name, resolved(value, &path, env)?);
                compat.mapped.push(Mapped { from: path, to: format!("router_settings.{name}") });
            }
            "drop_params" => compat.mapped.push(Mapped {
                from: path,
                to: "always on: a translation drops the parameters the provider's format cannot express".into(),
            }),
            "cache_params" => cache_params(root, value, env, compat)?,
            "json_logs" if value.as_bool() == Some(true) => {
                map_to(root, &["telemetry", "log_format"], Value::String("json".into()), path, compat);
            }
            "set_verbose" if value.as_bool() == Some(true) => {
                map_to(root, &["telemetry", "log_level"], Value::String("debug".into()), path, compat);
            }
            "json_logs" | "set_verbose" => {
                compat.mapped.push(Mapped { from: path, to: "off: Flowgate's default".into() });
            }
            "callbacks" | "success_callback" | "failure_callback" | "service_callback" | "service_callbacks" => {
                callbacks(&path, value, compat);
            }
            _ => compat.ignored.push(Ignored { path, value: None }),
        }
    }
    Ok(())
}

/// Sets a Flowgate setting from the LiteLLM field at `from`, unless the setting is given too.
fn map_to(root: &mut Map<String, Value>, to: &[&str], value: Value, from: String, compat: &mut Compat) {
    let target = to.join(".");
    if set_if_absent(root, to, value) {
        compat.mapped.push(Mapped { from, to: target });
    } else {
        compat.mapped.push(Mapped { from, to: format!("{target} (set there too; that value wins)") });
    }
}

fn callbacks(path: &str, value: Value, compat: &mut Compat) {
    let items = match value {
        Value::Array(items) => items,
        Value::String(_) => vec![value],
        _ => {
            compat.ignored.push(Ignored { path: path.to_owned(), value: None });
            return;
        }
    };
    for (index, item) in items.into_iter().enumerate() {
        let at = format!("{path}[{index}]");
        match item.as_str() {
            Some("prometheus") => {
                compat.mapped.push(Mapped { from: at, to: "always on: Prometheus metrics at GET /metrics".into() });
            }
            Some("otel") => compat.mapped.push(Mapped {
                from: at,
                to: "OpenTelemetry traces: set telemetry.otlp_endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)".into(),
            }),
            other => compat.ignored.push(Ignored { path: at, value: other.map(str::to_owned) }),
        }
    }
}

fn cache_params(
    root: &mut Map<String, Value>,
    value: Value,
    env: &HashMap<String, String>,
    compat: &mut Compat,
) -> Result<(), ConfigError> {
    let Value::Object(params) = value else {
        compat.ignored.push(Ignored { path: "litellm_settings.cache_params".into(), value: None });
        return Ok(());
    };
    let (mut host, mut port, mut password) = (None, None, None);
    let mut redis_type = false;
    for (name, value) in params {
        let path = format!("litellm_settings.cache_params.{name}");
        match name.as_str() {
            "ttl" => map_to(root, &["cache", "ttl_secs"], single(resolved(value, &path, env)?, &path)?, path, compat),
            "similarity_threshold" => {
                map_to(
                    root,
                    &["cache", "semantic", "threshold"],
                    single(resolved(value, &path, env)?, &path)?,
                    path,
                    compat,
                );
            }
            "namespace" => {
                if let Some(namespace) = scalar_text(&resolved(value, &path, env)?) {
                    map_to(root, &["redis", "prefix"], Value::String(format!("{namespace}:")), path, compat);
                }
            }
            "type" => match value.as_str() {
                Some("local") => compat.mapped.push(Mapped { from: path, to: "the in-process cache".into() }),
                Some("redis") => redis_type = true,
                _ => compat.ignored.push(Ignored { path, value: scalar_text(&value) }),
            },
            "host" => host = scalar_text(&resolved(value, &path, env)?),
            "port" => port = scalar_text(&resolved(value, &path, env)?),
            "password" => password = scalar_text(&resolved(value, &path, env)?),
            _ => compat.ignored.push(Ignored { path, value: None }),
        }
    }
    if let Some(host) = host {
        let url = redis_url(&host, port.as_deref(), password.as_deref());
        redis_setting(root, url, "litellm_settings.cache_params.host", compat);
    } else if redis_type {
        compat.mapped.push(Mapped {
            from: "litellm_settings.cache_params.type".into(),
            to: "the Redis of redis.url (REDIS_URL), when set".into(),
        });
    }
    Ok(())
}

fn general_settings(
    root: &mut Map<String, Value>,
    settings: Value,
    env: &HashMap<String, String>,
    compat: &mut Compat,
) -> Result<(), ConfigError> {
    let Value::Object(settings) = settings else {
        if !settings.is_null() {
            compat.ignored.push(Ignored { path: "general_settings".into(), value: None });
        }
        return Ok(());
    };
    for (name, value) in settings {
        let path = format!("general_settings.{name}");
        let to: &[&str] = match name.as_str() {
            "master_key" => &["security", "admin_api_key"],
            "database_url" => &["database", "url"],
            "database_connection_pool_limit" => &["database", "max_connections"],
            "database_connection_timeout" => &["database", "connect_timeout_secs"],
            _ => {
                compat.ignored.push(Ignored { path, value: None });
                continue;
            }
        };
        let value = single(resolved(value, &path, env)?, &path)?;
        map_to(root, to, value, path, compat);
    }
    Ok(())
}

/// A LiteLLM field that maps to one Flowgate value (a string, a number): a list or a map there is
/// an error that names the LiteLLM field, not the setting it maps to.
fn single(value: Value, path: &str) -> Result<Value, ConfigError> {
    match value {
        Value::Array(_) | Value::Object(_) => Err(ConfigError::field(
            path.to_owned(),
            "expected a single value (a string or a number), not a list or a map",
        )),
        value => Ok(value),
    }
}

/// One entry given on its own (through `/api/routing`): what [`normalise`] does to each entry of a
/// file's `model_list`. Returns the paths (inside the entry) of the fields removed.
pub(super) fn normalise_entry(entry: &mut Value) -> Vec<String> {
    let mut compat = Compat::default();
    model_entry(0, entry, &mut compat);
    compat.ignored.into_iter().map(|i| i.path.trim_start_matches("model_list[0].").to_owned()).collect()
}

fn model_entry(index: usize, entry: &mut Value, compat: &mut Compat) {
    let Value::Object(entry) = entry else { return };
    let names: Vec<String> = entry.keys().cloned().collect();
    for name in names {
        if !ENTRY_FIELDS.contains(&name.as_str()) {
            entry.remove(&name);
            compat.ignored.push(Ignored { path: format!("model_list[{index}].{name}"), value: None });
        }
    }
    let field = if entry.contains_key("litellm_params") { "litellm_params" } else { "params" };
    let Some(Value::Object(params)) = entry.get_mut(field) else { return };
    let names: Vec<String> = params.keys().cloned().collect();
    let mut defaults = match params.remove("request_defaults") {
        Some(Value::Object(defaults)) => defaults,
        _ => Map::new(),
    };
    for name in names {
        if PARAM_FIELDS.contains(&name.as_str()) {
            continue;
        }
        let Some(value) = params.remove(&name) else { continue };
        if REQUEST_PARAMS.contains(&name.as_str()) {
            defaults.insert(name, value);
        } else {
            compat.ignored.push(Ignored { path: format!("model_list[{index}].{field}.{name}"), value: None });
        }
    }
    if !defaults.is_empty() {
        params.insert("request_defaults".to_owned(), Value::Object(defaults));
    }
}

/// Replaces `os.environ/NAME` with the variable's value in every string of `tree` (step 5). A
/// variable that is not set stops the load, naming the field.
pub(super) fn resolve_env_references(tree: &mut Value, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    resolve_at(tree, String::new(), env)
}

/// A LiteLLM value about to be mapped, its `os.environ/` references resolved (errors name `path`,
/// where the operator wrote it).
pub(super) fn resolved(mut value: Value, path: &str, env: &HashMap<String, String>) -> Result<Value, ConfigError> {
    resolve_at(&mut value, path.to_owned(), env)?;
    Ok(value)
}

fn resolve_at(tree: &mut Value, mut path: String, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    fn walk(node: &mut Value, path: &mut String, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        match node {
            Value::String(text) => {
                if let Some(name) = text.strip_prefix("os.environ/") {
                    let value = env.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                        ConfigError::field(path.clone(), format!("environment variable `{name}` is not set"))
                    })?;
                    *text = value.clone();
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{index}]"));
                    walk(item, path, env)?;
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    walk(item, path, env)?;
                    path.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        Ok(())
    }
    walk(tree, &mut path, env)
}

/// A YAML document as a JSON tree (aliases resolved by the loader; keys that are not strings
/// written as text).
pub(super) fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::String(text) => Value::String(text.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(hash) => Value::Object(
            hash.iter()
                .map(|(key, value)| {
                    let key = match key {
                        Yaml::String(text) | Yaml::Real(text) => text.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(value))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}
