//! MariaDB specifics against the real server: a deadlock (error 1213, which is also how a Galera
//! cluster reports a certification failure) is recognised through sqlx's `Any` driver and the
//! transaction is run again by `Database::retry`; the SQL a store writes once runs as written.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Backend, Database, Set, migrate};
use flowgate_test_utils::{TempDir, ThrowawayDb};
use secrecy::SecretString;

async fn mariadb() -> Option<(Database, ThrowawayDb, TempDir)> {
    let throwaway = ThrowawayDb::create_mysql().await?;
    let dir = TempDir::new();
    let url = SecretString::from(throwaway.url.clone());
    let db = Database::connect(Some(&url), dir.path(), 4, Duration::from_secs(5)).await.unwrap();
    assert_eq!(db.backend(), Backend::MySql);
    migrate::run(&db).await.unwrap();
    Some((db, throwaway, dir))
}

async fn touch(conn: &mut sqlx::AnyConnection, db: &Database, ids: &[&str], at: i64) -> Result<(), sqlx::Error> {
    for id in ids {
        sqlx::query(&db.sql("UPDATE tenants SET updated_at = $1 WHERE id = $2"))
            .bind(at)
            .bind(*id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Two transactions lock tenants in opposite orders: the engine kills the smaller one with 1213;
/// `retry` classifies it as transient and runs it again once the other has committed, and both
/// writes are there.
#[tokio::test]
async fn a_deadlocked_transaction_is_run_again_and_succeeds() {
    let Some((db, throwaway, _dir)) = mariadb().await else { return };
    for id in ["a", "b", "c", "d", "e"] {
        sqlx::query(&db.sql("INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, $2, 0, 0)"))
            .bind(id)
            .bind(format!("tenant-{id}"))
            .execute(db.pool())
            .await
            .unwrap();
    }
    let attempts = AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    let big = async {
        let mut conn = db.pool().acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
        touch(&mut conn, &db, &["a", "c", "d", "e"], 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        // `b` is held by the small transaction, which waits for `a`: a deadlock, and the small
        // one is the victim.
        touch(&mut conn, &db, &["b"], 1).await.unwrap();
        sqlx::query("COMMIT").execute(&mut *conn).await.unwrap();
    };
    let small = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        db.retry(|| async {
            attempts.fetch_add(1, Ordering::SeqCst);
            let mut conn = db.pool().acquire().await?;
            sqlx::query("BEGIN").execute(&mut *conn).await?;
            let result = async {
                touch(&mut conn, &db, &["b", "a"], 2).await?;
                sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ())
            }
            .await;
            if let Err(error) = &result {
                errors.lock().unwrap().push(error.to_string());
                assert!(db.dialect().retryable(error), "{error}");
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            result
        })
        .await
    };
    let ((), outcome) = tokio::join!(big, small);
    outcome.unwrap();
    assert!(attempts.load(Ordering::SeqCst) >= 2, "the victim was run again: {:?}", errors.lock().unwrap());
    assert!(errors.lock().unwrap().iter().any(|e| e.contains("1213")), "{:?}", errors.lock().unwrap());
    let rows = sqlx::query("SELECT id, updated_at FROM tenants ORDER BY id").fetch_all(db.pool()).await.unwrap();
    let values: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(values, [("a", 2), ("b", 2), ("c", 1), ("d", 1), ("e", 1)].map(|(id, v)| (id.to_owned(), v)));
    db.close().await;
    throwaway.drop_db().await;
}

/// A value longer than its column is refused, never stored cut (the session is strict); the
/// refusal is a data error, not an outage, and is not retried. A 4-byte character, a NUL and a
/// 100 KB text are stored as given.
#[tokio::test]
async fn values_are_stored_whole_or_refused() {
    let Some((db, throwaway, _dir)) = mariadb().await else { return };
    let long_name = "n".repeat(300);
    let error = sqlx::query(&db.sql("INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, $2, 0, 0)"))
        .bind("t1")
        .bind(&long_name)
        .execute(db.pool())
        .await
        .unwrap_err();
    let sqlx::Error::Database(database_error) = &error else { panic!("{error}") };
    assert!(db.dialect().rejects_data(database_error.as_ref()), "{error}");
    assert!(!db.dialect().retryable(&error), "{error}");

    let document = format!("{{\"note\": \"\u{1F600}\u{0}{}\"}}", "x".repeat(100_000));
    let upsert = db.dialect().upsert("tenants", &["id"], &[Set::Replace("metadata")]);
    let sql =
        format!("INSERT INTO tenants (id, name, metadata, created_at, updated_at) VALUES ($1, $2, $3, 0, 0){upsert}");
    for _ in 0..2 {
        sqlx::query(&db.sql(&sql)).bind("t2").bind("emoji \u{1F600}").bind(&document).execute(db.pool()).await.unwrap();
    }
    let row = sqlx::query(&db.sql("SELECT name, metadata FROM tenants WHERE id = $1"))
        .bind("t2")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("name"), "emoji \u{1F600}");
    assert_eq!(flowgate_db::text::text(&row, "metadata").unwrap(), document);
    db.close().await;
    throwaway.drop_db().await;
}
