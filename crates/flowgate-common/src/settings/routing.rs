//! Routing at run time (`routing`) and the key-encryption key of provider credentials
//! (`credentials`).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// How a proxy follows deployments written through `/api/routing`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    /// How often a proxy compares its routing revision with the database's, in milliseconds: the
    /// backstop for a missed `routing:changed` notification (Redis down). Default 2000.
    pub refresh_ms: u64,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self { refresh_ms: 2000 }
    }
}

/// Which key-encryption key (KEK) wraps the data keys of provider credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KekProviderKind {
    /// A 32-byte key given in `credentials.kek` (`FLOWGATE_KEK`) or `credentials.kek_file`
    /// (`FLOWGATE_KEK_FILE`, e.g. a mounted Kubernetes Secret).
    #[default]
    Local,
    /// HashiCorp Vault's Transit engine: the KEK never leaves Vault.
    Vault,
}

/// The key-encryption key of `/api/credentials`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsSettings {
    /// `local` (default) or `vault`.
    pub kek_provider: KekProviderKind,
    /// The KEK: 32 bytes as base64 or 64 hex digits (`FLOWGATE_KEK`).
    pub kek: Option<SecretString>,
    /// A file holding the KEK in the same form (`FLOWGATE_KEK_FILE`).
    pub kek_file: Option<PathBuf>,
    /// The KEK being rotated out, while `flowgate credentials rewrap` runs
    /// (`FLOWGATE_KEK_PREVIOUS`): records wrapped by it can still be opened.
    pub previous_kek: Option<SecretString>,
    /// Vault Transit, for `kek_provider: vault`.
    pub vault: VaultSettings,
}

/// HashiCorp Vault's Transit engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSettings {
    /// Vault's address (`VAULT_ADDR`), e.g. `https://vault.example:8200`.
    pub addr: Option<String>,
    /// A token allowed to encrypt and decrypt with the key (`VAULT_TOKEN`).
    pub token: Option<SecretString>,
    /// The Transit engine's mount path. Default `transit`.
    pub mount: String,
    /// The Transit key's name. Default `flowgate`.
    pub key: String,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self { addr: None, token: None, mount: "transit".to_owned(), key: "flowgate".to_owned() }
    }
}
