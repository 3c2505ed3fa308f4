//! `flowgate edge sync`: copies the ids of revoked virtual keys into the edge pre-filter's KV
//! namespace (Cloudflare's bulk-write API), so a revoked key is refused at the edge too.
//!
//! The key list comes from the api-server's management API (as `flowgate keys list --all`); the
//! Cloudflare API token from `CLOUDFLARE_API_TOKEN`, never from the command line, and it is never
//! printed. Writing is idempotent: run it after revocations, or on a timer.

use std::time::Duration;

use anyhow::{Context, bail};
use flowgate_common::Settings;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::admin_cli::{Api, ApiArgs};

/// Environment variable holding the Cloudflare API token (KV write permission).
pub const ENV_CLOUDFLARE_API_TOKEN: &str = "CLOUDFLARE_API_TOKEN";
/// Cloudflare's API base.
pub const DEFAULT_CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";
/// Most pairs Cloudflare takes in one bulk write.
const BULK_LIMIT: usize = 10_000;

/// `flowgate edge …`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct EdgeArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: EdgeCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
enum EdgeCommand {
    /// Write the ids of revoked keys to the edge's REVOKED_KEYS namespace (token in
    /// CLOUDFLARE_API_TOKEN).
    Sync {
        /// Cloudflare account id.
        #[arg(long, env = "CLOUDFLARE_ACCOUNT_ID")]
        account_id: String,
        /// Id of the KV namespace bound as REVOKED_KEYS in edge/wrangler.toml.
        #[arg(long, env = "FLOWGATE_EDGE_KV_NAMESPACE_ID")]
        namespace_id: String,
        /// Cloudflare API base URL.
        #[arg(long, env = "CLOUDFLARE_API_BASE_URL", default_value = DEFAULT_CLOUDFLARE_API)]
        cloudflare_api_url: String,
    },
}

/// Runs `flowgate edge …`; the JSON to print.
pub(crate) async fn run(args: EdgeArgs, settings: &Settings) -> anyhow::Result<Value> {
    match args.command {
        EdgeCommand::Sync { account_id, namespace_id, cloudflare_api_url } => {
            let token = std::env::var(ENV_CLOUDFLARE_API_TOKEN)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(|t| SecretString::from(t.trim().to_owned()))
                .with_context(|| {
                    format!("{ENV_CLOUDFLARE_API_TOKEN} is not set (a token with Workers KV write access)")
                })?;
            let api = Api::new(&args.api, settings)?;
            let revoked = revoked_keys(&api).await?;
            let kv = Kv::new(&cloudflare_api_url, &account_id, &namespace_id, token)?;
            let written = kv.write(&revoked).await?;
            Ok(json!({"revoked_keys": revoked.len(), "written": written, "namespace_id": namespace_id}))
        }
    }
}

/// `(id, revoked_at)` of every revoked key.
async fn revoked_keys(api: &Api) -> anyhow::Result<Vec<(String, String)>> {
    let keys = api.list_all("/api/enterprise/vkeys").await?;
    Ok(keys
        .iter()
        .filter(|key| key.get("status").and_then(Value::as_str) == Some("revoked"))
        .filter_map(|key| {
            let id = key.get("id")?.as_str()?.to_owned();
            let at = key.get("revoked_at").and_then(Value::as_str).unwrap_or("revoked").to_owned();
            Some((id, at))
        })
        .collect())
}

/// One KV namespace through Cloudflare's API.
struct Kv {
    bulk_url: String,
    token: SecretString,
    client: reqwest::Client,
}

/// The bulk-write URL of a namespace, from checked parts.
fn bulk_url(base: &str, account_id: &str, namespace_id: &str) -> anyhow::Result<String> {
    let base = base.trim_end_matches('/');
    anyhow::ensure!(
        base.starts_with("https://") || base.starts_with("http://"),
        "--cloudflare-api-url must start with https:// (got `{base}`)"
    );
    let plain = |what: &str, value: &str| {
        anyhow::ensure!(
            !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{what} must be letters, digits, `-` or `_` (got `{value}`)"
        );
        Ok(())
    };
    plain("--account-id", account_id)?;
    plain("--namespace-id", namespace_id)?;
    Ok(format!("{base}/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/bulk"))
}

impl Kv {
    fn new(base: &str, account_id: &str, namespace_id: &str, token: SecretString) -> anyhow::Result<Self> {
        let bulk_url = bulk_url(base, account_id, namespace_id)?;
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(60)).build().context("building the HTTP client")?;
        Ok(Self { bulk_url, token, client })
    }

    /// Writes `id → revoked_at` pairs, 10,000 per request; the number written.
    async fn write(&self, pairs: &[(String, String)]) -> anyhow::Result<usize> {
        let mut written = 0;
        for chunk in pairs.chunks(BULK_LIMIT) {
            let body: Vec<Value> = chunk.iter().map(|(key, value)| json!({"key": key, "value": value})).collect();
            let response = self
                .client
                .put(&self.bulk_url)
                .bearer_auth(self.token.expose_secret())
                .json(&body)
                .send()
                .await
                .context("cannot reach the Cloudflare API")?;
            let status = response.status();
            let text = response.text().await.context("reading the Cloudflare API's answer")?;
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if !status.is_success() || answer.get("success").and_then(Value::as_bool) != Some(true) {
                let errors: Vec<String> = answer
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|errors| {
                        errors
                            .iter()
                            .map(|e| {
                                let code = e.get("code").map(Value::to_string).unwrap_or_default();
                                let message = e.get("message").and_then(Value::as_str).unwrap_or("");
                                format!("{message} ({code})")
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                bail!("the Cloudflare KV bulk write failed with HTTP {}: {}", status.as_u16(), errors.join("; "));
            }
            let failed = answer.pointer("/result/unsuccessful_keys").and_then(Value::as_array).map_or(0, Vec::len);
            if failed > 0 {
                bail!("Cloudflare did not write {failed} of {} keys; run again", chunk.len());
            }
            written += chunk.len();
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::admin_cli::AdminCommand;
    use crate::cli::{Action, Cli, resolve};

    fn parse(args: &[&str]) -> Result<Action, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("flowgate").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        resolve(&cli, |_| None)
    }

    #[test]
    fn edge_sync_needs_the_account_and_the_namespace() {
        let action = parse(&["edge", "sync", "--account-id", "acc", "--namespace-id", "ns"]).unwrap();
        let Action::Admin(command) = action else { panic!("not an admin command: {action:?}") };
        let AdminCommand::Edge(args) = *command else { panic!("not edge") };
        let EdgeCommand::Sync { account_id, namespace_id, cloudflare_api_url } = args.command;
        assert_eq!((account_id.as_str(), namespace_id.as_str()), ("acc", "ns"));
        assert_eq!(cloudflare_api_url, DEFAULT_CLOUDFLARE_API);
        assert!(parse(&["edge", "sync", "--account-id", "acc"]).is_err(), "the namespace is required");
        assert!(parse(&["edge"]).is_err(), "a subcommand is required");
    }

    #[test]
    fn the_kv_url_is_built_from_checked_parts() {
        let url = bulk_url("https://api.example.com/client/v4/", "acc-1", "ns_2").unwrap();
        assert_eq!(url, "https://api.example.com/client/v4/accounts/acc-1/storage/kv/namespaces/ns_2/bulk");
        assert!(bulk_url("ftp://x", "a", "n").is_err());
        assert!(bulk_url("https://x", "a/../b", "n").is_err());
        assert!(bulk_url("https://x", "a", "").is_err());
    }
}
