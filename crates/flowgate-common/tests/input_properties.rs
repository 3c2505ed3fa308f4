//! Property tests of the parsers that read bytes from outside the process (issue #15, "Proof"):
//!
//! - the key header parser: `auth::bearer_token` over arbitrary `Authorization` / `x-api-key`
//!   values, then `keys::parse` over whatever it returns (and over arbitrary strings): never a
//!   panic; a well-formed key comes out whatever the scheme's case and the spacing; a changed key
//!   never passes its checksum;
//! - settings from arbitrary YAML (and `FLOWGATE__…` variables): `Settings::load` never panics,
//!   and a document it refuses is refused with an error that names a field of that document (or,
//!   when it is not YAML at all, the file).
//!
//! Each property runs a bounded number of cases (`PROPTEST_CASES` overrides it) so the whole file
//! takes seconds. The checked-in corpus (`tests/corpus/`) runs on every run too: inputs that once
//! mattered, each with what must come out of it.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use flowgate_common::auth::bearer_token;
use flowgate_common::keys::{self, KEY_LEN, KeyFormatError, PREFIX};
use flowgate_common::settings::Sources;
use flowgate_common::{ConfigError, Settings};
use proptest::prelude::*;
use proptest::test_runner::Config;
use secrecy::ExposeSecret;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    Config { cases, failure_persistence: None, ..Config::default() }
}

// ------------------------------------------------------------------------------------------------
// Key headers
// ------------------------------------------------------------------------------------------------

/// What the proxy does with a request's headers before any lookup: the presented key, and its id
/// when format and checksum hold.
fn presented(headers: &HeaderMap) -> (Option<String>, Option<Result<String, KeyFormatError>>) {
    let token = bearer_token(headers);
    let parsed = token.map(|t| keys::parse(t).map(str::to_owned));
    (token.map(str::to_owned), parsed)
}

/// A byte an HTTP header value may hold (what hyper hands the proxy): visible ASCII, space, tab
/// and obs-text (0x80–0xFF).
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => 0x20u8..0x7f,
        1 => Just(b'\t'),
        1 => 0x80u8..=0xff,
    ]
}

/// A header value: any bytes, or a scheme in some case, spaces, and a tail.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let scheme = prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER"), Just("bEaReR"), Just("Basic"), Just("")];
    prop_oneof![
        proptest::collection::vec(header_byte(), 0..80),
        (scheme, " {0,3}", proptest::collection::vec(header_byte(), 0..70)).prop_map(|(scheme, spaces, tail)| [
            scheme.as_bytes(),
            spaces.as_bytes(),
            &tail
        ]
        .concat()),
    ]
}

/// A valid key, and a way to present it: (`Authorization` value or `x-api-key` value).
fn presentation() -> impl Strategy<Value = (String, bool, String, String)> {
    (
        prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER"), Just("BeArEr")],
        any::<bool>(),
        "[ \t]{0,3}",
        " {1,3}",
        "[ \t]{0,3}",
    )
        .prop_map(|(scheme, in_authorization, before, between, after)| {
            let key = keys::generate().unwrap().plaintext.expose_secret().to_owned();
            let value = if in_authorization {
                format!("{before}{scheme}{between}{key}{after}")
            } else {
                format!("{before}{key}{after}")
            };
            (key, in_authorization, value, scheme.to_owned())
        })
}

fn check_presented(headers: &HeaderMap) {
    let (token, parsed) = presented(headers);
    if let Some(Ok(id)) = &parsed {
        let token = token.as_deref().unwrap();
        assert_eq!(token.len(), KEY_LEN, "{token:?}");
        assert!(token.starts_with(PREFIX), "{token:?}");
        assert_eq!(&token[PREFIX.len()..PREFIX.len() + id.len()], id.as_str());
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Any bytes in either header, any number of times: no panic, and only a key with the right
    /// length, prefix and checksum gets through.
    #[test]
    fn key_headers_never_panic(
        authorization in proptest::collection::vec(header_bytes(), 0..3),
        api_key in proptest::collection::vec(header_bytes(), 0..3),
    ) {
        let mut headers = HeaderMap::new();
        for value in &authorization {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(header::AUTHORIZATION, value);
            }
        }
        for value in &api_key {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append("x-api-key", value);
            }
        }
        check_presented(&headers);
    }

    /// A well-formed key comes out of either header whatever the scheme's case and the spacing.
    #[test]
    fn a_presented_key_is_found((key, in_authorization, value, _scheme) in presentation()) {
        let mut headers = HeaderMap::new();
        let name = if in_authorization { header::AUTHORIZATION } else { HeaderName::from_static("x-api-key") };
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
        let (token, parsed) = presented(&headers);
        prop_assert_eq!(token.as_deref(), Some(key.as_str()));
        prop_assert_eq!(parsed.unwrap().unwrap(), key[PREFIX.len()..PREFIX.len() + 12].to_owned());
    }

    /// Any string, in any alphabet: no panic, and nothing passes that is not key-shaped.
    #[test]
    fn key_parse_never_panics(text in prop_oneof!["\\PC{0,80}", ".{0,80}", "sk-fg-[a-z0-9]{12}_[A-Za-z0-9ÄÖ]{0,40}"]) {
        if let Ok(id) = keys::parse(&text) {
            prop_assert_eq!(text.len(), KEY_LEN);
            prop_assert!(text.starts_with(PREFIX));
            prop_assert_eq!(id.len(), 12);
        }
    }

    /// A key with any one character replaced (by anything, multi-byte included), cut short or
    /// extended is rejected: by format or by checksum, never accepted and never a panic.
    #[test]
    fn a_changed_key_never_passes(
        position in 0usize..KEY_LEN,
        replacement in any::<char>(),
        cut in 0usize..KEY_LEN,
        extension in "\\PC{1,4}",
    ) {
        let key = keys::generate().unwrap().plaintext.expose_secret().to_owned();
        let mut chars: Vec<char> = key.chars().collect();
        chars[position] = replacement;
        let changed: String = chars.into_iter().collect();
        if changed != key {
            prop_assert!(keys::parse(&changed).is_err(), "{changed:?}");
        }
        prop_assert!(keys::parse(&key[..cut]).is_err());
        let extended = format!("{key}{extension}");
        prop_assert!(keys::parse(&extended).is_err(), "{extended:?}");
    }
}

/// `tests/corpus/key-headers.txt`: `expect<TAB>header<TAB>value`, where `expect` is the key's id
/// (`-` for no key) and `value` is written with Rust-like escapes (`\t`, `\xNN`).
#[test]
fn key_header_corpus() {
    let text = std::fs::read_to_string(Path::new(CORPUS).join("key-headers.txt")).unwrap();
    let mut checked = 0;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (expect, name, value) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap_or(""));
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&unescape(value)) {
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
        }
        check_presented(&headers);
        let (_, parsed) = presented(&headers);
        let id = parsed.and_then(Result::ok);
        let expected = (expect != "-").then(|| expect.to_owned());
        assert_eq!(id, expected, "line {}: {line:?}", number + 1);
        checked += 1;
    }
    assert!(checked >= 10, "the corpus has {checked} cases");
}

/// `\t`, `\\` and `\xNN` escapes, and `{key}` for a freshly generated valid key whose id is
/// `fixedkeyid00`.
fn unescape(text: &str) -> Vec<u8> {
    let text = text.replace("{key}", &valid_key_with_id("fixedkeyid00"));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], bytes.get(index + 1)) {
            (b'\\', Some(b't')) => {
                out.push(b'\t');
                index += 2;
            }
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                index += 2;
            }
            (b'\\', Some(b'x')) => {
                out.push(u8::from_str_radix(&text[index + 2..index + 4], 16).unwrap());
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    out
}

fn valid_key_with_id(id: &str) -> String {
    keys::generate_for(id).unwrap().plaintext.expose_secret().to_owned()
}

// ------------------------------------------------------------------------------------------------
// Settings from YAML
// ------------------------------------------------------------------------------------------------

static FILES: AtomicU64 = AtomicU64::new(0);

/// A config file holding `bytes`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(bytes: &[u8]) -> Self {
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("flowgate-prop-{}-{n}.yaml", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load(yaml: &[u8], env: &[(String, String)]) -> Result<Settings, ConfigError> {
    let file = TempFile::new(yaml);
    let env: HashMap<String, String> = env.iter().cloned().collect();
    Settings::load(&Sources { config_file: Some(file.0.clone()), env })
}

/// A YAML document as a tree, rendered in flow style (JSON-like, which is YAML).
#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn render(&self, out: &mut String) {
        match self {
            Self::Null => out.push_str("null"),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Int(i) => out.push_str(&i.to_string()),
            Self::Float(f) if f.is_nan() => out.push_str(".nan"),
            Self::Float(f) if f.is_infinite() => out.push_str(if *f > 0.0 { ".inf" } else { "-.inf" }),
            Self::Float(f) => out.push_str(&format!("{f:?}")),
            Self::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Self::List(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Self::Map(entries) => {
                out.push('{');
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&serde_json::to_string(key).unwrap());
                    out.push_str(": ");
                    value.render(out);
                }
                out.push('}');
            }
        }
    }

    /// Every map key in the tree.
    fn keys(&self, out: &mut Vec<String>) {
        match self {
            Self::List(items) => items.iter().for_each(|item| item.keys(out)),
            Self::Map(entries) => {
                for (key, value) in entries {
                    out.push(key.clone());
                    value.keys(out);
                }
            }
            _ => {}
        }
    }
}

/// The sections, so generated documents reach real fields.
const SECTIONS: &[&str] = &[
    "server",
    "proxy",
    "api_server",
    "compliance",
    "policy",
    "storage",
    "database",
    "redis",
    "security",
    "limits",
    "cache",
    "mcp",
    "telemetry",
    "audit",
    "model_list",
    "router_settings",
    "litellm_settings",
    "general_settings",
    "environment_variables",
    "guardrails",
];

/// Field names of the sections and of `model_list` entries.
const FIELDS: &[&str] = &[
    // LiteLLM's vocabulary, read by the compatibility pass before the file is typed.
    "model_name",
    "litellm_params",
    "model",
    "model_info",
    "rpm",
    "tpm",
    "temperature",
    "custom_llm_provider",
    "master_key",
    "database_url",
    "cache_params",
    "callbacks",
    "num_retries",
    "retry_policy",
    "allowed_fails_policy",
    "model_group_alias",
    "redis_host",
    "host",
    "shutdown_grace_secs",
    "port",
    "api_server_url",
    "compliance_url",
    "policy_url",
    "max_body_bytes",
    "stream_timeout_secs",
    "trusted_proxies",
    "timeout_secs",
    "data_dir",
    "url",
    "max_connections",
    "connect_timeout_secs",
    "prefix",
    "admin_api_key",
    "key_hash_secret",
    "internal_token",
    "requests_per_hour",
    "enabled",
    "ttl_secs",
    "max_entries",
    "max_entry_bytes",
    "semantic",
    "threshold",
    "local_model_dir",
    "log_level",
    "log_format",
    "otlp_endpoint",
    "trace_sample_ratio",
    "model_name",
    "litellm_params",
    "params",
    "model_info",
    "model",
    "api_base",
    "api_key",
    "api_version",
    "rpm",
    "tpm",
    "weight",
    "timeout",
    "max_retries",
    "input_cost_per_token",
    "output_cost_per_token",
    "extra_headers",
    "mock_response",
    "routing_strategy",
    "num_retries",
    "fallbacks",
    "allowed_fails",
    "cooldown_time",
    "context_window_fallbacks",
    "content_policy_fallbacks",
];

/// Values that mean something to some field.
const VALUES: &[&str] = &[
    "",
    "mock/m",
    "openai/gpt-4o-mini",
    "azure/gpt",
    "anthropic/*",
    "gemini/gemini-2.0-flash",
    "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
    "vertex_ai/claude-3-5-haiku@20241022",
    "gpt-4o-mini",
    "prometheus",
    "usage-based-routing-v2",
    "nope/x",
    "m",
    "http://127.0.0.1:1",
    "https://api.example.com/v1",
    "ftp://x",
    "os.environ/FLOWGATE_PROPTEST_UNSET",
    "10.0.0.0/8",
    "::1/129",
    "json",
    "text",
    "simple-shuffle",
    "least-busy",
    "info",
    "0.5",
    "-1",
    "65536",
    "1e309",
    "true",
    "internal-token-0123456789",
];

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        2 => proptest::sample::select(SECTIONS).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
        1 => "\\PC{1,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        1 => Just(Node::Null),
        1 => any::<bool>().prop_map(Node::Bool),
        1 => prop_oneof![Just(0i64), Just(1), Just(-1), Just(65_535), Just(65_536), Just(i64::MAX), any::<i64>()]
            .prop_map(Node::Int),
        1 => prop_oneof![Just(0.5f64), Just(-0.5), Just(2.0), Just(f64::NAN), Just(f64::INFINITY), any::<f64>()]
            .prop_map(Node::Float),
        3 => proptest::sample::select(VALUES).prop_map(|v| Node::Str(v.to_owned())),
        1 => "\\PC{0,16}".prop_map(Node::Str),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Node::List),
            proptest::collection::vec((key_name(), inner), 0..5).prop_map(Node::Map),
        ]
    })
}

/// A document: a map of sections (mostly real ones) to trees.
fn document() -> impl Strategy<Value = Node> {
    let section = prop_oneof![
        8 => proptest::sample::select(SECTIONS).prop_map(str::to_owned),
        1 => key_name(),
    ];
    proptest::collection::vec((section, node()), 0..5).prop_map(Node::Map)
}

/// The error names the file, or one of the document's keys (a field path such as
/// `proxy.port`, or an unknown key in the message).
fn assert_names_a_field(error: &ConfigError, keys: &[String], yaml: &str) {
    let text = error.to_string();
    match error {
        ConfigError::File { message, .. } => assert!(!message.trim().is_empty(), "{yaml}\n=> {text}"),
        ConfigError::Field { field, message } => {
            assert!(!field.trim().is_empty() && !message.trim().is_empty(), "{yaml}\n=> {text}");
            let lower = text.to_lowercase();
            assert!(
                keys.iter().any(|key| !key.is_empty() && lower.contains(&key.to_lowercase())),
                "the error names no field of the document:\n{yaml}\n=> {text}"
            );
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Documents built from the real sections and field names with values of every type: loaded
    /// or refused naming a field, never a panic.
    #[test]
    fn settings_from_structured_yaml_never_panic(document in document()) {
        let mut yaml = String::new();
        document.render(&mut yaml);
        if let Err(error) = load(yaml.as_bytes(), &[]) {
            let mut keys = Vec::new();
            document.keys(&mut keys);
            assert_names_a_field(&error, &keys, &yaml);
        }
    }

    /// Arbitrary text and bytes, and the quick-start configuration with bytes spliced in: no
    /// panic, and an error says what is wrong.
    #[test]
    fn settings_from_arbitrary_bytes_never_panic(
        bytes in prop_oneof![
            "\\PC{0,200}".prop_map(String::into_bytes),
            "[-:{}\\[\\],&*!|>'\"%@` #?\n\t a-z0-9.]{0,200}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..200),
            (any::<proptest::sample::Index>(), any::<proptest::sample::Index>(), proptest::collection::vec(any::<u8>(), 0..12))
                .prop_map(|(at, cut, splice)| {
                    let seed = include_bytes!("../../../config/quickstart.yaml");
                    let at = at.index(seed.len());
                    let end = (at + cut.index(16)).min(seed.len());
                    [&seed[..at], &splice[..], &seed[end..]].concat()
                }),
        ],
    ) {
        if let Err(error) = load(&bytes, &[]) {
            prop_assert!(!error.to_string().trim().is_empty());
        }
    }

    /// `FLOWGATE__…` variables with any name and value: no panic; a refusal names a field.
    #[test]
    fn settings_from_arbitrary_environment_never_panic(
        variables in proptest::collection::vec(
            (
                prop_oneof![
                    (proptest::sample::select(SECTIONS), proptest::sample::select(FIELDS))
                        .prop_map(|(s, f)| format!("FLOWGATE__{}__{}", s.to_uppercase(), f.to_uppercase())),
                    "FLOWGATE_{0,3}[A-Z_]{0,20}",
                ],
                prop_oneof![proptest::sample::select(VALUES).prop_map(str::to_owned), "\\PC{0,20}"],
            ),
            0..4,
        ),
    ) {
        let env: HashMap<String, String> = variables.into_iter().collect();
        let env: Vec<(String, String)> = env.into_iter().collect();
        if let Err(error) = load(b"{}", &env) {
            prop_assert!(!error.to_string().trim().is_empty());
        }
    }
}

/// `tests/corpus/config/*.yaml`: each file's first line says what must come of it: `# ok`, or
/// `# error: TEXT` (the error must contain TEXT), or `# any` (anything but a panic).
#[test]
fn config_corpus() {
    let mut checked = 0;
    let mut entries: Vec<_> =
        std::fs::read_dir(Path::new(CORPUS).join("config")).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let bytes = std::fs::read(&path).unwrap();
        let first = String::from_utf8_lossy(bytes.split(|b| *b == b'\n').next().unwrap_or_default()).into_owned();
        let result = load(&bytes, &[("FLOWGATE_CORPUS_KEY".to_owned(), "corpus-provider-key".to_owned())]);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if first.starts_with("# ok") {
            assert!(result.is_ok(), "{name}: {}", result.unwrap_err());
        } else if let Some(needle) = first.strip_prefix("# error: ") {
            let error = result.err().unwrap_or_else(|| panic!("{name} loaded"));
            assert!(error.to_string().contains(needle.trim()), "{name}: {error}");
        } else {
            assert!(first.starts_with("# any"), "{name}: the first line must say what to expect");
        }
        checked += 1;
    }
    assert!(checked >= 10, "the corpus has {checked} files");
}
