use super::*;

#[test]
fn insert_sql_numbers_every_placeholder() {
    let sql = insert_sql(flowgate_db::Backend::Postgres, 2);
    assert!(sql.contains("($1, $2,"));
    assert!(sql.contains("$52)"));
    assert!(!sql.contains("$53"));
    assert!(sql.ends_with("ON CONFLICT (request_id) DO NOTHING"));
    let sql = insert_sql(flowgate_db::Backend::Sqlite, 2);
    assert_eq!(sql.matches('?').count(), 52);
    assert!(!sql.contains('$'));
}

#[test]
fn statements_cover_every_row_with_few_sizes() {
    for rows in [0, 1, 2, 3, 255, 256, 257, 1000, 50_000] {
        let sizes: Vec<usize> = statement_sizes(rows).collect();
        assert_eq!(sizes.iter().sum::<usize>(), rows, "{rows}");
        assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= ROWS_PER_STATEMENT), "{sizes:?}");
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
    }
}

#[test]
fn spool_round_trips_records_in_order() {
    let dir = std::env::temp_dir().join(format!("flowgate-spool-{}", uuid_like()));
    let spool = Spool::new(&dir);
    let records: Vec<AuditRecord> = (0..3)
        .map(|i| AuditRecord { request_id: format!("r{i}"), ts: i, route: "/v1/x".into(), ..AuditRecord::default() })
        .collect();
    spool.append(&records[..2]).unwrap();
    spool.append(&records[2..]).unwrap();
    assert_eq!(spool.read().unwrap(), records);
    spool.clear().unwrap();
    assert!(spool.read().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

/// A burst far beyond the queue: records past the overflow threshold go to files, which the
/// writer replays; every record ends up in the database exactly once and no file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_queue_spills_to_disk_and_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("flowgate-overflow-{}", uuid_like()));
    let database = Database::connect(None, &dir, 2, Duration::from_secs(5)).await.unwrap();
    flowgate_db::migrate::run(&database).await.unwrap();
    let spool_dir = dir.join("audit-spool");
    let metrics = flowgate_common::metrics::Metrics::default();
    let sink = AuditSink::start(database.clone(), spool_dir.clone(), true, &metrics, &Tasks::default());
    let total = QUEUE_CAPACITY + 2 * OVERFLOW_SPILL + 7;
    for i in 0..total {
        sink.record(AuditRecord {
            request_id: format!("req-{i:08}"),
            ts: i64::try_from(i).unwrap(),
            route: "/v1/chat/completions".into(),
            status: 200,
            ..AuditRecord::default()
        });
    }
    // The writer sleeps 200 ms between batches, so the burst overflowed the queue.
    assert!(sink.0.overflow.lock().unwrap().len() < OVERFLOW_SPILL, "memory past the threshold");
    sink.flush().await;
    let spilled = usize::try_from(sink.0.spooled.get()).unwrap();
    assert!(spilled >= 2 * OVERFLOW_SPILL, "only {spilled} records went to overflow files");
    // Debug builds on a loaded 2-core machine have taken over 30 s to write the 70,007 rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let count = loop {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_records").fetch_one(database.pool()).await.unwrap();
        if usize::try_from(count).unwrap() == total || std::time::Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(usize::try_from(count).unwrap(), total);
    assert!(spill_files(&spool_dir).is_empty(), "overflow files left behind");
    assert_eq!(sink.0.spills.load(Ordering::Acquire), 0);
    let _ = std::fs::remove_dir_all(dir);
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// A half-written overflow file is never listed for replay, and one left by a crash is promoted
/// at start: its complete lines reach the database, its torn last line is skipped.
#[tokio::test]
async fn half_written_overflow_files_are_not_replayed_early_and_are_recovered_after_a_crash() {
    let dir = std::env::temp_dir().join(format!("flowgate-part-{}", uuid_like()));
    let spool_dir = dir.join("audit-spool");
    std::fs::create_dir_all(&spool_dir).unwrap();
    let part = spool_dir.join(format!("overflow-000000000000001-000000.ndjson{PART}"));
    let records: Vec<AuditRecord> = (0..2)
        .map(|i| AuditRecord { request_id: format!("p{i}"), ts: i, route: "/v1/x".into(), ..AuditRecord::default() })
        .collect();
    Spool::at(part.clone()).append(&records).unwrap();
    assert!(spill_files(&spool_dir).is_empty(), "a .part file is not an overflow file yet");
    std::fs::OpenOptions::new().append(true).open(&part).unwrap().write_all(b"{\"request_id\":\"torn").unwrap();

    let database = Database::connect(None, &dir, 2, Duration::from_secs(5)).await.unwrap();
    flowgate_db::migrate::run(&database).await.unwrap();
    let sink = AuditSink::start(
        database.clone(),
        spool_dir.clone(),
        true,
        &flowgate_common::metrics::Metrics::default(),
        &Tasks::default(),
    );
    sink.flush().await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT request_id FROM audit_records ORDER BY request_id")
        .fetch_all(database.pool())
        .await
        .unwrap();
    assert_eq!(ids, vec!["p0", "p1"]);
    assert!(spill_files(&spool_dir).is_empty() && !part.exists(), "nothing left behind");
    let _ = std::fs::remove_dir_all(dir);
}
