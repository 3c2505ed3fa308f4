//! Who may use which server and tool: the key's `mcp_servers` / `mcp_tools` allow-lists and its
//! `mcp_denied_tools`, glob patterns (`*` any run of characters, `?` one), and the server's own
//! `allowed_tools` / `disallowed_tools` from the config file. Tools are matched by their
//! namespaced name `server__tool` on the key's lists and by their bare name on the server's.

use flowgate_proto::keys::VirtualKey;

/// Whether `text` matches the glob `pattern`.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
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

/// A key's MCP permissions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyAccess<'a> {
    servers: &'a [String],
    tools: &'a [String],
    denied: &'a [String],
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The key's `mcp_servers` does not list the server.
    Server,
    /// The key's `mcp_tools` does not list the tool.
    NotAllowed,
    /// The key's `mcp_denied_tools` lists it.
    Denied,
    /// The server's `allowed_tools` / `disallowed_tools` keep it from every key.
    ServerConfig,
}

impl Refusal {
    /// What the client is told.
    pub(crate) fn message(&self, server: &str, tool: &str) -> String {
        match self {
            Self::Server => format!("this key may not use the MCP server `{server}` (not in the key's mcp_servers)"),
            Self::NotAllowed => {
                format!("this key may not use the tool `{server}__{tool}` (not in the key's mcp_tools)")
            }
            Self::Denied => {
                format!("this key may not use the tool `{server}__{tool}` (listed in the key's mcp_denied_tools)")
            }
            Self::ServerConfig => format!("the tool `{server}__{tool}` is not offered by this gateway"),
        }
    }
}

impl<'a> KeyAccess<'a> {
    /// The permissions `key` carries.
    pub(crate) fn of(key: &'a VirtualKey) -> Self {
        Self { servers: &key.mcp_servers, tools: &key.mcp_tools, denied: &key.mcp_denied_tools }
    }

    /// Whether the key may reach `server` at all.
    pub(crate) fn server(&self, server: &str) -> Result<(), Refusal> {
        if self.servers.is_empty() || any(self.servers, server) { Ok(()) } else { Err(Refusal::Server) }
    }

    /// Whether the key may call `tool` of `server`, whose config allows `allowed` and refuses
    /// `disallowed`.
    pub(crate) fn tool(
        &self,
        server: &str,
        tool: &str,
        allowed: &[String],
        disallowed: &[String],
    ) -> Result<(), Refusal> {
        if (!allowed.is_empty() && !any(allowed, tool)) || any(disallowed, tool) {
            return Err(Refusal::ServerConfig);
        }
        self.server(server)?;
        let name = format!("{server}__{tool}");
        if any(self.denied, &name) {
            return Err(Refusal::Denied);
        }
        if !self.tools.is_empty() && !any(self.tools, &name) {
            return Err(Refusal::NotAllowed);
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
        assert_eq!(access.tool("files", "read", &[], &[]), Err(Refusal::Server));
        assert_eq!(access.tool("weather", "forecast", &[], &[]), Ok(()));
        assert_eq!(access.tool("weather", "delete_station", &[], &[]), Err(Refusal::Denied));
        assert_eq!(access.tool("weather", "forecast", &["alerts".into()], &[]), Err(Refusal::ServerConfig));
        assert_eq!(access.tool("weather", "forecast", &[], &["fore*".into()]), Err(Refusal::ServerConfig));
    }
}
