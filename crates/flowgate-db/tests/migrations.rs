//! Migrations against real PostgreSQL, MariaDB and SQLite: first run applies, second run is a
//! no-op; and the three streams hold the same versions under the same names.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::time::Duration;

use flowgate_db::{Backend, Database, migrate};
use flowgate_test_utils::{Engine, TempDir, ThrowawayDb};
use secrecy::SecretString;

const TABLES: [&str; 6] = ["tenants", "virtual_keys", "spend", "guardrails", "policies", "audit_records"];

async fn assert_tables_exist(db: &Database) {
    for table in TABLES {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let count: i64 = flowgate_db::sqlx::query_scalar(sql.as_str()).fetch_one(db.pool()).await.unwrap();
        assert_eq!(count, 0, "{table} exists and is empty");
    }
}

async fn migrations_apply_once_on(engine: Engine, backend: Backend) {
    let Some(throwaway) = ThrowawayDb::create_on(engine).await else { return };
    let url = SecretString::from(throwaway.url.clone());
    let dir = TempDir::new();
    let db = Database::connect(Some(&url), dir.path(), 2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(db.backend(), backend);
    assert!(migrate::check_current(&db).await.is_err(), "an empty database is not current");

    let first = migrate::run(&db).await.unwrap();
    assert_eq!(first.applied.first().map(String::as_str), Some("V1__initial_schema"), "{:?}", first.applied);
    let second = migrate::run(&db).await.unwrap();
    assert!(second.applied.is_empty(), "second run applied {:?}", second.applied);
    assert_tables_exist(&db).await;
    migrate::check_current(&db).await.unwrap();

    db.close().await;
    throwaway.drop_db().await;
}

#[tokio::test]
async fn migrations_apply_once_on_postgres() {
    migrations_apply_once_on(Engine::Postgres, Backend::Postgres).await;
}

#[tokio::test]
async fn migrations_apply_once_on_mariadb() {
    migrations_apply_once_on(Engine::MySql, Backend::MySql).await;
}

/// The `V<n>__<name>.sql` files of one stream.
fn stream(engine: &str) -> std::collections::BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(engine);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('V') && name.ends_with(".sql"))
        .collect()
}

/// Every PostgreSQL migration has a MySQL and a SQLite counterpart with the same version and
/// name, and neither has one PostgreSQL lacks: the three schemas move together.
#[test]
fn every_migration_has_a_counterpart_in_each_stream() {
    let postgres = stream("postgres");
    assert!(postgres.contains("V1__initial_schema.sql"), "{postgres:?}");
    for engine in ["mysql", "sqlite"] {
        let other = stream(engine);
        let missing: Vec<_> = postgres.difference(&other).collect();
        let extra: Vec<_> = other.difference(&postgres).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{engine}: missing {missing:?}, not in postgres {extra:?}");
    }
}

/// The MySQL stream never uses what Galera does not replicate or a cluster cannot share: every
/// table is InnoDB with a primary key; no `LOCK TABLES`, `GET_LOCK` or MyISAM.
#[test]
fn mysql_migrations_are_galera_safe() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/mysql");
    for name in stream("mysql") {
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        let sql: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n")
            .to_uppercase();
        for banned in ["LOCK TABLES", "GET_LOCK", "MYISAM", "ENGINE = MEMORY", "ENGINE=MEMORY"] {
            assert!(!sql.contains(banned), "{name} uses {banned}");
        }
        for table in sql.split("CREATE TABLE").skip(1) {
            let body = table.split(';').next().unwrap_or_default();
            assert!(body.contains("PRIMARY KEY"), "{name}: a table without a primary key: {body}");
            assert!(body.contains("ENGINE = INNODB"), "{name}: a table not declared InnoDB: {body}");
        }
    }
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
