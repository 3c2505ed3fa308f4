//! Provider credentials sealed at rest, against real SQLite and PostgreSQL: no plaintext in the
//! row, a wrong KEK refused clearly, a KEK rotation re-wraps every record, the routing revision
//! moves with every write. The Vault Transit test runs only when `VAULT_ADDR` (and `VAULT_TOKEN`)
//! are set, against that Vault (a Transit engine at `transit/` with a key `flowgate-test`).

#![expect(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::sync::Arc;
use std::time::Duration;

use flowgate_db::credentials::{self, CredentialError, KekProvider, Keyring, LocalKek, VaultTransit};
use flowgate_db::sqlx::Row;
use flowgate_db::{Database, migrate, routing};
use flowgate_test_utils::{TempDir, ThrowawayDb};
use secrecy::{ExposeSecret, SecretString};

fn kek(byte: u8) -> Arc<dyn KekProvider> {
    Arc::new(LocalKek::from_bytes(&[byte; 32]).unwrap())
}

async fn exercise(db: &Database) {
    migrate::run(db).await.unwrap();
    let old = Keyring::new(kek(1), None);
    let secrets = ["sk-live-0123456789abcdef", "another-provider-key-xyz"];
    let before = routing::revision(db).await.unwrap();
    for (i, secret) in secrets.iter().enumerate() {
        let name = format!("cred-{i}");
        let sealed = credentials::seal(&old, &name, &SecretString::from((*secret).to_owned())).await.unwrap();
        let (created, _) = credentials::put(db, &name, Some("test"), &sealed).await.unwrap();
        assert!(created);
    }
    assert_eq!(routing::revision(db).await.unwrap(), before + 2, "every write moves the routing revision");

    // The row holds no plaintext, in any column.
    let rows = flowgate_db::sqlx::query(
        "SELECT name, description, kek_id, wrapped_key, sealed_value FROM provider_credentials",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let text: String = (0..5).map(|i| row.try_get::<String, _>(i).unwrap()).collect::<Vec<_>>().join("|");
        for secret in secrets {
            assert!(!text.contains(secret), "plaintext in the row: {text}");
            assert!(!text.contains(&secret[..8]), "part of the plaintext in the row");
        }
        let kek_id: String = row.try_get("kek_id").unwrap();
        assert_eq!(kek_id, old.current().key_id());
    }
    let opened = credentials::open_all(db, Some(&old)).await.unwrap();
    assert_eq!(opened["cred-0"].expose_secret(), secrets[0]);
    assert_eq!(credentials::check(db, Some(&old)).await.unwrap(), 2);

    // A wrong KEK is refused before anything is decrypted, naming both ids.
    let wrong = Keyring::new(kek(9), None);
    let error = credentials::check(db, Some(&wrong)).await.unwrap_err();
    assert!(matches!(error, CredentialError::WrongKek { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains(old.current().key_id()) && text.contains(wrong.current().key_id()), "{text}");
    assert!(matches!(credentials::check(db, None).await.unwrap_err(), CredentialError::WrongKek { .. }));

    // Rotation: the new KEK with the old one as previous re-wraps every record, once.
    let rotating = Keyring::new(kek(2), Some(kek(1)));
    assert_eq!(credentials::rewrap(db, &rotating).await.unwrap(), 2);
    assert_eq!(credentials::rewrap(db, &rotating).await.unwrap(), 0, "a second run has nothing to do");
    let new_only = Keyring::new(kek(2), None);
    for info in credentials::list(db).await.unwrap() {
        assert_eq!(info.kek_id, new_only.current().key_id());
    }
    let opened = credentials::open_all(db, Some(&new_only)).await.unwrap();
    assert_eq!(opened["cred-1"].expose_secret(), secrets[1]);
    assert!(matches!(credentials::check(db, Some(&old)).await.unwrap_err(), CredentialError::WrongKek { .. }));

    // A record moved to another name does not open (the name is bound).
    let sealed = credentials::all_sealed(db).await.unwrap();
    let (_, record) = &sealed[0];
    assert!(credentials::open(&new_only, "cred-1", record).await.is_err());

    assert!(credentials::delete(db, "cred-0").await.unwrap().is_some());
    assert!(credentials::delete(db, "cred-0").await.unwrap().is_none());
}

#[tokio::test]
async fn credentials_are_sealed_checked_and_rewrapped_on_sqlite() {
    let dir = TempDir::new();
    let db = Database::connect(None, dir.path(), 2, Duration::from_secs(5)).await.unwrap();
    exercise(&db).await;
}

#[tokio::test]
async fn credentials_are_sealed_checked_and_rewrapped_on_postgres() {
    let Some(throwaway) = ThrowawayDb::create().await else { return };
    let url = SecretString::from(throwaway.url.clone());
    let dir = TempDir::new();
    let db = Database::connect(Some(&url), dir.path(), 2, Duration::from_secs(5)).await.unwrap();
    exercise(&db).await;
    db.close().await;
    throwaway.drop_db().await;
}

#[test]
fn kek_text_is_base64_or_hex_of_32_bytes() {
    let hex = SecretString::from("01".repeat(32));
    let b64 = SecretString::from("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".to_owned());
    let a = LocalKek::parse(&hex).unwrap();
    let b = LocalKek::parse(&b64).unwrap();
    assert_eq!(a.key_id(), b.key_id());
    assert!(a.key_id().starts_with("local:"));
    for bad in ["short", "AQEB", &"zz".repeat(32)] {
        let error = LocalKek::parse(&SecretString::from(bad.to_owned())).unwrap_err().to_string();
        assert!(error.starts_with("the key-encryption key"), "{error}");
        assert!(!error.contains(bad) || bad.len() < 5, "the key is not echoed: {error}");
    }
}

/// Runs only when `VAULT_ADDR` and `VAULT_TOKEN` point at a Vault with the Transit engine at
/// `transit/` and a key `flowgate-test` (`vault secrets enable transit; vault write -f
/// transit/keys/flowgate-test`); otherwise it returns at once, saying so.
#[tokio::test]
async fn vault_transit_wraps_and_unwraps_when_a_vault_is_configured() {
    let (Ok(addr), Ok(token)) = (std::env::var("VAULT_ADDR"), std::env::var("VAULT_TOKEN")) else {
        eprintln!("VAULT_ADDR / VAULT_TOKEN not set: the Vault Transit test does not run");
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let vault: Arc<dyn KekProvider> =
        Arc::new(VaultTransit::new(&addr, SecretString::from(token), "transit", "flowgate-test").unwrap());
    let keyring = Keyring::new(vault, None);
    let sealed = credentials::seal(&keyring, "vaulted", &SecretString::from("sk-vault".to_owned())).await.unwrap();
    assert!(sealed.wrapped_key.starts_with("vault:v"));
    assert_eq!(credentials::open(&keyring, "vaulted", &sealed).await.unwrap().expose_secret(), "sk-vault");
    assert!(credentials::open(&keyring, "other-name", &sealed).await.is_err());
}
