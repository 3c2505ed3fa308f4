//! Sealed secrets at rest: small values (an HTTP guardrail's bearer token) encrypted with
//! ChaCha20-Poly1305 under a key derived from the server's `key_hash_secret`.
//!
//! - Key: `HMAC-SHA256(key_hash_secret, context)`, a keyed SHA-256 of the server secret with a
//!   context string, so each use of the secret gets its own independent key. It is exactly what
//!   [`KeyHasher::hash`](crate::keys::KeyHasher::hash) computes over the context, so a process that
//!   holds only the hasher ([`SealKey::from_hasher`]) and one that holds the secret
//!   ([`SealKey::derive`]) agree on the key. The context can never be presented as a virtual key
//!   (it has no `sk-fg-` prefix or checksum), so a derived key is never a stored key hash.
//! - Sealed form: `nonce (12 random bytes) || ciphertext || tag (16 bytes)`; the context is bound
//!   as associated data.
//!
//! [`open`] returns a [`SecretString`]: it is never logged or serialised.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};

use crate::keys::KeyHasher;

/// Context of the key that seals HTTP guardrail bearer tokens (`guardrails.http_token_sealed`).
pub const GUARDRAIL_TOKEN_CONTEXT: &str = "flowgate/secretbox/v1/guardrail-http-token";

/// Context of the key that seals the headers sent to registered A2A agents
/// (`a2a_agents.headers_sealed`: a JSON object of header name to value).
pub const A2A_HEADERS_CONTEXT: &str = "flowgate/secretbox/v1/a2a-agent-headers";

/// Context of the key that seals the headers sent to MCP servers registered at run time
/// (`mcp_servers.headers_sealed`: a JSON object of header name to value).
pub const MCP_HEADERS_CONTEXT: &str = "flowgate/secretbox/v1/mcp-server-headers";

/// Authentication tag length of ChaCha20-Poly1305.
const TAG_LEN: usize = 16;

/// Why sealing or opening failed. Messages never contain the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The OS random source failed while drawing a nonce.
    #[error("random source unavailable")]
    Random,
    /// The plaintext is too long for one sealed value (over 256 GiB).
    #[error("value too long to seal")]
    TooLong,
    /// The sealed value is too short, was altered, or was sealed under another key or context.
    #[error("sealed value cannot be opened with this key")]
    Open,
    /// The opened plaintext is not UTF-8.
    #[error("sealed value is not text")]
    NotText,
}

/// A ChaCha20-Poly1305 key for one context.
pub struct SealKey {
    key: LessSafeKey,
    context: &'static str,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey").field("context", &self.context).finish_non_exhaustive()
    }
}

impl SealKey {
    /// The key for `context` derived from the server secret: `HMAC-SHA256(secret, context)`.
    pub fn derive(secret: &SecretString, context: &'static str) -> Self {
        let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
        let tag = ring::hmac::sign(&hmac, context.as_bytes());
        Self::from_material(tag.as_ref(), context)
    }

    /// The same key as [`SealKey::derive`], from a [`KeyHasher`] keyed by that secret.
    pub fn from_hasher(hasher: &KeyHasher, context: &'static str) -> Self {
        let mut material = hasher.hash(context);
        let key = Self::from_material(&material, context);
        material.zeroize();
        key
    }

    fn from_material(material: &[u8], context: &'static str) -> Self {
        // HMAC-SHA256 output is 32 bytes, ChaCha20-Poly1305's key length, so this cannot fail.
        match UnboundKey::new(&CHACHA20_POLY1305, material) {
            Ok(unbound) => Self { key: LessSafeKey::new(unbound), context },
            Err(_) => unreachable_key_length(),
        }
    }
}

#[cold]
fn unreachable_key_length() -> ! {
    panic!("HMAC-SHA256 output is always a valid ChaCha20-Poly1305 key")
}

/// Encrypts `plaintext`: a fresh random nonce, then the ciphertext and tag.
pub fn seal(key: &SealKey, plaintext: &str) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Random)?;
    let mut body = plaintext.as_bytes().to_vec();
    let aad = Aad::from(key.context.as_bytes());
    if key.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut body).is_err() {
        body.zeroize();
        return Err(SealError::TooLong);
    }
    let mut out = Vec::with_capacity(NONCE_LEN + body.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decrypts a value made by [`seal`] under the same key and context.
pub fn open(key: &SealKey, sealed: &[u8]) -> Result<SecretString, SealError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Open);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
    let mut buffer = body.to_vec();
    let result = match key.key.open_in_place(nonce, Aad::from(key.context.as_bytes()), &mut buffer) {
        Ok(plain) => {
            std::str::from_utf8(plain).map(|text| SecretString::from(text.to_owned())).map_err(|_| SealError::NotText)
        }
        Err(_) => Err(SealError::Open),
    };
    buffer.zeroize();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn sealed_values_open_back_and_hide_the_plaintext() {
        let key = SealKey::derive(&secret("server-secret"), GUARDRAIL_TOKEN_CONTEXT);
        let sealed = seal(&key, "tok-very-secret-value").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + "tok-very-secret-value".len() + TAG_LEN);
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "ciphertext contains plaintext");
        assert_eq!(open(&key, &sealed).unwrap().expose_secret(), "tok-very-secret-value");
        // A fresh nonce every time: the same plaintext seals differently.
        assert_ne!(seal(&key, "tok-very-secret-value").unwrap(), sealed);
        assert_eq!(open(&key, &seal(&key, "").unwrap()).unwrap().expose_secret(), "");
    }

    #[test]
    fn the_hasher_and_the_secret_derive_the_same_key() {
        let from_secret = SealKey::derive(&secret("s3"), GUARDRAIL_TOKEN_CONTEXT);
        let from_hasher = SealKey::from_hasher(&KeyHasher::new(&secret("s3")), GUARDRAIL_TOKEN_CONTEXT);
        let sealed = seal(&from_secret, "abc").unwrap();
        assert_eq!(open(&from_hasher, &sealed).unwrap().expose_secret(), "abc");
    }

    #[test]
    fn wrong_key_context_or_tampering_is_refused() {
        let key = SealKey::derive(&secret("s1"), GUARDRAIL_TOKEN_CONTEXT);
        let sealed = seal(&key, "token").unwrap();
        let other_secret = SealKey::derive(&secret("s2"), GUARDRAIL_TOKEN_CONTEXT);
        assert_eq!(open(&other_secret, &sealed).unwrap_err(), SealError::Open);
        let other_context = SealKey::derive(&secret("s1"), "flowgate/secretbox/v1/other");
        assert_eq!(open(&other_context, &sealed).unwrap_err(), SealError::Open);
        for index in [0, NONCE_LEN, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[index] ^= 1;
            assert_eq!(open(&key, &tampered).unwrap_err(), SealError::Open, "byte {index}");
        }
        assert_eq!(open(&key, &sealed[..NONCE_LEN + TAG_LEN - 1]).unwrap_err(), SealError::Open);
        assert_eq!(open(&key, b"").unwrap_err(), SealError::Open);
    }

    #[test]
    fn debug_never_shows_key_material() {
        let key = SealKey::derive(&secret("hidden-secret"), GUARDRAIL_TOKEN_CONTEXT);
        let text = format!("{key:?}");
        assert!(text.contains("guardrail-http-token") && !text.contains("hidden"), "{text}");
    }
}
