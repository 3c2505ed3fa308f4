//! Stateless, signed MCP session ids: every replica can check one without shared memory.
//!
//! An id is `base64url(payload) "." base64url(tag)`, the payload being
//! `issued-at-seconds ":" protocol-version ":" key-id ":" nonce` and the tag HMAC-SHA256 over it
//! (first 16 bytes) under a key derived from the server secret. A session belongs to the virtual
//! key that opened it: another key presenting it gets 404, as does an expired or forged id, and
//! the client starts a new session (the Streamable HTTP transport's rule for an unknown session).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flowgate_common::keys::KeyHasher;
use ring::rand::{SecureRandom, SystemRandom};

/// Context the signing key is derived under.
const CONTEXT: &str = "flowgate mcp session v1";
/// How long a session lasts; after that the client initialises again.
pub(crate) const SESSION_TTL_SECS: u64 = 24 * 60 * 60;
/// Bytes of the tag kept.
const TAG_LEN: usize = 16;

/// What a valid session id says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The protocol version negotiated at `initialize`.
    pub(crate) protocol_version: String,
}

/// Issues and checks session ids.
#[derive(Clone)]
pub(crate) struct Signer {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// The signer keyed from the server secret (the hasher's key), for this one purpose.
    pub(crate) fn new(hasher: &KeyHasher) -> Self {
        let material = hasher.hash(CONTEXT);
        Self { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &material) }
    }

    /// A new session id for `key_id` at `protocol_version`, issued at `now` (unix seconds).
    pub(crate) fn issue(&self, key_id: &str, protocol_version: &str, now: u64) -> String {
        let mut nonce = [0u8; 9];
        // A failed random source leaves a zero nonce: the id is still signed and bound to the key.
        let _ = SystemRandom::new().fill(&mut nonce);
        let payload = format!("{now}:{protocol_version}:{key_id}:{}", URL_SAFE_NO_PAD.encode(nonce));
        let tag = ring::hmac::sign(&self.key, payload.as_bytes());
        let tag = tag.as_ref().get(..TAG_LEN).unwrap_or_default();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
    }

    /// The session `id` names, if it is genuine, unexpired at `now` and belongs to `key_id`.
    pub(crate) fn check(&self, id: &str, key_id: &str, now: u64) -> Option<Session> {
        let (payload, tag) = id.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let expected = ring::hmac::sign(&self.key, &payload);
        let expected = expected.as_ref().get(..TAG_LEN)?;
        if !flowgate_common::auth::constant_time_eq(expected, &tag) {
            return None;
        }
        let payload = String::from_utf8(payload).ok()?;
        let mut parts = payload.splitn(4, ':');
        let issued: u64 = parts.next()?.parse().ok()?;
        let protocol_version = parts.next()?;
        let owner = parts.next()?;
        if owner != key_id || now.saturating_sub(issued) > SESSION_TTL_SECS || issued > now.saturating_add(300) {
            return None;
        }
        Some(Session { protocol_version: protocol_version.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn signer(secret: &str) -> Signer {
        Signer::new(&KeyHasher::new(&SecretString::from(secret.to_owned())))
    }

    #[test]
    fn a_session_is_valid_on_any_signer_with_the_same_secret_for_its_key_only() {
        let id = signer("s1").issue("key-a", "2025-11-25", 1_000);
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)), "visible ASCII only: {id}");
        let other_replica = signer("s1");
        assert_eq!(
            other_replica.check(&id, "key-a", 1_010),
            Some(Session { protocol_version: "2025-11-25".to_owned() })
        );
        assert_eq!(other_replica.check(&id, "key-b", 1_010), None, "another key's session");
        assert_eq!(signer("s2").check(&id, "key-a", 1_010), None, "another secret");
        assert_eq!(other_replica.check(&id, "key-a", 1_000 + SESSION_TTL_SECS + 1), None, "expired");
    }

    #[test]
    fn forged_and_garbled_ids_are_refused() {
        let signer = signer("s1");
        let id = signer.issue("key-a", "2025-06-18", 1_000);
        let (payload, tag) = id.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode("1000:2025-06-18:key-b:AAAA");
        for bad in [
            String::new(),
            "no-dot".to_owned(),
            format!("{payload}."),
            format!("{forged_payload}.{tag}"),
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 16])),
            "%%%.%%%".to_owned(),
        ] {
            assert_eq!(signer.check(&bad, "key-a", 1_001), None, "{bad}");
        }
    }
}
