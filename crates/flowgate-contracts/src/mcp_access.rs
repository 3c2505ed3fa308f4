//! Who may use which server and tool: the key's and its tenant's `mcp_servers` / `mcp_tools`
//! allow-lists (both must allow) and `mcp_denied_tools` (either denies), glob patterns (`*` any run of characters, `?` one), and the server's own
//! `allowed_tools` / `disallowed_tools`. Tools are matched by their namespaced name
//! `server__tool` on the key's lists and by their bare name on the server's. The proxy decides
//! calls with it, the api-server's tool catalog (`GET /api/mcp/tools`) shows its decisions.

use flowgate_proto::keys::VirtualKey;

/// Whether `text` matches the glob `pattern`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`: linear in practice,
    // O(len(pattern) * len(text)) at worst, never exponential.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || text.get(t) == Some(&c) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

fn any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob(p, text))
}

/// One owner's lists (the key's or its tenant's).
#[derive(Debug, Clone, Copy)]
struct Lists<'a> {
    /// `key` or `tenant`, for messages.
    owner: &'static str,
    servers: &'a [String],
    tools: &'a [String],
    denied: &'a [String],
}

/// A key's MCP permissions: its own lists and its tenant's, both of which must allow a use.
#[derive(Debug, Clone, Copy)]
pub struct KeyAccess<'a> {
    lists: [Lists<'a>; 2],
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The owner's `mcp_servers` does not list the server (`key` or `tenant`).
    Server(&'static str),
    /// The owner's `mcp_tools` does not list the tool.
    NotAllowed(&'static str),
    /// The owner's `mcp_denied_tools` lists it.
    Denied(&'static str),
    /// The server's `allowed_tools` / `disallowed_tools` keep it from every key.
    ServerConfig,
}

impl Refusal {
    /// What the client is told.
    pub fn message(&self, server: &str, tool: &str) -> String {
        match self {
            Self::Server(owner) => {
                format!("this key may not use the MCP server `{server}` (not in the {owner}'s mcp_servers)")
            }
            Self::NotAllowed(owner) => {
                format!("this key may not use the tool `{server}__{tool}` (not in the {owner}'s mcp_tools)")
            }
            Self::Denied(owner) => {
                format!("this key may not use the tool `{server}__{tool}` (listed in the {owner}'s mcp_denied_tools)")
            }
            Self::ServerConfig => format!("the tool `{server}__{tool}` is not offered by this gateway"),
        }
    }
}

impl<'a> KeyAccess<'a> {
    /// The permissions `key` carries, its tenant's included.
    pub fn of(key: &'a VirtualKey) -> Self {
        Self {
            lists: [
                Lists { owner: "key", servers: &key.mcp_servers, tools: &key.mcp_tools, denied: &key.mcp_denied_tools },
                Lists {
                    owner: "tenant",
                    servers: &key.tenant_mcp_servers,
                    tools: &key.tenant_mcp_tools,
                    denied: &key.tenant_mcp_denied_tools,
                },
            ],
        }
    }

    /// Whether the key may reach `server` at all.
    pub fn server(&self, server: &str) -> Result<(), Refusal> {
        for lists in &self.lists {
            if !lists.servers.is_empty() && !any(lists.servers, server) {
                return Err(Refusal::Server(lists.owner));
            }
        }
        Ok(())
    }

    /// Whether the key may call `tool` of `server`, whose config allows `allowed` and refuses
    /// `disallowed`.
    pub fn tool(&self, server: &str, tool: &str, allowed: &[String], disallowed: &[String]) -> Result<(), Refusal> {
        if (!allowed.is_empty() && !any(allowed, tool)) || any(disallowed, tool) {
            return Err(Refusal::ServerConfig);
        }
        self.server(server)?;
        let name = format!("{server}__{tool}");
        for lists in &self.lists {
            if any(lists.denied, &name) {
                return Err(Refusal::Denied(lists.owner));
            }
        }
        for lists in &self.lists {
            if !lists.tools.is_empty() && !any(lists.tools, &name) {
                return Err(Refusal::NotAllowed(lists.owner));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_patterns() {
        for (pattern, text, matches) in [
            ("*", "", true),
            ("*", "anything", true),
            ("github__*", "github__create_issue", true),
            ("github__*", "gitlab__create_issue", false),
            ("*__read_*", "files__read_file", true),
            ("weather__forecast", "weather__forecast", true),
            ("weather__forecast", "weather__forecasts", false),
            ("w?ather__*", "weather__x", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(glob(pattern, text), matches, "{pattern} vs {text}");
        }
    }

    #[test]
    fn deny_wins_and_empty_lists_allow_everything() {
        let mut key = VirtualKey::default();
        assert_eq!(KeyAccess::of(&key).tool("files", "read", &[], &[]), Ok(()));
        key.mcp_servers = vec!["weather".into()];
        key.mcp_tools = vec!["weather__*".into()];
        key.mcp_denied_tools = vec!["*__delete_*".into()];
        let access = KeyAccess::of(&key);
        assert_eq!(access.tool("files", "read", &[], &[]), Err(Refusal::Server("key")));
        assert_eq!(access.tool("weather", "forecast", &[], &[]), Ok(()));
        assert_eq!(access.tool("weather", "delete_station", &[], &[]), Err(Refusal::Denied("key")));
        assert_eq!(access.tool("weather", "forecast", &["alerts".into()], &[]), Err(Refusal::ServerConfig));
        assert_eq!(access.tool("weather", "forecast", &[], &["fore*".into()]), Err(Refusal::ServerConfig));
    }

    #[test]
    fn the_tenants_lists_bound_every_key() {
        let mut key = VirtualKey { tenant_mcp_tools: vec!["weather__forecast".into()], ..VirtualKey::default() };
        assert_eq!(KeyAccess::of(&key).tool("weather", "forecast", &[], &[]), Ok(()));
        assert_eq!(KeyAccess::of(&key).tool("weather", "alerts", &[], &[]), Err(Refusal::NotAllowed("tenant")));
        key.tenant_mcp_servers = vec!["files".into()];
        assert_eq!(KeyAccess::of(&key).server("weather"), Err(Refusal::Server("tenant")));
        key.tenant_mcp_servers.clear();
        key.tenant_mcp_denied_tools = vec!["*".into()];
        key.mcp_tools = vec!["weather__*".into()];
        let refusal = KeyAccess::of(&key).tool("weather", "forecast", &[], &[]).unwrap_err();
        assert_eq!(refusal, Refusal::Denied("tenant"));
        assert!(refusal.message("weather", "forecast").contains("tenant's mcp_denied_tools"));
    }
}
