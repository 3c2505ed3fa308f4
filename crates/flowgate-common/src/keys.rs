//! The virtual-key format: `sk-fg-{id}_{secret}{checksum}`.
//!
//! - `id`: 12 lowercase alphanumerics, public (safe in logs, metrics and URLs), the key's id.
//! - `secret`: 32 base62 characters from the OS random source (≈190 bits).
//! - `checksum`: 6 base62 characters of SHA-256 over the rest, so a mistyped or made-up key is
//!   rejected before any lookup.
//!
//! Keys are stored only as HMAC-SHA256 under a server secret ([`KeyHasher`]); the plaintext exists
//! only in the response that creates or rotates a key.

use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

/// Every virtual key starts with this.
pub const PREFIX: &str = "sk-fg-";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// Length of a well-formed key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Why a presented key was rejected without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Not `sk-fg-...` or the wrong length or alphabet.
    #[error("not a Flowgate virtual key")]
    Malformed,
    /// Well-formed but the checksum does not match (a typo or a forgery).
    #[error("virtual key checksum mismatch")]
    Checksum,
    /// The OS random source failed.
    #[error("random source unavailable")]
    Random,
}

fn random_string(alphabet: &[u8], len: usize) -> Result<String, KeyFormatError> {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let limit = 256 - (256 % alphabet.len()); // rejection sampling: no modulo bias
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf).map_err(|_| KeyFormatError::Random)?;
        for &b in &buf {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    Ok(out)
}

fn checksum(body: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
    let mut n = u64::from_be_bytes(digest.as_ref()[..8].try_into().unwrap_or([0; 8]));
    let mut out = [0u8; CHECKSUM_LEN];
    for slot in &mut out {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A freshly generated key: its public id and the plaintext (shown once).
#[derive(Debug)]
pub struct NewKey {
    /// Public id.
    pub id: String,
    /// The whole key.
    pub plaintext: SecretString,
}

/// Generates a key with a new random id.
pub fn generate() -> Result<NewKey, KeyFormatError> {
    let id = random_string(ID_ALPHABET, ID_LEN)?;
    generate_for(&id)
}

/// Generates a new key for an existing id (rotation keeps the id).
pub fn generate_for(id: &str) -> Result<NewKey, KeyFormatError> {
    let secret = random_string(BASE62, SECRET_LEN)?;
    let body = format!("{PREFIX}{id}_{secret}");
    let plaintext = format!("{body}{}", checksum(&body));
    Ok(NewKey { id: id.to_owned(), plaintext: SecretString::from(plaintext) })
}

/// Checks format and checksum; returns the key's public id.
pub fn parse(key: &str) -> Result<&str, KeyFormatError> {
    if key.len() != KEY_LEN || !key.is_ascii() {
        return Err(KeyFormatError::Malformed);
    }
    let rest = key.strip_prefix(PREFIX).ok_or(KeyFormatError::Malformed)?;
    let (id, tail) = rest.split_at(ID_LEN);
    if !id.bytes().all(|b| ID_ALPHABET.contains(&b)) || !tail.starts_with('_') {
        return Err(KeyFormatError::Malformed);
    }
    let tail = &tail[1..];
    if !tail.bytes().all(|b| BASE62.contains(&b)) {
        return Err(KeyFormatError::Malformed);
    }
    let (body, check) = key.split_at(key.len() - CHECKSUM_LEN);
    if !crate::auth::constant_time_eq(checksum(body).as_bytes(), check.as_bytes()) {
        return Err(KeyFormatError::Checksum);
    }
    Ok(id)
}

/// HMAC-SHA256 under the server secret: what the database stores and the proxy looks up by.
#[derive(Clone)]
pub struct KeyHasher {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    /// A hasher keyed by `secret`.
    pub fn new(secret: &SecretString) -> Self {
        Self { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose_secret().as_bytes()) }
    }

    /// The 32-byte keyed hash of `key`.
    pub fn hash(&self, key: &str) -> Vec<u8> {
        ring::hmac::sign(&self.key, key.as_bytes()).as_ref().to_vec()
    }
}

/// A random 32-byte secret as 43 base62 characters, for generated admin keys and hash secrets.
pub fn random_secret(prefix: &str) -> Result<SecretString, KeyFormatError> {
    Ok(SecretString::from(format!("{prefix}{}", random_string(BASE62, 43)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_their_id() {
        let key = generate().unwrap();
        let text = key.plaintext.expose_secret();
        assert!(text.starts_with("sk-fg-"));
        assert_eq!(text.len(), KEY_LEN);
        assert_eq!(parse(text).unwrap(), key.id);
    }

    #[test]
    fn any_single_character_change_is_rejected() {
        let key = generate().unwrap();
        let text = key.plaintext.expose_secret().to_owned();
        for index in PREFIX.len()..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[index] = if bytes[index] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != text {
                assert!(parse(&changed).is_err(), "accepted a change at {index}");
            }
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in ["", "sk-fg-", "sk-proj-abc", "Bearer x", "sk-fg-ÄÄÄÄÄÄÄÄÄÄÄÄ_", &"x".repeat(KEY_LEN)]
        {
            assert_eq!(parse(garbage), Err(KeyFormatError::Malformed), "{garbage}");
        }
    }

    /// `edge/test/vectors.json`: keys the edge Worker must accept and refuse exactly as [`parse`]
    /// does. Built here from fixed ids and secrets and compared with the checked-in file, so the
    /// two implementations cannot drift; `FLOWGATE_BLESS=1` rewrites the file.
    #[test]
    fn edge_vectors_match_this_implementation() {
        let key_for = |id: &str, secret: &str| {
            let body = format!("{PREFIX}{id}_{secret}");
            format!("{body}{}", checksum(&body))
        };
        let base62 = String::from_utf8_lossy(BASE62).into_owned();
        let valid: Vec<(String, String)> = [
            ("000000000000", &base62[..32]),
            ("zzzzzzzzzzzz", &base62[30..62]),
            ("a1b2c3d4e5f6", "00000000000000000000000000000000"),
            ("key4edgetest", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
            ("9z8y7x6w5v4u", "Flowgate0Edge0Vectors0AreShared0"),
            ("qwertyuiopas", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"),
        ]
        .iter()
        .map(|(id, secret)| (key_for(id, secret), (*id).to_owned()))
        .collect();
        let good = &valid[2].0;
        let swap = |index: usize, with: &str| format!("{}{with}{}", &good[..index], &good[index + 1..]);
        let malformed = vec![
            String::new(),
            "sk-fg-".to_owned(),
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789".to_owned(),
            "garbage".to_owned(),
            "x".repeat(KEY_LEN),
            good[..KEY_LEN - 1].to_owned(),
            format!("{good}0"),
            good.replacen("sk-fg-", "sk-FG-", 1),
            good.replacen("sk-fg-", "sk_fg-", 1),
            swap(PREFIX.len(), "A"),
            swap(PREFIX.len() + 11, "-"),
            swap(PREFIX.len() + ID_LEN, "-"),
            swap(PREFIX.len() + ID_LEN + 5, "_"),
            swap(KEY_LEN - 1, "+"),
            format!("{}é", &good[..KEY_LEN - 2]),
        ];
        let wrong_checksum: Vec<String> = valid
            .iter()
            .map(|(key, _)| {
                let last = key.as_bytes()[KEY_LEN - 1];
                format!("{}{}", &key[..KEY_LEN - 1], if last == b'0' { '1' } else { '0' })
            })
            .chain([swap(PREFIX.len() + ID_LEN + 1, if good.as_bytes()[19] == b'1' { "2" } else { "1" })])
            .chain([swap(PREFIX.len() + 3, if good.as_bytes()[PREFIX.len() + 3] == b'q' { "r" } else { "q" })])
            .collect();
        for (key, id) in &valid {
            assert_eq!(parse(key), Ok(id.as_str()), "{key}");
        }
        for key in &malformed {
            assert_eq!(parse(key), Err(KeyFormatError::Malformed), "{key}");
        }
        for key in &wrong_checksum {
            assert_eq!(parse(key), Err(KeyFormatError::Checksum), "{key}");
        }
        let document = serde_json::json!({
            "description": "Written by flowgate-common (keys::tests::edge_vectors_match_this_implementation); read by the edge Worker's tests. Regenerate with FLOWGATE_BLESS=1 cargo test -p flowgate-common keys.",
            "key_length": KEY_LEN,
            "valid": valid.iter().map(|(key, id)| serde_json::json!({"key": key, "id": id})).collect::<Vec<_>>(),
            "malformed": malformed,
            "wrong_checksum": wrong_checksum,
        });
        let text = format!("{}\n", serde_json::to_string_pretty(&document).unwrap());
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../edge/test/vectors.json");
        if std::env::var_os("FLOWGATE_BLESS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{} is out of date: run FLOWGATE_BLESS=1 cargo test -p flowgate-common keys",
            path.display()
        );
    }

    #[test]
    fn hashes_depend_on_the_server_secret() {
        let a = KeyHasher::new(&SecretString::from("one"));
        let b = KeyHasher::new(&SecretString::from("two"));
        assert_eq!(a.hash("k").len(), 32);
        assert_eq!(a.hash("k"), a.hash("k"));
        assert_ne!(a.hash("k"), b.hash("k"));
    }
}
