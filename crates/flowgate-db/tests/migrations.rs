//! Migrations against real PostgreSQL and SQLite: first run applies, second run is a no-op.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::time::Duration;

use flowgate_db::{Backend, Database, migrate};
use flowgate_test_utils::{TempDir, ThrowawayDb};
use secrecy::SecretString;

const TABLES: [&str; 6] = ["tenants", "virtual_keys", "spend", "guardrails", "policies", "audit_records"];

async fn assert_tables_exist(db: &Database) {
    for table in TABLES {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let count: i64 = flowgate_db::sqlx::query_scalar(sql.as_str()).fetch_one(db.pool()).await.unwrap();
        assert_eq!(count, 0, "{table} exists and is empty");
    }
}

#[tokio::test]
async fn migrations_apply_once_on_postgres() {
    let Some(throwaway) = ThrowawayDb::create().await else { return };
    let url = SecretString::from(throwaway.url.clone());
    let dir = TempDir::new();
    let db = Database::connect(Some(&url), dir.path(), 2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(db.backend(), Backend::Postgres);

    let first = migrate::run(&db).await.unwrap();
    assert_eq!(first.applied.first().map(String::as_str), Some("V1__initial_schema"), "{:?}", first.applied);
    let second = migrate::run(&db).await.unwrap();
    assert!(second.applied.is_empty(), "second run applied {:?}", second.applied);
    assert_tables_exist(&db).await;

    db.close().await;
    throwaway.drop_db().await;
}

#[tokio::test]
async fn migrations_apply_once_on_sqlite() {
    let dir = TempDir::new();
    let db = Database::connect(None, dir.path(), 2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(db.backend(), Backend::Sqlite);
    assert!(dir.path().join("flowgate.db").exists());

    let first = migrate::run(&db).await.unwrap();
    assert_eq!(first.applied.first().map(String::as_str), Some("V1__initial_schema"), "{:?}", first.applied);
    let second = migrate::run(&db).await.unwrap();
    assert!(second.applied.is_empty());
    assert_tables_exist(&db).await;
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error() {
    let dir = TempDir::new();
    let url = SecretString::from("postgres://postgres:hunter2@127.0.0.1:1/nope".to_owned());
    let error = Database::connect(Some(&url), dir.path(), 1, Duration::from_secs(2)).await.unwrap_err().to_string();
    assert!(error.contains("cannot connect"), "{error}");
    assert!(!error.contains("hunter2"), "password leaked: {error}");
}
