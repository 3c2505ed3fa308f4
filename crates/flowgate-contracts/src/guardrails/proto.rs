//! The typed proto form of a guardrail policy (`flowgate.keys.v1.GuardrailPolicy`): what the
//! api-server sends with a resolved key, and what the proxy turns back into a policy once, when
//! it resolves the key.

use flowgate_proto::keys::{self as pb, config_value::Kind, virtual_key::Guardrails};
use serde_json::{Map, Number, Value};

use super::{GuardrailPolicy, PolicyError};

/// `policy` in its proto form.
pub fn to_proto(policy: &GuardrailPolicy) -> pb::GuardrailPolicy {
    pb::GuardrailPolicy {
        mandatory_guardrails: policy.mandatory_guardrails.clone(),
        optional_guardrails: policy.optional_guardrails.clone(),
        forbidden_guardrails: policy.forbidden_guardrails.clone(),
        guardrail_config_overrides: policy
            .guardrail_config_overrides
            .iter()
            .filter_map(|(name, settings)| Some((name.clone(), object_to_proto(settings.as_object()?))))
            .collect(),
        policy_id: policy.policy_id.clone(),
    }
}

/// The `guardrails` of a resolved key from its stored policy and its tenant's stored defaults
/// (JSON text): both, typed, or why they cannot be read. Never an empty policy in place of an
/// unreadable one.
pub fn key_guardrails(key_json: &str, tenant_json: &str) -> Guardrails {
    let parsed = GuardrailPolicy::parse(key_json)
        .map_err(|error| format!("key policy: {error}"))
        .and_then(|key| Ok((key, GuardrailPolicy::parse(tenant_json).map_err(|e| format!("tenant defaults: {e}"))?)));
    match parsed {
        Ok((key, tenant)) => Guardrails::GuardrailPolicies(pb::KeyGuardrails {
            key: Some(to_proto(&key)),
            tenant_defaults: Some(to_proto(&tenant)),
        }),
        Err(message) => Guardrails::GuardrailPolicyError(message),
    }
}

impl GuardrailPolicy {
    /// The policy a resolved key's requests run under: the key's over its tenant's defaults.
    /// An error when the api-server could not read them, or sent none (an older api-server):
    /// the caller must refuse the key's requests.
    pub fn from_key_guardrails(guardrails: Option<&Guardrails>) -> Result<Self, PolicyError> {
        match guardrails {
            Some(Guardrails::GuardrailPolicies(policies)) => {
                let key = policies.key.clone().map(Self::try_from).transpose()?.unwrap_or_default();
                let tenant = policies.tenant_defaults.clone().map(Self::try_from).transpose()?.unwrap_or_default();
                Ok(key.over(tenant))
            }
            Some(Guardrails::GuardrailPolicyError(message)) => Err(PolicyError::new("", message.clone())),
            None => Err(PolicyError::new("", "the key service sent no guardrail policy")),
        }
    }
}

impl TryFrom<pb::GuardrailPolicy> for GuardrailPolicy {
    type Error = PolicyError;

    fn try_from(proto: pb::GuardrailPolicy) -> Result<Self, PolicyError> {
        let mut overrides = std::collections::BTreeMap::new();
        for (name, settings) in proto.guardrail_config_overrides {
            let value = object_from_proto(settings)
                .map_err(|message| PolicyError::new(format!("guardrail_config_overrides.{name}"), message))?;
            overrides.insert(name, value);
        }
        let policy = Self {
            mandatory_guardrails: proto.mandatory_guardrails,
            optional_guardrails: proto.optional_guardrails,
            forbidden_guardrails: proto.forbidden_guardrails,
            guardrail_config_overrides: overrides,
            policy_id: proto.policy_id,
        };
        policy.validate()?;
        Ok(policy)
    }
}

fn object_to_proto(object: &Map<String, Value>) -> pb::ConfigObject {
    pb::ConfigObject { fields: object.iter().map(|(k, v)| (k.clone(), value_to_proto(v))).collect() }
}

fn value_to_proto(value: &Value) -> pb::ConfigValue {
    let kind = match value {
        Value::Null => Kind::NullValue(true),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Kind::IntValue(i),
            (None, Some(u), _) => Kind::UintValue(u),
            (None, None, f) => Kind::FloatValue(f.unwrap_or_default()),
        },
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(pb::ConfigList { values: items.iter().map(value_to_proto).collect() }),
        Value::Object(object) => Kind::ObjectValue(object_to_proto(object)),
    };
    pb::ConfigValue { kind: Some(kind) }
}

fn object_from_proto(object: pb::ConfigObject) -> Result<Value, String> {
    let mut out = Map::new();
    for (key, value) in object.fields {
        out.insert(key, value_from_proto(value)?);
    }
    Ok(Value::Object(out))
}

fn value_from_proto(value: pb::ConfigValue) -> Result<Value, String> {
    Ok(match value.kind.ok_or("a setting without a value")? {
        Kind::NullValue(_) => Value::Null,
        Kind::BoolValue(b) => Value::Bool(b),
        Kind::IntValue(i) => Value::Number(i.into()),
        Kind::UintValue(u) => Value::Number(u.into()),
        Kind::FloatValue(f) => Value::Number(Number::from_f64(f).ok_or("a number that is not finite")?),
        Kind::StringValue(s) => Value::String(s),
        Kind::ListValue(list) => Value::Array(list.values.into_iter().map(value_from_proto).collect::<Result<_, _>>()?),
        Kind::ObjectValue(object) => object_from_proto(object)?,
    })
}
