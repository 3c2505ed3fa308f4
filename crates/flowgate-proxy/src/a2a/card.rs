//! Agent cards: where an agent's card says its JSON-RPC endpoint is, the card rewritten to point
//! at the gateway, and the gateway's own card. Both card generations are read: A2A 0.3 (`url`,
//! `preferredTransport`, `additionalInterfaces`, `security`) and 1.0 (`supportedInterfaces`,
//! `securityRequirements`).

use serde_json::{Map, Value, json};

/// The name of the security scheme the gateway's cards declare: the virtual key as a bearer token.
const SCHEME: &str = "flowgateVirtualKey";

fn is_jsonrpc(binding: Option<&Value>) -> bool {
    binding.and_then(Value::as_str).is_some_and(|b| b.eq_ignore_ascii_case("JSONRPC"))
}

/// The agent's JSON-RPC endpoint named by its card, resolved against the card's own URL.
pub(crate) fn endpoint(card: &Value, card_url: &reqwest::Url) -> Option<reqwest::Url> {
    let url = card
        .get("supportedInterfaces")
        .and_then(Value::as_array)
        .and_then(|interfaces| interfaces.iter().find(|i| is_jsonrpc(i.get("protocolBinding"))))
        .and_then(|i| i.get("url"))
        .or_else(|| {
            let preferred = card.get("preferredTransport");
            card.get("url").filter(|_| preferred.is_none() || is_jsonrpc(preferred))
        })
        .or_else(|| {
            card.get("additionalInterfaces")
                .and_then(Value::as_array)
                .and_then(|interfaces| interfaces.iter().find(|i| is_jsonrpc(i.get("transport"))))
                .and_then(|i| i.get("url"))
        })?
        .as_str()?;
    let resolved = card_url.join(url).ok()?;
    matches!(resolved.scheme(), "http" | "https").then_some(resolved)
}

/// `card` as the gateway serves it: its JSON-RPC interface at `gateway_url` (the only one the
/// gateway forwards), the virtual key as its security scheme, signatures removed (they no longer
/// match).
pub(crate) fn rewrite(card: &Value, gateway_url: &str) -> Value {
    let mut card = card.clone();
    let Some(object) = card.as_object_mut() else { return card };
    let modern = object.contains_key("supportedInterfaces");
    if modern {
        let version = object
            .get("supportedInterfaces")
            .and_then(Value::as_array)
            .and_then(|interfaces| interfaces.iter().find(|i| is_jsonrpc(i.get("protocolBinding"))))
            .and_then(|i| i.get("protocolVersion").cloned())
            .unwrap_or_else(|| json!("1.0"));
        object.insert(
            "supportedInterfaces".to_owned(),
            json!([{"url": gateway_url, "protocolBinding": "JSONRPC", "protocolVersion": version}]),
        );
    }
    // No other interface of the agent's is left to be found.
    object.remove("additionalInterfaces");
    if object.contains_key("url") || !modern {
        object.insert("url".to_owned(), json!(gateway_url));
        object.insert("preferredTransport".to_owned(), json!("JSONRPC"));
    }
    object.remove("signatures");
    if modern {
        object.remove("security");
        object.insert(
            "securitySchemes".to_owned(),
            json!({SCHEME: {"httpAuthSecurityScheme": {"scheme": "Bearer", "description": "A Flowgate virtual key"}}}),
        );
        object.insert("securityRequirements".to_owned(), json!([{"schemes": {SCHEME: {"list": []}}}]));
    } else {
        object.remove("securityRequirements");
        object.insert(
            "securitySchemes".to_owned(),
            json!({SCHEME: {"type": "http", "scheme": "bearer", "description": "A Flowgate virtual key"}}),
        );
        object.insert("security".to_owned(), json!([{SCHEME: []}]));
    }
    if let Some(Value::Array(skills)) = object.get_mut("skills") {
        for skill in skills.iter_mut().filter_map(Value::as_object_mut) {
            skill.remove("security");
            skill.remove("securityRequirements");
        }
    }
    card
}

/// One agent as the gateway's card lists it.
pub(crate) struct Listed<'a> {
    pub(crate) name: &'a str,
    pub(crate) description: Option<&'a str>,
}

/// The gateway's own card: what it is, and (for a caller with a key) each agent the key may reach
/// as a skill whose id is the agent's name, with its card's and endpoint's URLs under
/// `x-flowgate-agents`.
pub(crate) fn gateway(base_url: &str, agents: &[Listed<'_>]) -> Value {
    let skills: Vec<Value> = agents
        .iter()
        .map(|agent| {
            json!({
                "id": agent.name,
                "name": agent.name,
                "description": agent.description.unwrap_or("An A2A agent reached through this gateway"),
                "tags": ["a2a-agent"],
            })
        })
        .collect();
    let listed: Vec<Value> = agents
        .iter()
        .map(|agent| {
            json!({
                "name": agent.name,
                "url": format!("{base_url}/a2a/{}", agent.name),
                "card": format!("{base_url}/a2a/{}/.well-known/agent-card.json", agent.name),
            })
        })
        .collect();
    let mut card = Map::new();
    card.insert("name".to_owned(), json!("Flowgate"));
    card.insert(
        "description".to_owned(),
        json!(
            "An LLM, MCP and A2A gateway. Each agent it routes to is listed as a skill; its card is at \
             /a2a/{agent}/.well-known/agent-card.json and its JSON-RPC endpoint at /a2a/{agent}."
        ),
    );
    card.insert("version".to_owned(), json!(env!("CARGO_PKG_VERSION")));
    card.insert("protocolVersion".to_owned(), json!("0.3.0"));
    card.insert("url".to_owned(), json!(format!("{base_url}/a2a")));
    card.insert("capabilities".to_owned(), json!({"streaming": true, "pushNotifications": false}));
    card.insert("defaultInputModes".to_owned(), json!(["text/plain"]));
    card.insert("defaultOutputModes".to_owned(), json!(["text/plain"]));
    card.insert(
        "securitySchemes".to_owned(),
        json!({SCHEME: {"type": "http", "scheme": "bearer", "description": "A Flowgate virtual key"}}),
    );
    card.insert("security".to_owned(), json!([{SCHEME: []}]));
    card.insert("skills".to_owned(), Value::Array(skills));
    card.insert("x-flowgate-agents".to_owned(), Value::Array(listed));
    Value::Object(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    #[test]
    fn the_endpoint_is_found_in_either_generation_of_card() {
        let card_url = url("http://agent:9999/.well-known/agent-card.json");
        let modern = json!({"supportedInterfaces": [
            {"url": "http://agent:9999/grpc", "protocolBinding": "GRPC"},
            {"url": "http://agent:9999/rpc", "protocolBinding": "JSONRPC"},
        ]});
        assert_eq!(endpoint(&modern, &card_url).unwrap().as_str(), "http://agent:9999/rpc");
        let legacy = json!({"url": "http://agent:9999/", "preferredTransport": "JSONRPC"});
        assert_eq!(endpoint(&legacy, &card_url).unwrap().as_str(), "http://agent:9999/");
        let relative = json!({"url": "/a2a"});
        assert_eq!(endpoint(&relative, &card_url).unwrap().as_str(), "http://agent:9999/a2a");
        let grpc_first = json!({"url": "agent:50051", "preferredTransport": "GRPC",
            "additionalInterfaces": [{"url": "http://agent:9999/jsonrpc", "transport": "JSONRPC"}]});
        assert_eq!(endpoint(&grpc_first, &card_url).unwrap().as_str(), "http://agent:9999/jsonrpc");
        assert!(endpoint(&json!({"url": "file:///etc/passwd"}), &card_url).is_none());
        assert!(endpoint(&json!({"name": "no interface"}), &card_url).is_none());
        assert!(endpoint(&json!({"url": "x", "preferredTransport": "GRPC"}), &card_url).is_none());
    }

    #[test]
    fn no_interface_of_the_agent_survives_a_rewrite() {
        let card = json!({"supportedInterfaces": "not a list",
            "additionalInterfaces": [{"url": "http://agent/rpc", "transport": "JSONRPC"}]});
        let rewritten = rewrite(&card, "http://gw/a2a/x");
        let found = endpoint(&rewritten, &url("http://agent/card"));
        assert_eq!(found.map(|u| u.to_string()).as_deref(), Some("http://gw/a2a/x"));
    }

    #[test]
    fn a_rewritten_card_points_at_the_gateway_and_asks_for_a_key() {
        let gateway = "https://gw.example/a2a/helper";
        let modern = json!({
            "name": "helper",
            "supportedInterfaces": [
                {"url": "http://agent/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": "agent:50051", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
            ],
            "securitySchemes": {"upstream": {"apiKeySecurityScheme": {"location": "header", "name": "X-Key"}}},
            "signatures": [{"protected": "x", "signature": "y"}],
            "skills": [{"id": "s", "securityRequirements": []}],
        });
        let rewritten = rewrite(&modern, gateway);
        assert_eq!(
            rewritten["supportedInterfaces"],
            json!([{"url": gateway, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}])
        );
        assert!(rewritten.get("url").is_none());
        assert!(rewritten.get("signatures").is_none());
        assert!(rewritten["securitySchemes"].get("upstream").is_none());
        assert_eq!(rewritten["securityRequirements"][0]["schemes"][SCHEME], json!({"list": []}));
        assert!(rewritten["skills"][0].get("securityRequirements").is_none());
        assert_eq!(rewritten["name"], "helper");

        let legacy = json!({"url": "http://agent/", "preferredTransport": "GRPC",
            "additionalInterfaces": [{"url": "http://agent/", "transport": "JSONRPC"}],
            "security": [{"upstream": []}]});
        let rewritten = rewrite(&legacy, gateway);
        assert_eq!(rewritten["url"], gateway);
        assert_eq!(rewritten["preferredTransport"], "JSONRPC");
        assert!(rewritten.get("additionalInterfaces").is_none());
        assert_eq!(rewritten["security"], json!([{SCHEME: []}]));
        assert_eq!(rewrite(&json!("not a card"), gateway), json!("not a card"));
    }

    fn value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            prop::sample::select(&["JSONRPC", "GRPC", "http://a/rpc", "/rpc", "x:1"][..]).prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(
                        &[
                            "url",
                            "preferredTransport",
                            "additionalInterfaces",
                            "transport",
                            "supportedInterfaces",
                            "protocolBinding",
                            "protocolVersion",
                            "skills",
                            "security",
                            "signatures"
                        ][..]
                    ),
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..proptest::prelude::ProptestConfig::default() })]

        /// Any card an agent serves (outside bytes, read as JSON): finding its endpoint and
        /// rewriting it never panic, the endpoint is http(s), and a rewritten card names no
        /// endpoint but the gateway's.
        #[test]
        fn any_card_is_read_and_rewritten_without_panic(card in value()) {
            let card_url = url("http://agent:9999/.well-known/agent-card.json");
            if let Some(found) = endpoint(&card, &card_url) {
                proptest::prop_assert!(matches!(found.scheme(), "http" | "https"));
            }
            let rewritten = rewrite(&card, "http://gw/a2a/x");
            if rewritten.is_object() {
                let found = endpoint(&rewritten, &card_url);
                proptest::prop_assert!(found.is_none_or(|u| u.as_str() == "http://gw/a2a/x"), "{rewritten}");
            }
        }
    }

    #[test]
    fn the_gateway_card_lists_the_agents_given() {
        let card = gateway("http://gw", &[Listed { name: "helper", description: Some("helps") }]);
        assert_eq!(card["skills"][0]["id"], "helper");
        assert_eq!(card["skills"][0]["description"], "helps");
        assert_eq!(card["x-flowgate-agents"][0]["card"], "http://gw/a2a/helper/.well-known/agent-card.json");
        assert_eq!(gateway("http://gw", &[])["skills"], json!([]));
    }
}
