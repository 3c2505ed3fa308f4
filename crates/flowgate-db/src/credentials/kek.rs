//! Key-encryption keys: the [`KekProvider`] trait, the local AES-256-GCM key ([`LocalKek`]) and
//! the [`Keyring`] of the current KEK and the one being rotated out.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};

use super::CredentialError;

/// Wraps and unwraps data keys. Implementations never log key material; `key_id` is stored on
/// every record it wraps, so the record names the KEK it needs.
#[async_trait::async_trait]
pub trait KekProvider: Send + Sync + std::fmt::Debug {
    /// The id stored beside every data key this KEK wraps (`local:…`, `vault:…`).
    fn key_id(&self) -> &str;
    /// `data_key` wrapped, as text; `context` (the credential's name) is bound to it.
    async fn wrap(&self, data_key: &[u8], context: &str) -> Result<String, CredentialError>;
    /// The data key inside `wrapped`, bound to `context`.
    async fn unwrap(&self, wrapped: &str, context: &str) -> Result<Vec<u8>, CredentialError>;
}

/// A 32-byte KEK held in process (`FLOWGATE_KEK`, a file, a mounted Secret). Its id is derived
/// from the key (`local:` and 16 hex digits of a SHA-256 over it), so a different key is noticed
/// before anything is decrypted.
pub struct LocalKek {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for LocalKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKek").field("id", &self.id).finish_non_exhaustive()
    }
}

impl LocalKek {
    /// The KEK written as base64 (standard, 44 characters) or 64 hex digits, surrounding
    /// whitespace ignored.
    pub fn parse(text: &SecretString) -> Result<Self, CredentialError> {
        let text = text.expose_secret().trim();
        let mut bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).filter_map(|i| text.get(i * 2..i * 2 + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
        } else {
            STANDARD.decode(text).map_err(|_| CredentialError::BadKek("is neither base64 nor 64 hex digits".into()))?
        };
        let result = Self::from_bytes(&bytes);
        bytes.zeroize();
        result
    }

    /// The KEK made of these 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CredentialError> {
        if bytes.len() != 32 {
            return Err(CredentialError::BadKek(format!("must be 32 bytes, not {}", bytes.len())));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &[b"flowgate/kek-id/v1\0".as_slice(), bytes].concat());
        let id = format!("local:{}", hex(digest.as_ref().get(..8).unwrap_or_default()));
        let key =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CredentialError::BadKek("not an AES-256 key".into()))?;
        Ok(Self { key: LessSafeKey::new(key), id })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait::async_trait]
impl KekProvider for LocalKek {
    fn key_id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, data_key: &[u8], context: &str) -> Result<String, CredentialError> {
        let sealed = seal(&self.key, data_key, &format!("flowgate/kek/v1/{context}"))?;
        Ok(STANDARD.encode(sealed))
    }

    async fn unwrap(&self, wrapped: &str, context: &str) -> Result<Vec<u8>, CredentialError> {
        let sealed = STANDARD.decode(wrapped).map_err(|_| CredentialError::Unwrap(self.id.clone()))?;
        open(&self.key, &sealed, &format!("flowgate/kek/v1/{context}"))
            .ok_or_else(|| CredentialError::Unwrap(self.id.clone()))
    }
}

/// AES-256-GCM: a random nonce, then ciphertext and tag; `aad` bound.
pub(super) fn seal(key: &LessSafeKey, plaintext: &[u8], aad: &str) -> Result<Vec<u8>, CredentialError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| CredentialError::Random)?;
    let mut body = plaintext.to_vec();
    if key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut body).is_err()
    {
        body.zeroize();
        return Err(CredentialError::Random);
    }
    let mut out = Vec::with_capacity(NONCE_LEN + body.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens what [`seal`] made under `key` with `aad`; `None` when it was altered or sealed under
/// another key or `aad`.
pub(super) fn open(key: &LessSafeKey, sealed: &[u8], aad: &str) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = body.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buffer).ok().map(|p| p.to_vec());
    buffer.zeroize();
    plain
}

/// The current KEK (wraps every new data key) and, during a rotation, the previous one (still
/// opens what it wrapped).
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Arc<dyn KekProvider>,
    previous: Option<Arc<dyn KekProvider>>,
}

impl Keyring {
    /// A keyring of `current` and, during a rotation, `previous`.
    pub fn new(current: Arc<dyn KekProvider>, previous: Option<Arc<dyn KekProvider>>) -> Self {
        Self { current, previous }
    }

    /// The KEK new records are wrapped with.
    pub fn current(&self) -> &Arc<dyn KekProvider> {
        &self.current
    }

    /// The KEK whose id is `id`, if this keyring has it.
    pub fn by_id(&self, id: &str) -> Option<&Arc<dyn KekProvider>> {
        std::iter::once(&self.current).chain(self.previous.as_ref()).find(|k| k.key_id() == id)
    }

    /// The ids this keyring knows, current first.
    pub fn ids(&self) -> Vec<String> {
        std::iter::once(&self.current).chain(self.previous.as_ref()).map(|k| k.key_id().to_owned()).collect()
    }
}
