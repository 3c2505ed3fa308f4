//! Provider credentials sealed at rest (`provider_credentials`, `/api/credentials`):
//! envelope encryption. Each credential gets its own random 256-bit data key; the value is sealed
//! under it with AES-256-GCM (the credential's name bound as associated data) and the data key is
//! wrapped by the key-encryption key (KEK) of a [`KekProvider`] — a local key ([`LocalKek`]) or
//! HashiCorp Vault's Transit engine ([`VaultTransit`]) — whose id is stored on the record.
//! Rotating the KEK re-wraps the data keys ([`rewrap`]); the sealed values are not touched.
//!
//! Opened values are [`SecretString`]s: never logged, never serialised.
//!
//! - `kek`: the trait, the local KEK and the [`Keyring`] (current and previous KEK);
//! - `vault`: Vault Transit over reqwest;
//! - this module: sealing and opening, the SQL, the start-up check and the rewrap.

mod kek;
mod vault;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flowgate_common::settings::{CredentialsSettings, KekProviderKind};
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;

pub use kek::{KekProvider, Keyring, LocalKek};
pub use vault::VaultTransit;

use crate::{Database, now_millis};

/// Why a credential could not be sealed, opened or stored. Messages never hold key material or
/// values.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No KEK is configured, and one is needed.
    #[error(
        "no key-encryption key is configured: set FLOWGATE_KEK (or credentials.kek_file, or credentials.kek_provider: vault)"
    )]
    NoKek,
    /// The KEK given cannot be used.
    #[error("the key-encryption key {0}")]
    BadKek(String),
    /// The KEK file cannot be read.
    #[error("cannot read credentials.kek_file {path}: {message}")]
    KekFile {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Records are wrapped by a KEK this process does not have.
    #[error(
        "provider credentials are sealed under key-encryption key `{needed}`, but this process has {have:?}: \
         FLOWGATE_KEK is not the key that sealed them (during a rotation, give the old one as FLOWGATE_KEK_PREVIOUS)"
    )]
    WrongKek {
        /// The KEK id on the records.
        needed: String,
        /// The KEK ids configured.
        have: Vec<String>,
    },
    /// A data key could not be unwrapped by the KEK its record names.
    #[error("a data key cannot be unwrapped by key-encryption key `{0}` (wrong key, or the record was altered)")]
    Unwrap(String),
    /// The sealed value could not be opened with its data key.
    #[error("credential `{0}` cannot be opened (the record was altered)")]
    Open(String),
    /// The OS random source failed.
    #[error("random source unavailable")]
    Random,
    /// Vault answered an error or could not be reached.
    #[error("Vault Transit: {0}")]
    Vault(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The keyring `settings` describe, or `None` when no KEK is configured.
pub fn keyring_from_settings(settings: &CredentialsSettings) -> Result<Option<Keyring>, CredentialError> {
    let current: Arc<dyn KekProvider> = match settings.kek_provider {
        KekProviderKind::Vault => {
            let addr = settings.vault.addr.as_deref().ok_or(CredentialError::NoKek)?;
            let token = settings.vault.token.clone().ok_or(CredentialError::NoKek)?;
            Arc::new(VaultTransit::new(addr, token, &settings.vault.mount, &settings.vault.key)?)
        }
        KekProviderKind::Local => {
            let text = match (&settings.kek, &settings.kek_file) {
                (Some(kek), _) => kek.clone(),
                (None, Some(path)) => SecretString::from(std::fs::read_to_string(path).map_err(|e| {
                    CredentialError::KekFile { path: path.display().to_string(), message: e.to_string() }
                })?),
                (None, None) => return Ok(None),
            };
            Arc::new(LocalKek::parse(&text)?)
        }
    };
    let previous = match &settings.previous_kek {
        Some(text) => Some(Arc::new(LocalKek::parse(text).map_err(|e| match e {
            CredentialError::BadKek(m) => CredentialError::BadKek(format!("in FLOWGATE_KEK_PREVIOUS {m}")),
            other => other,
        })?) as Arc<dyn KekProvider>),
        None => None,
    };
    Ok(Some(Keyring::new(current, previous)))
}

/// A credential as stored: the KEK's id, the wrapped data key, the sealed value (base64).
#[derive(Debug, Clone)]
pub struct SealedCredential {
    /// The KEK that wrapped `wrapped_key`.
    pub kek_id: String,
    /// The data key, wrapped.
    pub wrapped_key: String,
    /// The value under the data key (base64 of nonce, ciphertext, tag).
    pub sealed_value: String,
}

fn value_aad(name: &str) -> String {
    format!("flowgate/credential/v1/{name}")
}

fn data_key(bytes: &[u8]) -> Result<LessSafeKey, CredentialError> {
    UnboundKey::new(&AES_256_GCM, bytes).map(LessSafeKey::new).map_err(|_| CredentialError::Random)
}

/// Seals `value` for credential `name`: a fresh data key, the value under it, the data key
/// wrapped by the keyring's current KEK.
pub async fn seal(keyring: &Keyring, name: &str, value: &SecretString) -> Result<SealedCredential, CredentialError> {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| CredentialError::Random)?;
    let sealed = match data_key(&key) {
        Ok(k) => kek::seal(&k, value.expose_secret().as_bytes(), &value_aad(name)),
        Err(e) => Err(e),
    };
    let wrapped = match &sealed {
        Ok(_) => keyring.current().wrap(&key, name).await,
        Err(_) => Err(CredentialError::Random),
    };
    key.zeroize();
    let sealed = sealed?;
    Ok(SealedCredential {
        kek_id: keyring.current().key_id().to_owned(),
        wrapped_key: wrapped?,
        sealed_value: STANDARD.encode(sealed),
    })
}

/// Opens credential `name`'s value.
pub async fn open(keyring: &Keyring, name: &str, sealed: &SealedCredential) -> Result<SecretString, CredentialError> {
    let kek = keyring
        .by_id(&sealed.kek_id)
        .ok_or_else(|| CredentialError::WrongKek { needed: sealed.kek_id.clone(), have: keyring.ids() })?;
    let mut key = kek.unwrap(&sealed.wrapped_key, name).await?;
    let body = STANDARD.decode(&sealed.sealed_value).map_err(|_| CredentialError::Open(name.to_owned()));
    let opened = match body {
        Ok(body) => data_key(&key).map(|k| kek::open(&k, &body, &value_aad(name))),
        Err(e) => Err(e),
    };
    key.zeroize();
    let mut plain = opened?.ok_or_else(|| CredentialError::Open(name.to_owned()))?;
    let text = String::from_utf8(plain.clone()).map_err(|_| CredentialError::Open(name.to_owned()));
    plain.zeroize();
    text.map(SecretString::from)
}

/// A credential's public facts (never its value).
#[derive(Debug, Clone)]
pub struct CredentialInfo {
    /// Its name (`credential/NAME` refers to it).
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The KEK that wraps its data key.
    pub kek_id: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

fn info(row: &sqlx::any::AnyRow) -> Result<CredentialInfo, sqlx::Error> {
    Ok(CredentialInfo {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        kek_id: row.try_get("kek_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Every credential, by name.
pub async fn list(db: &Database) -> Result<Vec<CredentialInfo>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT name, description, kek_id, created_at, updated_at FROM provider_credentials ORDER BY name")
            .fetch_all(db.pool())
            .await?;
    rows.iter().map(info).collect()
}

/// Credential `name`'s public facts.
pub async fn get(db: &Database, name: &str) -> Result<Option<CredentialInfo>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT name, description, kek_id, created_at, updated_at FROM provider_credentials WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(info).transpose()
}

/// Every credential's sealed form, by name.
pub async fn all_sealed(db: &Database) -> Result<Vec<(String, SealedCredential)>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, kek_id, wrapped_key, sealed_value FROM provider_credentials ORDER BY name")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("name")?,
                SealedCredential {
                    kek_id: row.try_get("kek_id")?,
                    wrapped_key: row.try_get("wrapped_key")?,
                    sealed_value: row.try_get("sealed_value")?,
                },
            ))
        })
        .collect()
}

/// Writes credential `name` (created, or its value and description replaced) and bumps the
/// routing revision in the same transaction; returns whether it was created, and the revision.
pub async fn put(
    db: &Database,
    name: &str,
    description: Option<&str>,
    sealed: &SealedCredential,
) -> Result<(bool, i64), sqlx::Error> {
    let now = now_millis();
    let mut tx = db.pool().begin().await?;
    let updated = sqlx::query(
        "UPDATE provider_credentials SET kek_id = $1, wrapped_key = $2, sealed_value = $3, \
         description = COALESCE($4, description), updated_at = $5 WHERE name = $6",
    )
    .bind(&sealed.kek_id)
    .bind(&sealed.wrapped_key)
    .bind(&sealed.sealed_value)
    .bind(description)
    .bind(now)
    .bind(name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let created = updated == 0;
    if created {
        sqlx::query(
            "INSERT INTO provider_credentials (name, description, kek_id, wrapped_key, sealed_value, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(name)
        .bind(description.unwrap_or_default())
        .bind(&sealed.kek_id)
        .bind(&sealed.wrapped_key)
        .bind(&sealed.sealed_value)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let revision = crate::routing::bump_revision(&mut tx).await?;
    tx.commit().await?;
    Ok((created, revision))
}

/// Deletes credential `name`; the revision after, or `None` when there was none.
pub async fn delete(db: &Database, name: &str) -> Result<Option<i64>, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let deleted = sqlx::query("DELETE FROM provider_credentials WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Ok(None);
    }
    let revision = crate::routing::bump_revision(&mut tx).await?;
    tx.commit().await?;
    Ok(Some(revision))
}

/// Checks at start that this process can open the stored credentials: every record's KEK is in
/// the keyring, and one record of each KEK opens. Fails clearly with a wrong KEK, or with none
/// when records exist.
pub async fn check(db: &Database, keyring: Option<&Keyring>) -> Result<usize, CredentialError> {
    let sealed = all_sealed(db).await?;
    let Some((_, first)) = sealed.first() else { return Ok(0) };
    let Some(keyring) = keyring else {
        return Err(CredentialError::WrongKek { needed: first.kek_id.clone(), have: Vec::new() });
    };
    let mut checked: Vec<&str> = Vec::new();
    for (name, record) in &sealed {
        if checked.contains(&record.kek_id.as_str()) {
            continue;
        }
        open(keyring, name, record).await?;
        checked.push(&record.kek_id);
    }
    Ok(sealed.len())
}

/// Every credential opened, by name; a credential that cannot be opened is left out (and
/// logged), so the deployments that use it fail and the others keep working.
pub async fn open_all(db: &Database, keyring: Option<&Keyring>) -> Result<HashMap<String, SecretString>, sqlx::Error> {
    let mut out = HashMap::new();
    let sealed = all_sealed(db).await?;
    for (name, record) in sealed {
        let Some(keyring) = keyring else {
            tracing::error!(credential = %name, "no key-encryption key is configured: provider credentials cannot be opened");
            continue;
        };
        match open(keyring, &name, &record).await {
            Ok(value) => {
                out.insert(name, value);
            }
            Err(error) => tracing::error!(credential = %name, %error, "cannot open a provider credential"),
        }
    }
    Ok(out)
}

/// Re-wraps every data key not wrapped by the keyring's current KEK under it (the sealed values
/// are unchanged). Returns how many records were re-wrapped. Safe to run twice.
pub async fn rewrap(db: &Database, keyring: &Keyring) -> Result<usize, CredentialError> {
    let current = keyring.current().key_id().to_owned();
    let mut count = 0;
    for (name, record) in all_sealed(db).await? {
        if record.kek_id == current {
            continue;
        }
        let kek = keyring
            .by_id(&record.kek_id)
            .ok_or_else(|| CredentialError::WrongKek { needed: record.kek_id.clone(), have: keyring.ids() })?;
        let mut key = kek.unwrap(&record.wrapped_key, &name).await?;
        let wrapped = keyring.current().wrap(&key, &name).await;
        key.zeroize();
        let wrapped = wrapped?;
        sqlx::query("UPDATE provider_credentials SET kek_id = $1, wrapped_key = $2 WHERE name = $3 AND kek_id = $4")
            .bind(&current)
            .bind(&wrapped)
            .bind(&name)
            .bind(&record.kek_id)
            .execute(db.pool())
            .await?;
        tracing::info!(credential = %name, from = %record.kek_id, to = %current, "credential re-wrapped");
        count += 1;
    }
    Ok(count)
}
