//! The audit guard writes exactly one record whatever way a request ends.

#![expect(clippy::disallowed_methods, reason = "a request is played on a task the test cancels or lets panic")]

use std::time::Duration;

use flowgate_common::tasks::Tasks;
use flowgate_db::{Database, sqlx};

use super::*;

struct Trail {
    sink: AuditSink,
    database: Database,
    dir: std::path::PathBuf,
}

async fn trail() -> Trail {
    let dir = std::env::temp_dir().join(format!("flowgate-guard-{}", uuid::Uuid::new_v4().simple()));
    let database = Database::connect(None, &dir, 2, Duration::from_secs(5)).await.unwrap();
    flowgate_db::migrate::run(&database).await.unwrap();
    let metrics = flowgate_common::metrics::Metrics::default();
    let sink = AuditSink::start(database.clone(), dir.join("audit-spool"), true, &metrics, &Tasks::default());
    Trail { sink, database, dir }
}

impl Trail {
    /// (status, error code) of every record written, after the writer has flushed.
    async fn records(&self) -> Vec<(i64, Option<String>)> {
        self.sink.flush().await;
        let rows: Vec<(i64, Option<String>)> =
            sqlx::query_as("SELECT status, error_code FROM audit_records ORDER BY ts, request_id")
                .fetch_all(self.database.pool())
                .await
                .unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
        rows
    }
}

#[tokio::test]
async fn a_finished_guard_writes_once_with_its_outcome() {
    let trail = trail().await;
    let mut guard = AuditGuard::start(trail.sink.clone(), "/v1/chat/completions".into());
    guard.record().status = 200;
    guard.finish();
    assert_eq!(trail.records().await, vec![(200, None)]);
}

#[tokio::test]
async fn a_rejection_is_written_with_its_status_and_code() {
    let trail = trail().await;
    let mut guard = AuditGuard::start(trail.sink.clone(), "/v1/chat/completions".into());
    guard.reject(&ProxyError::ModelNotFound("x".into()));
    drop(guard);
    assert_eq!(trail.records().await, vec![(404, Some("model_not_found".to_owned()))]);
}

/// A request future dropped mid-way (the client went away) still leaves its record.
#[tokio::test]
async fn a_cancelled_request_is_written_as_client_closed() {
    let trail = trail().await;
    let sink = trail.sink.clone();
    let request = tokio::spawn(async move {
        let _guard = AuditGuard::start(sink, "/v1/chat/completions".into());
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    assert_eq!(trail.records().await, vec![(CLIENT_CLOSED, Some("client_disconnected".to_owned()))]);
}

/// A stage that panics unwinds through the guard, which records an internal error.
#[tokio::test]
async fn a_panicking_stage_is_written_as_an_internal_error() {
    let trail = trail().await;
    let sink = trail.sink.clone();
    let request = tokio::spawn(async move {
        let _guard = AuditGuard::start(sink, "/v1/chat/completions".into());
        panic!("a stage failed");
    });
    assert!(request.await.unwrap_err().is_panic());
    assert_eq!(trail.records().await, vec![(500, Some("internal_error".to_owned()))]);
}

/// Text from the client is cleaned and bounded before the record is queued, on every path.
#[tokio::test]
async fn a_record_is_sanitised_before_it_is_queued() {
    let trail = trail().await;
    let mut guard = AuditGuard::start(trail.sink.clone(), format!("/v1/{}", "x".repeat(10_000)));
    guard.record().model_requested = Some("fake-gpt\0x".to_owned());
    guard.reject(&ProxyError::ModelNotFound("fake-gpt\0x".into()));
    drop(guard);
    trail.sink.flush().await;
    let (route, model): (String, String) = sqlx::query_as("SELECT route, model_requested FROM audit_records")
        .fetch_one(trail.database.pool())
        .await
        .unwrap();
    assert_eq!(model, "fake-gpt\u{FFFD}x");
    assert!(route.starts_with("/v1/xxx") && route.len() <= crate::audit::sanitise::FIELD_CAP, "{}", route.len());
    let _ = std::fs::remove_dir_all(&trail.dir);
}
