//! Every dialect's pieces run on their engine and mean the same there: conflict-ignoring inserts,
//! upserts (replace, add, larger, smaller), the 64-bit cast of a sum, integer division.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::time::Duration;

use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, Set, migrate};
use flowgate_test_utils::{Engine, TempDir, ThrowawayDb};
use secrecy::SecretString;

async fn exercise(db: &Database) {
    migrate::run(db).await.unwrap();
    let upsert = db.dialect().upsert(
        "spend",
        &["key_id", "period_start"],
        &[
            Set::Add("spent_nanos"),
            Set::Max("prompt_tokens"),
            Set::Min("completion_tokens"),
            Set::Replace("updated_at"),
        ],
    );
    let sql = format!(
        "INSERT INTO spend (key_id, tenant_id, period_start, spent_nanos, prompt_tokens, completion_tokens, requests, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7){upsert}"
    );
    for (spent, prompt, completion, at) in [(5_i64, 10_i64, 10_i64, 1_i64), (7, 3, 30, 2), (1, 20, 4, 3)] {
        sqlx::query(&db.sql(&sql))
            .bind("k")
            .bind("t")
            .bind(86_400_000_i64 * 3 + 5)
            .bind(spent)
            .bind(prompt)
            .bind(completion)
            .bind(at)
            .execute(db.pool())
            .await
            .unwrap();
    }
    let ignore = format!(
        "INSERT INTO spend (key_id, tenant_id, period_start, spent_nanos, updated_at) VALUES ($1, $2, $3, 999, 9){}",
        db.dialect().on_conflict_ignore(&["key_id", "period_start"])
    );
    sqlx::query(&db.sql(&ignore)).bind("k").bind("t").bind(86_400_000_i64 * 3 + 5).execute(db.pool()).await.unwrap();
    let sql = format!(
        "SELECT spent_nanos, prompt_tokens, completion_tokens, updated_at, {} AS day, \
         CAST(COALESCE(SUM(spent_nanos), 0) AS {}) AS total FROM spend WHERE key_id = $1 \
         GROUP BY spent_nanos, prompt_tokens, completion_tokens, updated_at, period_start",
        db.dialect().int_div("period_start", 86_400_000),
        db.dialect().bigint()
    );
    let row = sqlx::query(&db.sql(&sql)).bind("k").fetch_one(db.pool()).await.unwrap();
    let got: Vec<i64> = (0..6).map(|i| row.try_get::<i64, _>(i).unwrap()).collect();
    assert_eq!(got, [13, 20, 4, 3, 3, 13], "{:?}", db.backend());
}

#[tokio::test]
async fn dialects_mean_the_same_on_sqlite() {
    let dir = TempDir::new();
    exercise(&Database::connect(None, dir.path(), 2, Duration::from_secs(5)).await.unwrap()).await;
}

async fn on(engine: Engine) {
    let Some(throwaway) = ThrowawayDb::create_on(engine).await else { return };
    let dir = TempDir::new();
    let url = SecretString::from(throwaway.url.clone());
    let db = Database::connect(Some(&url), dir.path(), 2, Duration::from_secs(5)).await.unwrap();
    exercise(&db).await;
    db.close().await;
    throwaway.drop_db().await;
}

#[tokio::test]
async fn dialects_mean_the_same_on_postgres() {
    on(Engine::Postgres).await;
}

#[tokio::test]
async fn dialects_mean_the_same_on_mariadb() {
    on(Engine::MySql).await;
}
