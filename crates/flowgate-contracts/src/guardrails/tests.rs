use flowgate_proto::keys::virtual_key::Guardrails;
use serde_json::json;

use super::*;

#[test]
fn kinds_and_stages_keep_their_api_names() {
    for kind in GuardrailKind::ALL {
        let name = serde_json::to_value(kind).unwrap();
        assert_eq!(name, kind.as_str());
        assert_eq!(GuardrailKind::from_name(kind.as_str()), Some(kind));
    }
    assert_eq!(GuardrailKind::PromptInjection.as_str(), "prompt_injection");
    assert_eq!(
        GuardrailStage::ALL.map(GuardrailStage::as_str),
        ["pre_call", "post_call", "during_call"],
        "the proxy and the policy rules match on these names"
    );
    let error = serde_json::from_str::<GuardrailStage>("\"later\"").unwrap_err().to_string();
    assert!(error.contains("unknown variant `later`"), "{error}");
    assert!(!GuardrailKind::Http.supported_stages().contains(&GuardrailStage::DuringCall));
}

#[test]
fn key_policy_wins_over_tenant_defaults_field_by_field() {
    let policy = GuardrailPolicy::resolve(
        r#"{"mandatory_guardrails":["pii-redact"],"guardrail_config_overrides":{"pii-redact":{"restore_output":false}}}"#,
        r#"{"mandatory_guardrails":["secrets-detect"],"forbidden_guardrails":["blocked-terms"],"policy_id":"strict"}"#,
    )
    .unwrap();
    assert_eq!(policy.mandatory_guardrails, vec!["pii-redact"]);
    assert_eq!(policy.forbidden_guardrails, vec!["blocked-terms"]);
    assert_eq!(policy.policy_id.as_deref(), Some("strict"));
    assert_eq!(policy.guardrail_config_overrides["pii-redact"]["restore_output"], false);
    let empty = GuardrailPolicy::resolve("{}", "").unwrap();
    assert_eq!(empty, GuardrailPolicy::default());
}

#[test]
fn unreadable_policies_are_errors_not_empty_policies() {
    for (text, needle) in [
        ("not json", "expected ident"),
        ("[1]", "must be a JSON object"),
        (r#"{"mandatory_guardrails": "pii-redact"}"#, "`mandatory_guardrails` invalid type"),
        (r#"{"optional_guardrails": ["a", 3]}"#, "`optional_guardrails[1]` invalid type"),
        (r#"{"forbidden_guardrails": [" "]}"#, "`forbidden_guardrails[0]` must be a guardrail name"),
        (
            r#"{"guardrail_config_overrides": {"pii-redact": 5}}"#,
            "`guardrail_config_overrides.pii-redact` must be an object",
        ),
        (r#"{"policy_id": ""}"#, "`policy_id` must name a policy"),
    ] {
        let error = GuardrailPolicy::parse(text).unwrap_err().to_string();
        assert!(error.contains(needle), "{text}: {error}");
    }
    // Unknown fields are kept by the api-server and ignored here, as before.
    assert_eq!(GuardrailPolicy::parse(r#"{"pii": "redact"}"#).unwrap(), GuardrailPolicy::default());
}

#[test]
fn the_proto_form_round_trips_every_json_value() {
    let policy = GuardrailPolicy::parse(
        &json!({
            "mandatory_guardrails": ["pii-redact"],
            "optional_guardrails": ["blocked-terms"],
            "forbidden_guardrails": ["secrets-detect"],
            "guardrail_config_overrides": {"pii-redact": {
                "restore_output": false, "entities": ["email", "iban"], "max": 18_446_744_073_709_551_615_u64,
                "min": -3, "ratio": 0.25, "nothing": null, "nested": {"a": [true, {"b": "c"}]}
            }},
            "policy_id": "strict"
        })
        .to_string(),
    )
    .unwrap();
    let back = GuardrailPolicy::try_from(to_proto(&policy)).unwrap();
    assert_eq!(back, policy);
    assert_eq!(back.guardrail_config_overrides["pii-redact"]["max"], json!(u64::MAX));
}

#[test]
fn a_resolved_key_carries_its_policies_or_why_they_cannot_be_read() {
    let good = key_guardrails(r#"{"mandatory_guardrails":["pii-redact"]}"#, r#"{"policy_id":"strict"}"#);
    let policy = GuardrailPolicy::from_key_guardrails(Some(&good)).unwrap();
    assert_eq!((policy.mandatory_guardrails.len(), policy.policy_id.as_deref()), (1, Some("strict")));

    let bad = key_guardrails(r#"{"mandatory_guardrails":"pii-redact"}"#, "{}");
    let Guardrails::GuardrailPolicyError(message) = &bad else { panic!("an unreadable policy must be marked") };
    assert!(message.starts_with("key policy: "), "{message}");
    assert!(GuardrailPolicy::from_key_guardrails(Some(&bad)).is_err());
    let bad_tenant = key_guardrails("{}", "{oops");
    assert!(matches!(&bad_tenant, Guardrails::GuardrailPolicyError(m) if m.starts_with("tenant defaults: ")));
    assert!(GuardrailPolicy::from_key_guardrails(None).is_err(), "no policy at all is not an empty policy");

    let mut broken = to_proto(&GuardrailPolicy::default());
    broken.guardrail_config_overrides.insert(
        "pii-redact".into(),
        flowgate_proto::keys::ConfigObject {
            fields: [("x".to_owned(), flowgate_proto::keys::ConfigValue { kind: None })].into_iter().collect(),
        },
    );
    let error = GuardrailPolicy::try_from(broken).unwrap_err().to_string();
    assert!(error.contains("guardrail_config_overrides.pii-redact"), "{error}");
}
