//! What a loaded configuration means, in words: the models and their deployments, limits and
//! routing, and what the LiteLLM compatibility pass mapped and ignored. `flowgate config check`
//! prints it.

use std::fmt::Write as _;

use super::Settings;

impl Settings {
    /// A plain-text account of the models, deployments, limits, routing, and the LiteLLM fields
    /// that were mapped or ignored. Secrets are never shown, only whether they are set.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<&str> = Vec::new();
        for entry in &self.model_list {
            if !names.contains(&entry.model_name.as_str()) {
                names.push(&entry.model_name);
            }
        }
        let _ = writeln!(out, "models: {}", names.len());
        for name in &names {
            let _ = writeln!(out, "  {name}");
            for (index, entry) in self.model_list.iter().enumerate().filter(|(_, e)| e.model_name == *name) {
                let params = &entry.litellm_params;
                let (provider, upstream) = match params.provider() {
                    Ok((provider, upstream)) => (provider.as_str(), upstream),
                    Err(_) => ("?", params.model.as_str()),
                };
                let id = entry.model_info.id.clone().unwrap_or_else(|| format!("{name}/{index}"));
                let _ = write!(out, "    - deployment {id}: {provider} `{upstream}`");
                if let Some(base) = params.base_url() {
                    let _ = write!(out, " at {base}");
                }
                let _ = writeln!(out);
                let mut facts = Vec::new();
                let credentials = match params.prefix_and_name().0 {
                    "bedrock" if params.aws_access_key_id.is_some() && params.aws_secret_access_key.is_some() => {
                        format!(
                            "AWS credentials set{}",
                            if params.aws_session_token.is_some() { " (with session token)" } else { "" }
                        )
                    }
                    "bedrock" => "AWS credentials none".to_owned(),
                    "vertex_ai" => format!(
                        "service account {}, project {}",
                        if params.vertex_credentials.is_some() { "set" } else { "none" },
                        params.vertex_project.as_deref().unwrap_or("-")
                    ),
                    _ => format!("key {}", if params.api_key.is_some() { "set" } else { "none" }),
                };
                facts.push(credentials);
                if let Some(rpm) = entry.rpm() {
                    facts.push(format!("rpm {rpm}"));
                }
                if let Some(tpm) = entry.tpm() {
                    facts.push(format!("tpm {tpm}"));
                }
                let weight = params
                    .weight
                    .or_else(|| entry.rpm().map(f64::from))
                    .or_else(|| entry.tpm().map(f64::from))
                    .unwrap_or(1.0);
                facts.push(format!("weight {weight}"));
                facts.push(format!("timeout {}", params.timeout.unwrap_or(self.router_settings.timeout)));
                if let Some(stream) = params.stream_timeout.or(self.router_settings.stream_timeout) {
                    facts.push(format!("stream timeout {stream}"));
                }
                facts.push(format!("retries {}", params.max_retries.unwrap_or(self.router_settings.num_retries)));
                match (entry.input_cost_per_token(), entry.output_cost_per_token()) {
                    (None, None) => {}
                    (input, output) => facts.push(format!(
                        "price/token in {} out {}",
                        input.map_or("-".to_owned(), |p| p.to_string()),
                        output.map_or("-".to_owned(), |p| p.to_string())
                    )),
                }
                if let Some(window) = entry.model_info.context_window() {
                    facts.push(format!("context {window}"));
                }
                if let Some(mode) = &entry.model_info.mode {
                    facts.push(format!("mode {mode}"));
                }
                if !params.extra_headers.is_empty() {
                    let headers: Vec<&str> = params.extra_headers.keys().map(String::as_str).collect();
                    facts.push(format!("extra headers {}", headers.join(", ")));
                }
                if !params.request_defaults.is_empty() {
                    let defaults: Vec<String> =
                        params.request_defaults.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    facts.push(format!("request defaults {}", defaults.join(", ")));
                }
                let _ = writeln!(out, "      {}", facts.join("; "));
            }
        }
        let router = &self.router_settings;
        let _ = writeln!(out, "routing:");
        let _ = writeln!(out, "  strategy {}", router.routing_strategy.as_str());
        let _ = writeln!(
            out,
            "  retries {}, timeout {}, cooldown {} after {} failures a minute{}",
            router.num_retries,
            router.timeout,
            router.cooldown_time,
            router.allowed_fails,
            if router.disable_cooldowns { " (cooldowns disabled)" } else { "" }
        );
        if router.enable_pre_call_checks {
            let _ = writeln!(out, "  pre-call checks: deployments whose context window the prompt exceeds are skipped");
        }
        for (alias, target) in &router.model_group_alias {
            let hidden = if target.hidden() { " (hidden)" } else { "" };
            let _ = writeln!(out, "  alias {alias} -> {}{hidden}", target.model());
        }
        for (label, list) in [
            ("fallbacks", &router.fallbacks),
            ("context window fallbacks", &router.context_window_fallbacks),
            ("content policy fallbacks", &router.content_policy_fallbacks),
        ] {
            for map in list {
                for (from, to) in map {
                    let _ = writeln!(out, "  {label}: {from} -> {}", to.join(", "));
                }
            }
        }
        self.describe_mcp(&mut out);
        if !self.compat.mapped.is_empty() {
            let _ = writeln!(out, "LiteLLM settings understood:");
            for mapped in &self.compat.mapped {
                let _ = writeln!(out, "  {} -> {}", mapped.from, mapped.to);
            }
        }
        if self.compat.ignored.is_empty() {
            let _ = writeln!(out, "ignored fields: none");
        } else {
            let _ = writeln!(out, "ignored fields (not supported, ignored): {}", self.compat.ignored.len());
            for ignored in &self.compat.ignored {
                match &ignored.value {
                    Some(value) => {
                        let _ = writeln!(out, "  {} ({value})", ignored.path);
                    }
                    None => {
                        let _ = writeln!(out, "  {}", ignored.path);
                    }
                }
            }
        }
        out
    }
}

impl Settings {
    /// The MCP gateway: on or off, and each upstream server (never its header or env values).
    fn describe_mcp(&self, out: &mut String) {
        if !self.mcp.enabled && self.mcp_servers.is_empty() && self.a2a_agents.is_empty() {
            return;
        }
        let state = if self.mcp.enabled { "on" } else { "off (mcp.enabled is false)" };
        let _ = writeln!(out, "MCP gateway: {state}, {} upstream server(s)", self.mcp_servers.len());
        for (name, server) in &self.mcp_servers {
            let target = match (&server.url, &server.command) {
                (Some(url), _) => url.clone(),
                (None, Some(command)) => format!("`{command}` with {} argument(s)", server.args.len()),
                (None, None) => "-".to_owned(),
            };
            let _ = write!(out, "  {name}: {} {target}", server.transport().as_str());
            let mut facts = vec![format!("timeout {} s", server.timeout_secs)];
            if !server.headers.is_empty() {
                let names: Vec<&str> = server.headers.keys().map(String::as_str).collect();
                facts.push(format!("headers {} (values hidden)", names.join(", ")));
            }
            if !server.env.is_empty() {
                facts.push(format!("{} env variable(s)", server.env.len()));
            }
            if !server.cacheable_tools.is_empty() {
                let tools: Vec<String> = server.cacheable_tools.iter().map(|(t, ttl)| format!("{t} {ttl} s")).collect();
                facts.push(format!("cached: {}", tools.join(", ")));
            }
            let _ = writeln!(out, "; {}", facts.join("; "));
        }
        if !self.a2a_agents.is_empty() {
            let _ = writeln!(out, "A2A agents: {}", self.a2a_agents.len());
            for (name, agent) in &self.a2a_agents {
                let _ = write!(out, "  {name}: card {}; timeout {} s", agent.card_url, agent.timeout_secs);
                if !agent.headers.is_empty() {
                    let names: Vec<&str> = agent.headers.keys().map(String::as_str).collect();
                    let _ = write!(out, "; headers {} (values hidden)", names.join(", "));
                }
                let _ = writeln!(out);
            }
        }
    }
}
