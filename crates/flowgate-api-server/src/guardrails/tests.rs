//! Validation of guardrail documents: names, kinds, stages, `runtime_config` against the kind's
//! schema, HTTP guardrail settings, patches.

use flowgate_contracts::GuardrailStage as Stage;
use secrecy::ExposeSecret;

use super::model::{
    CreateGuardrail, DEFAULT_HTTP_TIMEOUT_MS, GuardrailFields, PatchGuardrail, StoredKind, TokenChange, validate_stages,
};
use super::schema::{builtins, check_schema, kind_schema};
use crate::error::ApiError;
use crate::extract::parse_json;
use crate::fields::{Change, validate_kebab};

fn create(body: &str) -> Result<GuardrailFields, ApiError> {
    parse_json::<CreateGuardrail>(body.as_bytes())?.validate()
}

fn error(body: &str) -> String {
    create(body).unwrap_err().to_string()
}

#[test]
fn builtins_satisfy_their_own_schemas() {
    for builtin in builtins() {
        let schema = kind_schema(builtin.kind).unwrap();
        check_schema(&schema, &builtin.runtime_config, "runtime_config").unwrap();
        validate_kebab("name", builtin.name).unwrap();
        validate_stages(builtin.kind, builtin.stages).unwrap();
    }
}

#[test]
fn names_are_kebab_case() {
    for good in ["a", "pii-redact", "x1-y2-z3"] {
        validate_kebab("name", good).unwrap();
    }
    for bad in ["", "-a", "a-", "a--b", "A", "a_b", "a b", "é", &"a".repeat(65)] {
        assert!(validate_kebab("name", bad).is_err(), "{bad}");
    }
}

#[test]
fn runtime_config_is_checked_against_the_kind_schema() {
    let ok = create(
        r#"{"name": "pii-strict", "kind": "pii", "stages": ["pre_call", "during_call"],
                       "runtime_config": {"entities": ["email", "iban"], "restore_output": false}}"#,
    )
    .unwrap();
    assert_eq!(ok.stages, [Stage::PreCall, Stage::DuringCall]);
    assert!(ok.config_schema.contains("restore_output"));
    for (body, needle) in [
        (
            r#"{"name": "p", "kind": "pii", "runtime_config": {"entities": ["dna"]}}"#,
            "`runtime_config.entities[0]` must be one of",
        ),
        (
            r#"{"name": "p", "kind": "pii", "runtime_config": {"entities": ["email", "email"]}}"#,
            "`runtime_config.entities[1]` repeats",
        ),
        (
            r#"{"name": "p", "kind": "pii", "runtime_config": {"restore_output": "yes"}}"#,
            "must be boolean, not a string",
        ),
        (
            r#"{"name": "p", "kind": "pii", "runtime_config": {"colour": 1}}"#,
            "`runtime_config.colour` is not a setting",
        ),
        (r#"{"name": "p", "kind": "prompt_injection", "runtime_config": {"threshold": 1.5}}"#, "must be at most 1"),
        (
            r#"{"name": "p", "kind": "blocked_terms", "runtime_config": {"terms": [""]}}"#,
            "`runtime_config.terms[0]` is too short",
        ),
        (
            r#"{"name": "p", "kind": "secrets", "runtime_config": {"action": "explode"}}"#,
            "`runtime_config.action` must be one of",
        ),
        (r#"{"name": "p", "kind": "pii", "config_schema": {}}"#, "`config_schema` is defined by Flowgate"),
        (r#"{"name": "p", "kind": "pii", "stages": []}"#, "`stages` must name"),
        (r#"{"name": "p", "kind": "pii", "stages": ["pre_call", "pre_call"]}"#, "`stages[1]` repeats"),
        (r#"{"name": "p", "kind": "pii", "stages": ["later"]}"#, "unknown variant `later`"),
        (r#"{"name": "p", "kind": "magic"}"#, "unknown variant `magic`"),
        (r#"{"name": "P", "kind": "pii"}"#, "`name` must be kebab-case"),
        (r#"{"name": "p", "kind": "pii", "http_url": "http://x"}"#, "`http_url` applies only to http"),
    ] {
        let text = error(body);
        assert!(text.contains(needle), "{body}: {text}");
    }
}

#[test]
fn http_guardrails_need_a_url_and_keep_the_token_out_of_errors() {
    let fields = create(
        r#"{"name": "acme-dlp", "kind": "http", "http_url": "https://dlp.example.com/check",
            "bearer_token": "tok_123", "stages": ["pre_call", "post_call"], "config_schema": {"type": "object"}}"#,
    )
    .unwrap();
    assert_eq!(fields.http_timeout_ms, Some(DEFAULT_HTTP_TIMEOUT_MS));
    assert_eq!(fields.bearer_token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(), Some("tok_123"));
    assert!(!format!("{fields:?}").contains("tok_123"));
    for (body, needle) in [
        (r#"{"name": "h", "kind": "http"}"#, "`http_url` is required"),
        (r#"{"name": "h", "kind": "http", "http_url": "ftp://x"}"#, "http:// or https://"),
        (r#"{"name": "h", "kind": "http", "http_url": "https://u:p@x/"}"#, "must not contain credentials"),
        (r#"{"name": "h", "kind": "http", "http_url": "not a url"}"#, "is not a URL"),
        (r#"{"name": "h", "kind": "http", "http_url": "http://x", "http_timeout_ms": 0}"#, "`http_timeout_ms`"),
        (
            r#"{"name": "h", "kind": "http", "http_url": "http://x", "stages": ["during_call"]}"#,
            "not supported by http",
        ),
    ] {
        let text = error(body);
        assert!(text.contains(needle), "{body}: {text}");
    }
    let text = error(r#"{"name": "h", "kind": "http", "http_url": "http://x", "bearer_token": "has space secret"}"#);
    assert!(text.contains("`bearer_token`") && !text.contains("secret"), "{text}");
}

#[test]
fn patches_keep_name_and_kind_and_reset_on_null() {
    let patch = |body: &str, kind: &str| {
        parse_json::<PatchGuardrail>(body.as_bytes()).unwrap().changes(&StoredKind::from_name(kind.to_owned()))
    };
    let (changes, token) = patch(r#"{"default_on": true, "fail_open": null, "stages": null}"#, "pii").unwrap();
    assert_eq!(
        changes,
        vec![
            Change::Text("stages", r#"["pre_call"]"#.into()),
            Change::Int("default_on", Some(1)),
            Change::Int("fail_open", Some(0)),
        ]
    );
    assert!(matches!(token, TokenChange::Keep));
    assert!(matches!(patch(r#"{"bearer_token": null}"#, "http").unwrap().1, TokenChange::Clear));
    assert!(matches!(patch(r#"{"bearer_token": "t2"}"#, "http").unwrap().1, TokenChange::Set(_)));
    for (body, kind, needle) in [
        (r#"{"name": "x"}"#, "pii", "`name` cannot be changed"),
        (r#"{"kind": "http"}"#, "pii", "`kind` cannot be changed"),
        (r#"{"bearer_token": "t"}"#, "pii", "applies only to http"),
        (r#"{"http_url": null}"#, "http", "cannot be null"),
        (r#"{"runtime_config": {"threshold": -1}}"#, "prompt_injection", "must be at least 0"),
    ] {
        let Err(error) = patch(body, kind) else { panic!("{body} accepted") };
        assert!(error.to_string().contains(needle), "{body}: {error}");
    }
}
