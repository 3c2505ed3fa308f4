//! `flowgate keys …`, `flowgate tenants …` (clients of the api-server's management API) and
//! `flowgate init` (bootstrap straight against the database).
//!
//! Every command prints JSON on stdout and exits 0 on success; errors go to stderr with a non-zero
//! exit code. The admin key comes from `--admin-key-file`, else `ADMIN_API_KEY`, else the
//! `admin_api_key` file that `flowgate all` generates in the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use flowgate_common::Settings;
use flowgate_common::keys::KeyHasher;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use crate::secrets::{ADMIN_KEY_FILE, HASH_SECRET_FILE};

/// Default address of the api-server.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7778";

/// Where and how to reach the management API.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ApiArgs {
    /// Base URL of the api-server.
    #[arg(long, global = true, env = "FLOWGATE_API_URL", default_value = DEFAULT_API_URL)]
    pub url: String,
    /// File holding the admin key (default: `ADMIN_API_KEY`, else `<data dir>/admin_api_key`).
    #[arg(long, global = true, value_name = "FILE")]
    pub admin_key_file: Option<PathBuf>,
}

/// `flowgate keys …`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct KeysArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

/// `flowgate tenants …`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TenantsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: TenantsCommand,
}

/// A management command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// `flowgate keys …`
    Keys(KeysArgs),
    /// `flowgate tenants …`
    Tenants(TenantsArgs),
    /// `flowgate init`
    Init,
    /// `flowgate edge …`
    Edge(crate::edge_cli::EdgeArgs),
    /// `flowgate credentials …`
    Credentials(crate::credentials_cli::CredentialsCommand),
}

/// Paging options of the list commands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
struct PageArgs {
    /// Page size (1-500; server default 50).
    #[arg(long)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[arg(long)]
    cursor: Option<String>,
    /// Follow `next_cursor` until the last page and print every item.
    #[arg(long, conflicts_with = "cursor")]
    all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
enum KeysCommand {
    /// Create a key; prints it (in `key`) this once.
    Create(Box<CreateKeyArgs>),
    /// List keys.
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a key (never the key itself).
    Get {
        /// Key id.
        id: String,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// Key id.
        id: String,
    },
    /// Issue a new key for the same id; prints it this once.
    Rotate {
        /// Key id.
        id: String,
        /// Seconds the old key keeps working (default: it stops at once).
        #[arg(long, value_name = "SECS")]
        grace_secs: Option<u64>,
    },
    /// Show a key's budget and spend in the current period.
    Budget {
        /// Key id.
        id: String,
    },
    /// Delete a key (prefer revoke, which keeps the record).
    Delete {
        /// Key id.
        id: String,
    },
}

/// Options of `flowgate keys create`; absent options are left to the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
struct CreateKeyArgs {
    /// Name of the key (e.g. the application using it).
    #[arg(long)]
    name: String,
    /// Owning tenant id (default: the tenant named `default`).
    #[arg(long)]
    tenant: Option<String>,
    /// Spend cap in USD per budget period.
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    budget_usd: Option<String>,
    /// daily, weekly, monthly or total (default total).
    #[arg(long, value_name = "PERIOD")]
    budget_period: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Requests per hour (default: the server's RATE_LIMIT_REQUESTS_PER_HOUR).
    #[arg(long)]
    requests_per_hour: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    max_parallel_requests: Option<u64>,
    /// Models the key may use, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_name = "MODEL,...")]
    models: Vec<String>,
    /// Client addresses allowed, comma-separated CIDRs (default: any).
    #[arg(long, value_delimiter = ',', value_name = "CIDR,...")]
    ip_allowlist: Vec<String>,
    /// Expiry: RFC 3339 timestamp or unix seconds.
    #[arg(long, value_name = "TIME")]
    expires_at: Option<String>,
    /// Metadata, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_object)]
    metadata: Option<String>,
    /// Guardrail policy, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_object)]
    guardrail_policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
enum TenantsCommand {
    /// Create a tenant.
    Create {
        /// Unique tenant name.
        #[arg(long)]
        name: String,
        /// Spend cap in USD per budget period, over all the tenant's keys.
        #[arg(long, value_name = "USD", value_parser = parse_usd)]
        budget_usd: Option<String>,
        /// daily, weekly, monthly or total (default total).
        #[arg(long, value_name = "PERIOD")]
        budget_period: Option<String>,
        /// Metadata, a JSON object.
        #[arg(long, value_name = "JSON", value_parser = parse_object)]
        metadata: Option<String>,
        /// Keep the tenant's prompts and answers in the audit trail, redacted.
        #[arg(long)]
        store_prompts: bool,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a tenant.
    Get {
        /// Tenant id.
        id: String,
    },
}

fn parse_usd(text: &str) -> Result<String, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(text.trim().to_owned()),
        _ => Err(format!("`{text}` is not a positive amount of USD")),
    }
}

fn parse_object(text: &str) -> Result<String, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => Ok(text.to_owned()),
        Ok(_) => Err("must be a JSON object".to_owned()),
        Err(error) => Err(format!("not JSON: {error}")),
    }
}

/// Runs a management command; prints its JSON result on stdout.
pub(crate) async fn run(command: AdminCommand, settings: Settings) -> ExitCode {
    let result = match command {
        AdminCommand::Keys(args) => keys(args, &settings).await,
        AdminCommand::Tenants(args) => tenants(args, &settings).await,
        AdminCommand::Init => init(&settings).await,
        AdminCommand::Edge(args) => crate::edge_cli::run(args, &settings).await,
        AdminCommand::Credentials(command) => crate::credentials_cli::run(command, &settings).await,
    };
    match result {
        Ok(value) => match print_json(&value) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                report(&format!("cannot write the result: {error}"));
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            report(&format!("{error:#}"));
            ExitCode::FAILURE
        }
    }
}

fn print_json(value: &Value) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    writeln!(stdout)?;
    stdout.flush()
}

fn report(message: &str) {
    let _ = writeln!(std::io::stderr(), "flowgate: {message}");
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

/// A client of the management API.
pub(crate) struct Api {
    base: String,
    admin_key: SecretString,
    client: reqwest::Client,
}

/// The admin key: `--admin-key-file`, else `ADMIN_API_KEY`, else `<data dir>/admin_api_key`.
fn admin_key(args: &ApiArgs, settings: &Settings) -> anyhow::Result<SecretString> {
    let read = |path: &Path| -> anyhow::Result<SecretString> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the admin key from {}", path.display()))?;
        let text = text.trim();
        anyhow::ensure!(!text.is_empty(), "{} is empty", path.display());
        Ok(SecretString::from(text.to_owned()))
    };
    if let Some(path) = &args.admin_key_file {
        return read(path);
    }
    if let Some(key) = &settings.security.admin_api_key {
        return Ok(key.clone());
    }
    let path = settings.storage.data_dir.join(ADMIN_KEY_FILE);
    if path.exists() {
        return read(&path);
    }
    bail!(
        "no admin key: set ADMIN_API_KEY, pass --admin-key-file, or run where `flowgate all` keeps its data directory \
         (FLOWGATE_DATA_DIR; looked for {})",
        path.display()
    )
}

impl Api {
    pub(crate) fn new(args: &ApiArgs, settings: &Settings) -> anyhow::Result<Self> {
        let base = args.url.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--url must start with http:// or https:// (got `{base}`)"
        );
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(30)).build().context("building the HTTP client")?;
        Ok(Self { base, admin_key: admin_key(args, settings)?, client })
    }

    /// Sends a request; returns the JSON body of a 2xx answer (`null` for 204), or an error
    /// carrying the API's error code and message.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .with_context(|| format!("`{}` is not a valid URL", self.base))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut request = self.client.request(method.clone(), url).bearer_auth(self.admin_key.expose_secret());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach the api-server at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.context("reading the api-server's answer")?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the api-server answered with invalid JSON");
        }
        let detail = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            let error = v.get("error")?;
            Some(format!(
                "{} ({})",
                error.get("message")?.as_str()?,
                error.get("code").and_then(Value::as_str).unwrap_or("error")
            ))
        });
        bail!("{method} {path} failed with HTTP {}: {}", status.as_u16(), detail.unwrap_or(text))
    }

    /// Every item of a list, following `next_cursor` to the last page.
    pub(crate) async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let page = PageArgs { limit: Some(500), cursor: None, all: true };
        let all = self.list(path, Vec::new(), &page).await?;
        Ok(all.get("data").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// A list, one page or (with `--all`) every page.
    async fn list(&self, path: &str, mut query: Vec<(&str, String)>, page: &PageArgs) -> anyhow::Result<Value> {
        if let Some(limit) = page.limit {
            query.push(("limit", limit.to_string()));
        }
        if !page.all {
            if let Some(cursor) = &page.cursor {
                query.push(("cursor", cursor.clone()));
            }
            return self.call(reqwest::Method::GET, path, &query, None).await;
        }
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut this_query = query.clone();
            if let Some(cursor) = &cursor {
                this_query.push(("cursor", cursor.clone()));
            }
            let page = self.call(reqwest::Method::GET, path, &this_query, None).await?;
            if let Some(data) = page.get("data").and_then(Value::as_array) {
                items.extend(data.iter().cloned());
            }
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(json!({"data": items, "next_cursor": null}))
    }
}

/// Inserts `value` under `name` when present.
fn put(body: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    if let Some(value) = value {
        body.insert(name.to_owned(), value);
    }
}

/// A number given on the command line, as JSON (validated by the argument parser).
fn number(text: Option<&String>) -> Option<Value> {
    text.and_then(|t| t.trim().parse::<f64>().ok()).and_then(serde_json::Number::from_f64).map(Value::Number)
}

/// A JSON object given on the command line (validated by the argument parser).
fn object(text: Option<&String>) -> Option<Value> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

fn create_key_body(args: CreateKeyArgs) -> Value {
    let mut body = Map::new();
    body.insert("name".to_owned(), Value::String(args.name));
    put(&mut body, "tenant_id", args.tenant.map(Value::String));
    put(&mut body, "budget_usd", number(args.budget_usd.as_ref()));
    put(&mut body, "budget_period", args.budget_period.map(Value::String));
    put(&mut body, "rpm", args.rpm.map(Value::from));
    put(&mut body, "tpm", args.tpm.map(Value::from));
    put(&mut body, "requests_per_hour", args.requests_per_hour.map(Value::from));
    put(&mut body, "max_parallel_requests", args.max_parallel_requests.map(Value::from));
    if !args.models.is_empty() {
        body.insert("allowed_models".to_owned(), json!(args.models));
    }
    if !args.ip_allowlist.is_empty() {
        body.insert("ip_allowlist".to_owned(), json!(args.ip_allowlist));
    }
    // Unix seconds go as a number, anything else as the RFC 3339 string the server parses.
    put(
        &mut body,
        "expires_at",
        args.expires_at.map(|t| t.trim().parse::<i64>().map_or_else(|_| Value::String(t.clone()), Value::from)),
    );
    put(&mut body, "metadata", object(args.metadata.as_ref()));
    put(&mut body, "guardrail_policy", object(args.guardrail_policy.as_ref()));
    Value::Object(body)
}

/// A path segment, percent-encoded (ids are plain, but a typo must not change the path).
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn keys(args: KeysArgs, settings: &Settings) -> anyhow::Result<Value> {
    use reqwest::Method;
    let api = Api::new(&args.api, settings)?;
    let base = "/api/enterprise/vkeys";
    match args.command {
        KeysCommand::Create(create) => api.call(Method::POST, base, &[], Some(create_key_body(*create))).await,
        KeysCommand::List { tenant, page } => {
            let query = tenant.map(|t| vec![("tenant_id", t)]).unwrap_or_default();
            api.list(base, query, &page).await
        }
        KeysCommand::Get { id } => api.call(Method::GET, &format!("{base}/{}", segment(&id)), &[], None).await,
        KeysCommand::Revoke { id } => {
            api.call(Method::POST, &format!("{base}/{}/revoke", segment(&id)), &[], None).await
        }
        KeysCommand::Rotate { id, grace_secs } => {
            let body = grace_secs.map(|secs| json!({"grace_period_secs": secs}));
            api.call(Method::POST, &format!("{base}/{}/rotate", segment(&id)), &[], body).await
        }
        KeysCommand::Budget { id } => {
            api.call(Method::GET, &format!("{base}/{}/budget", segment(&id)), &[], None).await
        }
        KeysCommand::Delete { id } => {
            api.call(Method::DELETE, &format!("{base}/{}", segment(&id)), &[], None).await?;
            Ok(json!({"deleted": id}))
        }
    }
}

async fn tenants(args: TenantsArgs, settings: &Settings) -> anyhow::Result<Value> {
    use reqwest::Method;
    let api = Api::new(&args.api, settings)?;
    let base = "/api/enterprise/tenants";
    match args.command {
        TenantsCommand::Create { name, budget_usd, budget_period, metadata, store_prompts } => {
            let mut body = Map::new();
            body.insert("name".to_owned(), Value::String(name));
            put(&mut body, "budget_usd", number(budget_usd.as_ref()));
            put(&mut body, "budget_period", budget_period.map(Value::String));
            put(&mut body, "metadata", object(metadata.as_ref()));
            put(&mut body, "store_prompts", store_prompts.then_some(Value::Bool(true)));
            api.call(Method::POST, base, &[], Some(Value::Object(body))).await
        }
        TenantsCommand::List { page } => api.list(base, Vec::new(), &page).await,
        TenantsCommand::Get { id } => api.call(Method::GET, &format!("{base}/{}", segment(&id)), &[], None).await,
    }
}

// ---------------------------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------------------------

/// `flowgate init`: migrates the database, ensures the `default` tenant and, when no key exists,
/// creates and prints a first key (once). When keys exist it changes nothing and says so.
///
/// The key-hash secret is the configured one, else the data directory's `key_hash_secret` file;
/// with the embedded SQLite database (no `DATABASE_URL`) a missing file is generated, as
/// `flowgate all` does. With an external database a missing secret is an error: a key hashed
/// under a secret the servers do not have would never work.
async fn init(settings: &Settings) -> anyhow::Result<Value> {
    let embedded = settings.database.url.is_none();
    let generate = embedded || settings.storage.data_dir.join(HASH_SECRET_FILE).exists();
    let (secret, _) = crate::secrets::load_or_generate(
        settings.security.key_hash_secret.as_ref(),
        &settings.storage.data_dir,
        HASH_SECRET_FILE,
        "",
        generate,
        "security.key_hash_secret (FLOWGATE__SECURITY__KEY_HASH_SECRET)",
    )?;
    let database = crate::dispatch::connect_database(settings).await?;
    let outcome = flowgate_db::migrate::run(&database).await.context("applying migrations")?;
    if !outcome.applied.is_empty() {
        report(&format!("migrations applied: {}", outcome.applied.join(", ")));
    }
    let result = flowgate_api_server::bootstrap(&database, &KeyHasher::new(&secret)).await;
    database.close().await;
    let outcome = result.context("creating the default tenant and the first key")?;
    match &outcome {
        flowgate_api_server::Bootstrap::Created { key, .. } => {
            report(&format!("created virtual key {}: store it now, it will not be shown again", key.id()));
        }
        flowgate_api_server::Bootstrap::AlreadyInitialised { keys } => {
            report(&format!("already initialised ({keys} keys exist): nothing to do"));
        }
    }
    serde_json::to_value(&outcome).context("encoding the result")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("flowgate").chain(args.iter().copied())).unwrap().command.unwrap()
    }

    #[test]
    fn keys_create_builds_the_request_body() {
        let Command::Keys(args) = parse(&[
            "keys",
            "create",
            "--name",
            "app",
            "--budget-usd",
            "2.5",
            "--models",
            "a,b",
            "--rpm",
            "10",
            "--expires-at",
            "1893456000",
            "--metadata",
            r#"{"team":"x"}"#,
            "--url",
            "http://h:1",
        ]) else {
            panic!("not keys")
        };
        assert_eq!(args.api.url, "http://h:1");
        let KeysCommand::Create(create) = args.command else { panic!("not create") };
        assert_eq!(
            create_key_body(*create),
            json!({"name": "app", "budget_usd": 2.5, "allowed_models": ["a", "b"], "rpm": 10,
                   "expires_at": 1_893_456_000, "metadata": {"team": "x"}})
        );
    }

    #[test]
    fn bad_values_are_rejected_by_the_parser() {
        let try_parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("flowgate").chain(args.iter().copied()));
        assert!(try_parse(&["keys", "create", "--name", "a", "--budget-usd", "lots"]).is_err());
        assert!(try_parse(&["keys", "create", "--name", "a", "--metadata", "[1]"]).is_err());
        assert!(try_parse(&["keys", "create"]).is_err(), "--name is required");
        assert!(try_parse(&["keys", "rotate", "k", "--grace-secs", "-1"]).is_err());
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("abc123"), "abc123");
        assert_eq!(segment("../x y"), "..%2Fx%20y");
    }
}
