//! `flowgate credentials rewrap`: re-wraps the data key of every stored provider credential under
//! the current key-encryption key (`FLOWGATE_KEK`, or Vault Transit), opening those wrapped by
//! the previous one (`FLOWGATE_KEK_PREVIOUS`). The sealed values are not touched; the command is
//! safe to run again (records already under the current KEK are skipped).

use anyhow::Context as _;
use serde_json::{Value, json};

use flowgate_common::Settings;

/// `flowgate credentials …`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum CredentialsCommand {
    /// Re-wrap every credential's data key under the current KEK (FLOWGATE_KEK), opening those
    /// wrapped by the previous one (FLOWGATE_KEK_PREVIOUS). Talks to the database directly.
    Rewrap,
}

/// Runs `command` against the configured database.
pub(crate) async fn run(command: CredentialsCommand, settings: &Settings) -> anyhow::Result<Value> {
    match command {
        CredentialsCommand::Rewrap => {
            let keyring = flowgate_db::credentials::keyring_from_settings(&settings.credentials)?
                .ok_or(flowgate_db::credentials::CredentialError::NoKek)?;
            let database = crate::dispatch::connect_database(settings).await?;
            let count = flowgate_db::credentials::rewrap(&database, &keyring)
                .await
                .context("cannot re-wrap the provider credentials")?;
            let total = flowgate_db::credentials::list(&database).await?.len();
            database.close().await;
            Ok(json!({"rewrapped": count, "credentials": total, "kek_id": keyring.current().key_id()}))
        }
    }
}
