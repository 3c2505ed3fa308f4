use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::super::{ConfigError, Settings, Sources};
use super::McpTransport;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let path = std::env::temp_dir().join(format!(
        "flowgate-mcp-settings-{}-{}.yaml",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::write(&path, text).unwrap();
    let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let result = Settings::load(&Sources { config_file: Some(path.clone()), env });
    let _ = std::fs::remove_file(path);
    result
}

fn field_of(error: ConfigError) -> (String, String) {
    match error {
        ConfigError::Field { field, message } => (field, message),
        ConfigError::File { message, .. } => (String::new(), message),
    }
}

#[test]
fn flowgate_shaped_servers_load_with_env_headers_and_inferred_transports() {
    let settings = load(
        r"
mcp:
  enabled: true
mcp_servers:
  weather:
    url: http://127.0.0.1:9000/mcp
    headers:
      Authorization: os.environ/WEATHER_TOKEN
    cacheable_tools:
      forecast: 60
  files:
    command: python3
    args: [server.py]
    env:
      ROOT: /srv
",
        &[("WEATHER_TOKEN", "Bearer t0k")],
    )
    .unwrap();
    assert!(settings.mcp.enabled);
    let weather = &settings.mcp_servers["weather"];
    assert_eq!(weather.transport(), McpTransport::Http);
    assert_eq!(weather.headers["Authorization"].expose_secret(), "Bearer t0k");
    assert_eq!(weather.cacheable_tools["forecast"], 60);
    assert_eq!(weather.timeout_secs, 60);
    let files = &settings.mcp_servers["files"];
    assert_eq!(files.transport(), McpTransport::Stdio);
    assert_eq!(files.args, ["server.py"]);
    assert_eq!(files.env["ROOT"].expose_secret(), "/srv");
    let described = settings.describe();
    assert!(described.contains("MCP gateway: on, 2 upstream server(s)"), "{described}");
    assert!(described.contains("headers Authorization (values hidden)"), "{described}");
    assert!(described.contains("cached: forecast 60 s"), "{described}");
    assert!(!described.contains("t0k"), "a header value leaked: {described}");
}

#[test]
fn the_established_env_name_turns_the_gateway_on() {
    let settings = load("{}", &[("MCP_GATEWAY_ENABLED", "true")]).unwrap();
    assert!(settings.mcp.enabled);
}

#[test]
fn litellm_shaped_servers_are_mapped_and_their_other_fields_reported() {
    let settings = load(
        r#"
mcp_servers:
  zapier:
    url: https://mcp.example.com/mcp
    transport: http
    auth_type: bearer_token
    auth_value: os.environ/ZAPIER_TOKEN
    static_headers:
      X-Team: blue
    spec_version: "2025-03-26"
    mcp_info:
      server_name: Zapier
      description: Zapier tools
"#,
        &[("ZAPIER_TOKEN", "z1")],
    )
    .unwrap();
    let zapier = &settings.mcp_servers["zapier"];
    assert_eq!(zapier.headers["Authorization"].expose_secret(), "Bearer z1");
    assert_eq!(zapier.headers["X-Team"].expose_secret(), "blue");
    assert_eq!(zapier.description.as_deref(), Some("Zapier tools"));
    let ignored: Vec<&str> = settings.compat.ignored.iter().map(|i| i.path.as_str()).collect();
    assert!(ignored.contains(&"mcp_servers.zapier.spec_version"), "{ignored:?}");
    assert!(settings.compat.mapped.iter().any(|m| m.to == "mcp_servers.zapier.headers.Authorization"));
}

#[test]
fn bad_servers_are_refused_naming_the_field() {
    let cases = [
        ("mcp_servers:\n  a:\n    transport: http\n", "mcp_servers.a.url"),
        ("mcp_servers:\n  a:\n    url: ftp://x\n", "mcp_servers.a.url"),
        ("mcp_servers:\n  a:\n    transport: stdio\n", "mcp_servers.a.command"),
        ("mcp_servers:\n  a:\n    transport: sse\n", "mcp_servers.a.url"),
        ("mcp_servers:\n  cache:\n    url: http://x\n", "mcp_servers.cache"),
        ("mcp_servers:\n  a__b:\n    url: http://x\n", "mcp_servers.a__b"),
        ("mcp_servers:\n  a:\n    url: http://x\n    cacheable_tools: {t: 0}\n", "mcp_servers.a.cacheable_tools.t"),
        ("mcp_servers:\n  a:\n    url: http://x\n    colour: red\n", "mcp_servers.a"),
        ("mcp_servers:\n  a:\n    url: http://x\n    tool_costs: {t: -1}\n", "mcp_servers.a.tool_costs.t"),
        ("mcp_servers:\n  a:\n    url: http://x\n    transport: carrier_pigeon\n", "mcp_servers.a.transport"),
    ];
    for (text, expected) in cases {
        let (field, message) = field_of(load(text, &[]).unwrap_err());
        assert!(field.starts_with(expected), "{text}: {field}: {message}");
    }
}
