use std::collections::HashMap;
use std::io::Write;

use secrecy::ExposeSecret;

use super::*;

fn yaml(text: &str) -> tempfile_path::TempYaml {
    tempfile_path::TempYaml::new(text)
}

/// A tiny self-cleaning temp file, so the crate needs no tempfile dependency.
mod tempfile_path {
    use std::path::PathBuf;

    pub(super) struct TempYaml(pub(super) PathBuf);

    impl TempYaml {
        pub(super) fn new(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "flowgate-settings-{}-{}.yaml",
                std::process::id(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            ));
            let mut file = std::fs::File::create(&path).unwrap();
            super::Write::write_all(&mut file, text.as_bytes()).unwrap();
            Self(path)
        }
    }

    impl Drop for TempYaml {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn load(file: Option<&tempfile_path::TempYaml>, pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::load(&Sources { config_file: file.map(|f| f.0.clone()), env: env(pairs) })
}

#[test]
fn defaults_match_the_documented_ports_and_values() {
    let settings = load(None, &[]).unwrap();
    assert_eq!(settings.proxy.port, 7775);
    assert_eq!(settings.compliance.port, 7777);
    assert_eq!(settings.api_server.port, 7778);
    assert_eq!(settings.policy.port, 7782);
    assert_eq!(settings.compliance.timeout_secs, 8);
    assert_eq!(settings.proxy.stream_timeout_secs, 600);
    assert!((settings.cache.semantic.threshold - 0.90).abs() < f64::EPSILON);
    assert!(settings.database.url.is_none());
    assert!(settings.model_list.is_empty());
}

#[test]
fn env_overrides_file_and_seed_names_override_both() {
    let file = yaml("proxy:\n  port: 9000\n  stream_timeout_secs: 100\ntelemetry:\n  log_level: warn\n");
    let settings = load(
        Some(&file),
        &[
            ("FLOWGATE__PROXY__PORT", "9100"),
            ("FLOWGATE__PROXY__STREAM_TIMEOUT_SECS", "200"),
            ("DISPATCH_STREAM_TIMEOUT_S", "300"),
            ("LOG_LEVEL", "debug"),
            ("REDIS_URL", "redis://a"),
            ("KEYSTORE_REDIS_URL", "redis://b"),
        ],
    )
    .unwrap();
    assert_eq!(settings.proxy.port, 9100, "FLOWGATE__ beats the file");
    assert_eq!(settings.proxy.stream_timeout_secs, 300, "seed name beats FLOWGATE__");
    assert_eq!(settings.telemetry.log_level, "debug");
    assert_eq!(settings.redis.url.unwrap().expose_secret(), "redis://b", "KEYSTORE_REDIS_URL wins");
}

#[test]
fn unknown_key_in_file_is_an_error_naming_it() {
    let file = yaml("proxy:\n  prot: 9000\n");
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("prot"), "{error}");
}

#[test]
fn bad_value_names_the_field() {
    let file = yaml("proxy:\n  port: not-a-port\n");
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("proxy.port"), "{error}");
}

#[test]
fn bad_env_value_names_the_field() {
    let error = load(None, &[("COMPLIANCE_TIMEOUT_SECS", "soon")]).unwrap_err().to_string();
    assert!(error.contains("compliance.timeout_secs"), "{error}");
}

#[test]
fn missing_config_file_is_an_error() {
    let error =
        Settings::load(&Sources { config_file: Some("/nonexistent/flowgate.yaml".into()), env: HashMap::new() })
            .unwrap_err()
            .to_string();
    assert!(error.contains("/nonexistent/flowgate.yaml"), "{error}");
}

#[test]
fn litellm_model_list_parses_with_params_alias_and_env_keys() {
    let file = yaml(
        r"
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/TEST_OPENAI_KEY
      rpm: 600
      weight: 2
  - model_name: claude-haiku
    params:
      model: anthropic/claude-3-5-haiku-latest
  - model_name: local
    litellm_params:
      model: mock/echo
router_settings:
  routing_strategy: least-busy
  num_retries: 3
  fallbacks: [{gpt-4o-mini: [claude-haiku]}]
litellm_settings:
  drop_params: true
",
    );
    let settings = load(Some(&file), &[("TEST_OPENAI_KEY", "sk-test-123")]).unwrap();
    assert_eq!(settings.model_list.len(), 3);
    let first = &settings.model_list[0].litellm_params;
    assert_eq!(first.api_key.as_ref().unwrap().expose_secret(), "sk-test-123");
    assert_eq!(first.provider().unwrap(), (Provider::OpenAi, "gpt-4o-mini"));
    assert_eq!(first.base_url().unwrap(), "https://api.openai.com/v1");
    assert_eq!(settings.model_list[1].litellm_params.provider().unwrap().0, Provider::Anthropic);
    assert_eq!(settings.router_settings.routing_strategy, RoutingStrategy::LeastBusy);
    assert_eq!(settings.router_settings.num_retries, 3);
}

#[test]
fn unset_env_reference_names_the_field() {
    let file = yaml(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/NOPE_NOT_SET\n",
    );
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("model_list[0].litellm_params.api_key"), "{error}");
    assert!(error.contains("NOPE_NOT_SET"), "{error}");
}

#[test]
fn unknown_provider_and_bad_fallbacks_are_rejected() {
    let file = yaml("model_list:\n  - model_name: a\n    litellm_params:\n      model: nosuch/x\n");
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("model_list[0].litellm_params.model"), "{error}");

    let file = yaml(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/x\nrouter_settings:\n  fallbacks: [{a: [ghost]}]\n",
    );
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("router_settings.fallbacks[0]") && error.contains("ghost"), "{error}");
}

#[test]
fn unknown_routing_strategy_lists_the_choices() {
    let file = yaml("router_settings:\n  routing_strategy: fastest\n");
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("router_settings.routing_strategy"), "{error}");
    assert!(error.contains("simple-shuffle"), "{error}");
}

#[test]
fn trusted_proxies_accept_comma_separated_env_and_reject_garbage() {
    let settings = load(None, &[("FLOWGATE__PROXY__TRUSTED_PROXIES", "10.0.0.0/8,::1")]).unwrap();
    let trusted: Vec<String> = settings.proxy.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(trusted, vec!["10.0.0.0/8", "::1"]);
    let error = load(None, &[("FLOWGATE__PROXY__TRUSTED_PROXIES", "10.0.0.0/99")]).unwrap_err().to_string();
    assert!(error.contains("proxy.trusted_proxies[0]"), "{error}");
}

#[test]
fn trusted_proxies_are_parsed_once_and_a_bad_one_in_the_file_names_its_index() {
    let file = yaml("proxy:\n  trusted_proxies: [\"172.16.0.0/12\", \"fd00::/8\", \"2001:db8::1\"]\n");
    let settings = load(Some(&file), &[]).unwrap();
    let parsed: Vec<(std::net::IpAddr, u8)> =
        settings.proxy.trusted_proxies.iter().map(|c| (c.addr(), c.prefix_len())).collect();
    assert_eq!(
        parsed,
        vec![
            ("172.16.0.0".parse().unwrap(), 12),
            ("fd00::".parse().unwrap(), 8),
            ("2001:db8::1".parse().unwrap(), 128)
        ]
    );
    let file = yaml("proxy:\n  trusted_proxies: [\"10.0.0.1\", \"caddy\"]\n");
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("proxy.trusted_proxies[1]") && error.contains("caddy"), "{error}");
}

#[test]
fn lengths_of_time_are_parsed_once_and_bad_ones_name_the_field() {
    let file = yaml(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/x\n      timeout: 2.5\nrouter_settings:\n  cooldown_time: 0\n",
    );
    let settings = load(Some(&file), &[("FLOWGATE__ROUTER_SETTINGS__TIMEOUT", "45")]).unwrap();
    assert_eq!(
        settings.model_list[0].litellm_params.timeout.unwrap().duration(),
        std::time::Duration::from_millis(2500)
    );
    assert_eq!(settings.router_settings.timeout.duration(), std::time::Duration::from_secs(45));
    assert!(settings.router_settings.cooldown_time.is_zero(), "a cooldown of 0 is allowed");
    assert_eq!(load(None, &[]).unwrap().router_settings.cooldown_time, Seconds::from_secs(30));

    for (yaml_text, field) in [
        ("router_settings:\n  cooldown_time: -1\n", "router_settings.cooldown_time"),
        // Too long for a Duration: refused here instead of panicking where it is used.
        ("router_settings:\n  timeout: 1e30\n", "router_settings.timeout"),
        ("router_settings:\n  timeout: 0\n", "router_settings.timeout"),
        (
            "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/x\n      timeout: -3\n",
            "model_list[0].litellm_params.timeout",
        ),
    ] {
        let file = yaml(yaml_text);
        let error = load(Some(&file), &[]).unwrap_err().to_string();
        assert!(error.contains(field), "{yaml_text}: {error}");
    }
}

#[test]
fn the_documented_reference_configuration_loads() {
    let doc = include_str!("../../../../docs/configuration.md");
    let start = doc.find("```yaml\nserver:").expect("reference block") + "```yaml\n".len();
    let end = start + doc[start..].find("```").expect("end of block");
    let file = yaml(&doc[start..end]);
    let settings =
        load(Some(&file), &[("OPENAI_API_KEY", "k1"), ("ANTHROPIC_API_KEY", "k2"), ("AZURE_API_KEY", "k3")]).unwrap();
    assert_eq!(settings.model_list.len(), 6);
    assert_eq!(settings.model_list[1].litellm_params.api, Some(crate::settings::UpstreamApi::Responses));
    let defaults = load(None, &[]).unwrap();
    assert_eq!(settings.responses.retention_hours, defaults.responses.retention_hours);
    assert_eq!(settings.proxy.max_body_bytes, defaults.proxy.max_body_bytes, "the reference shows the defaults");
    assert_eq!(settings.server.shutdown_grace_secs, defaults.server.shutdown_grace_secs);
    assert_eq!(settings.redis.prefix, defaults.redis.prefix);
    assert_eq!(settings.worker.port, defaults.worker.port);
    assert_eq!(settings.worker.alerts.budget_thresholds, defaults.worker.alerts.budget_thresholds);
    for (name, _) in SEED_ENV {
        assert!(doc.contains(name), "{name} is documented");
    }
}

#[test]
fn services_bind_loopback_unless_told_otherwise() {
    assert_eq!(load(None, &[]).unwrap().server.host, "127.0.0.1");
    assert_eq!(load(None, &[("FLOWGATE__SERVER__HOST", "0.0.0.0")]).unwrap().server.host, "0.0.0.0");
}

#[test]
fn the_internal_token_is_read_checked_and_never_shown() {
    let settings = load(None, &[("FLOWGATE__SECURITY__INTERNAL_TOKEN", "internal-token-0123456789")]).unwrap();
    let token = settings.security.internal_token.as_ref().unwrap();
    assert_eq!(token.expose_secret(), "internal-token-0123456789");
    assert!(!format!("{settings:?}").contains("internal-token-0123456789"));
    assert!(load(None, &[]).unwrap().security.internal_token.is_none());
    for bad in ["", "too-short", "has spaces in the middle of it", "nön-ascii-0123456789"] {
        let error = load(None, &[("FLOWGATE__SECURITY__INTERNAL_TOKEN", bad)]).unwrap_err().to_string();
        assert!(error.contains("security.internal_token"), "{bad:?}: {error}");
        assert!(bad.is_empty() || !error.contains(bad), "the token is not echoed: {error}");
    }
    let file = yaml("security:\n  internal_token: 12345\n");
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("security.internal_token"), "{error}");
}

#[test]
fn the_edge_token_is_read_checked_and_never_shown() {
    let settings = load(None, &[("FLOWGATE__PROXY__EDGE_TOKEN", "edge-token-0123456789")]).unwrap();
    assert_eq!(settings.proxy.edge_token.as_ref().unwrap().expose_secret(), "edge-token-0123456789");
    assert!(!format!("{settings:?}").contains("edge-token-0123456789"));
    assert!(load(None, &[]).unwrap().proxy.edge_token().is_none());
    let empty = load(None, &[("FLOWGATE__PROXY__EDGE_TOKEN", "")]).unwrap();
    assert!(empty.proxy.edge_token().is_none(), "empty is unset");
    for bad in ["short", "has spaces in the middle of it"] {
        let error = load(None, &[("FLOWGATE__PROXY__EDGE_TOKEN", bad)]).unwrap_err().to_string();
        assert!(error.contains("proxy.edge_token") && !error.contains(bad), "{bad:?}: {error}");
    }
}

#[test]
fn request_and_budget_limits_default_and_load_and_bad_ones_name_the_field() {
    let defaults = load(None, &[]).unwrap();
    assert_eq!(defaults.limits.max_n, 16);
    assert_eq!(defaults.budgets.unpriced, crate::settings::UnpricedModels::Deny);
    let file = yaml("limits:\n  max_n: 4\nbudgets:\n  unpriced: allow\n");
    let settings = load(Some(&file), &[]).unwrap();
    assert_eq!(settings.limits.max_n, 4);
    assert_eq!(settings.budgets.unpriced, crate::settings::UnpricedModels::Allow);
    let env = load(None, &[("FLOWGATE__BUDGETS__UNPRICED", "allow")]).unwrap();
    assert_eq!(env.budgets.unpriced, crate::settings::UnpricedModels::Allow);
    let error = load(Some(&yaml("budgets:\n  unpriced: maybe\n")), &[]).unwrap_err().to_string();
    assert!(error.contains("budgets.unpriced"), "{error}");
    let error = load(Some(&yaml("limits:\n  max_n: 0\n")), &[]).unwrap_err().to_string();
    assert!(error.contains("limits.max_n"), "{error}");
}

#[test]
fn api_responses_is_for_openai_azure_and_mock_deployments() {
    let file = yaml("model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/x\n      api: responses\n");
    let settings = load(Some(&file), &[]).unwrap();
    assert_eq!(settings.model_list[0].litellm_params.api, Some(crate::settings::UpstreamApi::Responses));
    let file =
        yaml("model_list:\n  - model_name: a\n    litellm_params:\n      model: anthropic/x\n      api: responses\n");
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("model_list[0].litellm_params.api"), "{error}");
    let file = yaml("model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/x\n      api: soap\n");
    assert!(load(Some(&file), &[]).unwrap_err().to_string().contains("api"));
}

/// The LiteLLM example configs of `crates/flowgate/tests/fixtures/litellm`.
fn fixture(name: &str) -> Option<tempfile_path::TempYaml> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../flowgate/tests/fixtures/litellm").join(name);
    Some(yaml(&std::fs::read_to_string(path).unwrap()))
}

const FIXTURE_ENV: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "sk-openai"),
    ("OPENAI_API_BASE", "http://127.0.0.1:9/v1"),
    ("ANTHROPIC_API_KEY", "sk-ant"),
    ("ANTHROPIC_API_KEY_BACKUP", "sk-ant-2"),
    ("GROQ_API_KEY", "gsk"),
    ("TOGETHERAI_API_KEY", "tgk"),
    ("GEMINI_API_KEY", "gem"),
    ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
    ("AWS_SECRET_ACCESS_KEY", "secret"),
    ("AWS_SESSION_TOKEN", "token"),
    ("AWS_REGION_NAME", "eu-central-1"),
    ("OPENROUTER_API_KEY", "or"),
    ("MISTRAL_API_KEY", "mi"),
    ("DEEPSEEK_API_KEY", "ds"),
    ("COMPANY_KEY", "co"),
    ("LITELLM_MASTER_KEY", "sk-master-1234"),
    ("DATABASE_URL", "sqlite://flowgate-test.db"),
    ("REDIS_HOST", "127.0.0.1"),
    ("REDIS_PORT", "6379"),
    ("REDIS_PASSWORD", "pw"),
];

#[test]
fn every_litellm_example_config_loads() {
    for name in ["quickstart.yaml", "load_balancing.yaml", "providers.yaml", "all_settings.yaml"] {
        let file = fixture(name);
        let settings = load(file.as_ref(), FIXTURE_ENV).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!settings.model_list.is_empty(), "{name}");
        assert!(settings.describe().contains("models:"), "{name}");
    }
}

#[test]
fn litellm_params_request_parameters_become_defaults_and_unknown_ones_are_reported() {
    let file = fixture("quickstart.yaml");
    let settings = load(file.as_ref(), &[("OPENAI_API_KEY", "sk-o"), ("LITELLM_MASTER_KEY", "sk-m")]).unwrap();
    let mini = &settings.model_list[2];
    assert_eq!(mini.litellm_params.provider().unwrap(), (Provider::OpenAi, "gpt-4o-mini"), "a bare name");
    assert_eq!(mini.litellm_params.request_defaults.get("temperature"), Some(&serde_json::json!(0.2)));
    assert_eq!(mini.litellm_params.request_defaults.get("max_tokens"), Some(&serde_json::json!(512)));
    assert_eq!(mini.litellm_params.organization.as_deref(), Some("org-example"));
    // environment_variables are applied before os.environ/ is read.
    let eu = settings.model_list[0].litellm_params.api_key.as_ref().unwrap();
    assert_eq!(eu.expose_secret(), "eu-key-from-config");
    // general_settings.master_key is the admin key; litellm_settings map onto the router.
    assert_eq!(settings.security.admin_api_key.as_ref().unwrap().expose_secret(), "sk-m");
    assert_eq!(settings.router_settings.num_retries, 3);
    assert_eq!(settings.router_settings.timeout, Seconds::from_secs(10));
    assert_eq!(settings.router_settings.context_window_fallbacks.len(), 1);
    let ignored: Vec<&str> = settings.compat.ignored.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(ignored, vec!["general_settings.alerting"]);
    assert!(settings.compat.mapped.iter().any(|m| m.from == "litellm_settings.drop_params"));
}

#[test]
fn flowgates_own_setting_wins_over_the_litellm_one() {
    let file = yaml("security:\n  admin_api_key: mine\ngeneral_settings:\n  master_key: theirs\n");
    let settings = load(Some(&file), &[]).unwrap();
    assert_eq!(settings.security.admin_api_key.as_ref().unwrap().expose_secret(), "mine");
    // The seeds' environment names still win over both.
    let settings = load(Some(&file), &[("ADMIN_API_KEY", "from-env")]).unwrap();
    assert_eq!(settings.security.admin_api_key.as_ref().unwrap().expose_secret(), "from-env");
}

#[test]
fn router_settings_limits_aliases_and_policies_are_read() {
    let file = fixture("load_balancing.yaml");
    let settings = load(file.as_ref(), FIXTURE_ENV).unwrap();
    let router = &settings.router_settings;
    assert_eq!(router.routing_strategy, RoutingStrategy::UsageBasedRouting);
    assert_eq!(router.retry_policy.0.get(crate::settings::FailureClass::RateLimit), Some(3));
    assert_eq!(router.retry_policy.0.get(crate::settings::FailureClass::BadRequest), Some(0));
    assert_eq!(router.allowed_fails_policy.0.get(crate::settings::FailureClass::ContentPolicyViolation), Some(1000));
    assert_eq!(router.model_group_alias["claude-3-haiku"].model(), "claude");
    assert!(router.model_group_alias["hidden-small"].hidden());
    assert!(router.enable_pre_call_checks);
    assert_eq!(settings.redis.url.as_ref().unwrap().expose_secret(), "redis://127.0.0.1:6379");
    let backup = &settings.model_list[1];
    assert_eq!((backup.rpm(), backup.tpm()), (Some(50), Some(100_000)), "entry-level rpm / tpm");
    assert_eq!(backup.litellm_params.provider().unwrap().0, Provider::Anthropic);
    assert_eq!(backup.model_info.id.as_deref(), Some("claude-backup"));
    let small = &settings.model_list[2];
    assert_eq!(small.input_cost_per_token(), Some(0.000_000_05), "prices from model_info");
    assert_eq!(small.model_info.context_window(), Some(8192));
    let ignored: Vec<&str> = settings.compat.ignored.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(ignored, vec!["router_settings.routing_strategy_args"]);
}

#[test]
fn provider_presets_have_their_default_base_and_key_variables() {
    let file = fixture("providers.yaml");
    let settings = load(file.as_ref(), FIXTURE_ENV).unwrap();
    let base = |name: &str| {
        let entry = settings.model_list.iter().find(|m| m.model_name == name).unwrap();
        (entry.litellm_params.provider().unwrap().0, entry.litellm_params.base_url().unwrap())
    };
    assert_eq!(base("gemini-flash"), (Provider::Gemini, "https://generativelanguage.googleapis.com".to_owned()));
    assert_eq!(base("gemini-pro").0, Provider::Gemini);
    assert_eq!(
        base("bedrock-claude"),
        (Provider::Bedrock, "https://bedrock-runtime.us-west-2.amazonaws.com".to_owned())
    );
    assert_eq!(
        base("bedrock-nova"),
        (Provider::Bedrock, "https://bedrock-runtime.eu-central-1.amazonaws.com".to_owned())
    );
    assert_eq!(base("openrouter-llama").1, "https://openrouter.ai/api/v1");
    assert_eq!(base("local-llama").1, "http://127.0.0.1:11434/v1");
    assert_eq!(base("groq-llama").1, "https://api.groq.com/openai/v1");
    assert_eq!(base("together").1, "https://api.together.xyz/v1");
    assert_eq!(base("mistral-small").1, "https://api.mistral.ai/v1");
    assert_eq!(base("deepseek-chat").1, "https://api.deepseek.com/v1");
    assert_eq!(base("my-company-model"), (Provider::OpenAi, "http://127.0.0.1:8001/v1".to_owned()));
    let nova = settings.model_list.iter().find(|m| m.model_name == "bedrock-nova").unwrap();
    assert_eq!(nova.litellm_params.provider().unwrap().1, "us.amazon.nova-pro-v1:0", "bedrock/converse/ names the API");
    let company = settings.model_list.iter().find(|m| m.model_name == "my-company-model").unwrap();
    assert_eq!(company.litellm_params.request_defaults.get("stop"), Some(&serde_json::json!(["<|end|>"])));
    let ignored: Vec<&str> = settings.compat.ignored.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        ignored,
        vec!["model_list[11].litellm_params.drop_params", "model_list[11].litellm_params.mock_testing_fallbacks"]
    );
    // Keys not written in the file come from the provider's usual variable.
    let settings = load(
        Some(&yaml("model_list:\n  - {model_name: g, litellm_params: {model: gemini/gemini-2.0-flash}}\n")),
        &[("GEMINI_API_KEY", "from-env")],
    )
    .unwrap();
    assert_eq!(settings.model_list[0].litellm_params.api_key.as_ref().unwrap().expose_secret(), "from-env");
}

#[test]
fn every_unknown_litellm_field_is_reported_once_with_its_path_and_nothing_is_refused() {
    let file = fixture("all_settings.yaml");
    let settings = load(file.as_ref(), FIXTURE_ENV).unwrap();
    let ignored: Vec<String> = settings
        .compat
        .ignored
        .iter()
        .map(|i| match &i.value {
            Some(v) => format!("{} ({v})", i.path),
            None => i.path.clone(),
        })
        .collect();
    for expected in [
        "guardrails",
        "callback_settings",
        "litellm_settings.callbacks[1] (langfuse)",
        "litellm_settings.success_callback[0] (langfuse)",
        "litellm_settings.failure_callback[0] (sentry)",
        "litellm_settings.turn_off_message_logging",
        "litellm_settings.cache_params.supported_call_types",
        "litellm_settings.max_budget",
        "general_settings.alerting",
        "general_settings.store_model_in_db",
    ] {
        assert!(ignored.iter().any(|i| i == expected), "{expected} not in {ignored:?}");
    }
    let mut unique = ignored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ignored.len(), "each once: {ignored:?}");
    assert!(settings.cache.enabled);
    assert_eq!(settings.cache.ttl_secs, 600);
    assert_eq!(settings.redis.prefix, "litellm.caching:");
    assert_eq!(settings.telemetry.log_format, LogFormat::Json);
    assert_eq!(settings.database.max_connections, 20);
    assert_eq!(settings.router_settings.timeout, Seconds::from_secs(45));
    // A field Flowgate owns stays strict.
    let error = load(Some(&yaml("proxy:\n  prot: 1\n")), &[]).unwrap_err().to_string();
    assert!(error.contains("prot"), "{error}");
}

#[test]
fn os_environ_works_in_every_string_and_a_missing_one_names_where_it_was_written() {
    let file = yaml(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_base: os.environ/BASE\n      extra_headers: {X-Team: os.environ/TEAM}\n",
    );
    let settings = load(Some(&file), &[("BASE", "http://127.0.0.1:1/v1"), ("TEAM", "blue")]).unwrap();
    assert_eq!(settings.model_list[0].litellm_params.base_url().unwrap(), "http://127.0.0.1:1/v1");
    assert_eq!(settings.model_list[0].litellm_params.extra_headers["X-Team"], "blue");
    let file = yaml("general_settings:\n  master_key: os.environ/NOT_SET_ANYWHERE\n");
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("general_settings.master_key") && error.contains("NOT_SET_ANYWHERE"), "{error}");
    // An ignored field's reference is never read.
    let file = yaml("general_settings:\n  alerting_webhook: os.environ/NOT_SET_ANYWHERE\n");
    assert!(load(Some(&file), &[]).is_ok());
}

#[test]
fn the_litellm_field_lists_match_the_structs() {
    // serde lists the fields a struct takes in its unknown-field error.
    let expected = |error: String| -> Vec<String> {
        let list = error.split("expected one of ").nth(1).unwrap_or_default();
        list.split(", ").map(|f| f.trim_matches(|c: char| c == '`' || c.is_whitespace()).to_owned()).collect()
    };
    let probe = serde_json::json!({"model": "x", "no_such_field_probe": 1});
    let error = serde_json::from_value::<ModelParams>(probe).unwrap_err().to_string();
    let mut fields = expected(error);
    fields.sort();
    let mut listed: Vec<String> = super::litellm::PARAM_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(fields, listed);
    let error = serde_json::from_value::<RouterSettings>(serde_json::json!({"no_such_field_probe": 1}))
        .unwrap_err()
        .to_string();
    let mut fields = expected(error);
    fields.sort();
    let mut listed: Vec<String> = super::litellm::ROUTER_FIELDS.iter().map(|f| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(fields, listed);
    for name in super::litellm::REQUEST_PARAMS {
        assert!(!super::litellm::PARAM_FIELDS.contains(name), "{name}");
    }
}

#[test]
fn vertex_and_bedrock_settings_come_from_the_usual_variables_when_the_file_names_none() {
    let file = yaml(
        "model_list:
  - {model_name: v, litellm_params: {model: vertex_ai/gemini-2.0-flash}}
  - {model_name: b, litellm_params: {model: bedrock/amazon.nova-lite-v1:0}}
",
    );
    let env = [
        ("GOOGLE_APPLICATION_CREDENTIALS", "/secrets/sa.json"),
        ("VERTEXAI_PROJECT", "proj"),
        ("VERTEXAI_LOCATION", "europe-west4"),
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION_NAME", "ap-northeast-1"),
    ];
    let settings = load(Some(&file), &env).unwrap();
    let vertex = &settings.model_list[0].litellm_params;
    assert_eq!(vertex.vertex_credentials.as_ref().unwrap().expose_secret(), "/secrets/sa.json");
    assert_eq!(vertex.base_url().unwrap(), "https://europe-west4-aiplatform.googleapis.com");
    let bedrock = &settings.model_list[1].litellm_params;
    assert_eq!(bedrock.base_url().unwrap(), "https://bedrock-runtime.ap-northeast-1.amazonaws.com");
    // Without them, the error names the missing setting.
    let error = load(Some(&file), &[]).unwrap_err().to_string();
    assert!(error.contains("model_list[0].litellm_params.vertex_project"), "{error}");
}

#[test]
fn a_litellm_field_of_the_wrong_shape_is_named_as_written() {
    for (text, field) in [
        ("general_settings: {database_url: []}", "general_settings.database_url"),
        ("litellm_settings: {request_timeout: {a: 1}}", "litellm_settings.request_timeout"),
        ("litellm_settings: {cache_params: {ttl: [1]}}", "litellm_settings.cache_params.ttl"),
    ] {
        let file = yaml(text);
        let error = load(Some(&file), &[]).unwrap_err().to_string();
        assert!(error.contains(field), "{text}: {error}");
    }
}

#[test]
fn worker_settings_are_checked_at_start_naming_the_field() {
    for (text, field) in [
        ("worker: {interval_secs: 0}\n", "worker.interval_secs"),
        ("worker: {alerts: {budget_thresholds: [50, 0]}}\n", "worker.alerts.budget_thresholds"),
        ("worker: {alerts: {webhooks: [{name: a, url: 'ftp://x'}]}}\n", "worker.alerts.webhooks[0].url"),
        (
            "worker: {alerts: {webhooks: [{name: a, url: 'http://x'}, {name: a, url: 'http://y'}]}}\n",
            "worker.alerts.webhooks[1].name",
        ),
        ("worker: {alerts: {webhooks: [{name: a, url: 'http://x', format: teams}]}}\n", "format"),
    ] {
        let file = yaml(text);
        let error = load(Some(&file), &[]).unwrap_err().to_string();
        assert!(error.contains(field), "{text}: {error}");
    }
    let file = yaml("worker: {alerts: {webhooks: [{name: ops, url: 'https://h/x', secret: s, format: slack}]}}\n");
    let settings = load(Some(&file), &[]).unwrap();
    assert_eq!(settings.worker.alerts.webhooks[0].format, crate::settings::WebhookFormat::Slack);
}
