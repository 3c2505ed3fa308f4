//! `a2a_agents`: the remote A2A agents the gateway routes to at `/a2a/{agent}`, by name. Agents
//! registered at run time through the api-server (`/api/admin/a2a/agents`) join these; a name
//! in the config file wins over a registered one.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

use super::ConfigError;

/// One remote agent (`a2a_agents.<name>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct A2aAgentSettings {
    /// Where the agent's card is, e.g. `http://agent:9999/.well-known/agent-card.json`. The
    /// card's JSON-RPC endpoint is where calls are forwarded.
    pub card_url: String,
    /// What the agent is for (the gateway's own card lists it); default: the card's description.
    #[serde(default)]
    pub description: Option<String>,
    /// Headers sent with every request to the agent, its card included (values may be
    /// `os.environ/NAME`): the agent's credentials. Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    /// Seconds a call may take (a stream: between two events). Default 300.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    300
}

/// The longest agent name (it is a path segment of `/a2a/{agent}`).
pub const MAX_AGENT_NAME_LEN: usize = 64;

/// Whether `name` may name an agent: 1 to 64 letters, digits, `-` or `_`.
pub fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_AGENT_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether `name` may name a header sent to an agent.
pub fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// Start-up checks of `a2a_agents`.
pub(super) fn validate(agents: &BTreeMap<String, A2aAgentSettings>) -> Result<(), ConfigError> {
    for (name, agent) in agents {
        let at = |field: &str| format!("a2a_agents.{name}.{field}");
        if !valid_agent_name(name) {
            return Err(ConfigError::field(
                format!("a2a_agents.{name}"),
                format!("an agent name is 1 to {MAX_AGENT_NAME_LEN} letters, digits, `-` or `_`"),
            ));
        }
        if !(agent.card_url.starts_with("http://") || agent.card_url.starts_with("https://")) {
            return Err(ConfigError::field(at("card_url"), "must start with http:// or https://"));
        }
        for header in agent.headers.keys() {
            if !valid_header_name(header) {
                return Err(ConfigError::field(at(&format!("headers.{header}")), "is not a valid header name"));
            }
        }
        if agent.timeout_secs == 0 {
            return Err(ConfigError::field(at("timeout_secs"), "must be at least 1"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{ConfigError, Settings, Sources};

    fn load(text: &str) -> Result<Settings, ConfigError> {
        let path = std::env::temp_dir().join(format!(
            "flowgate-a2a-settings-{}-{}.yaml",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ));
        std::fs::write(&path, text).unwrap();
        let result = Settings::load(&Sources { config_file: Some(path.clone()), env: HashMap::new() });
        let _ = std::fs::remove_file(path);
        result
    }

    #[test]
    fn agents_load_and_bad_ones_name_their_field() {
        let yaml = "a2a_agents:\n  helper:\n    card_url: http://agent:9999/.well-known/agent-card.json\n    headers:\n      Authorization: Bearer x\n";
        let settings = load(yaml).unwrap();
        let helper = &settings.a2a_agents["helper"];
        assert_eq!(helper.card_url, "http://agent:9999/.well-known/agent-card.json");
        assert_eq!(helper.timeout_secs, 300);
        assert_eq!(helper.headers.len(), 1);
        for (yaml, field) in [
            ("a2a_agents:\n  helper:\n    card_url: ftp://x\n", "a2a_agents.helper.card_url"),
            ("a2a_agents:\n  a/b:\n    card_url: http://x\n", "a2a_agents.a/b"),
            ("a2a_agents:\n  a:\n    card_url: http://x\n    timeout_secs: 0\n", "a2a_agents.a.timeout_secs"),
            ("a2a_agents:\n  a:\n    card_url: http://x\n    headers: {\"a b\": c}\n", "a2a_agents.a.headers.a b"),
            ("a2a_agents:\n  a:\n    card_url: http://x\n    colour: red\n", "a2a_agents.a"),
            ("a2a_agents:\n  a:\n    description: no card\n", "a2a_agents.a"),
        ] {
            let error = load(yaml).unwrap_err().to_string();
            assert!(error.contains(field), "{yaml}: {error}");
        }
    }
}
