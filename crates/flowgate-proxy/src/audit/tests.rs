use super::*;

#[test]
fn insert_sql_numbers_every_placeholder() {
    let sql = insert_sql(flowgate_db::Backend::Postgres, 2);
    assert!(sql.contains("($1, $2,"));
    assert!(sql.contains("$54)"));
    assert!(!sql.contains("$55"));
    assert!(sql.ends_with("ON CONFLICT (request_id) DO NOTHING"));
    let sql = insert_sql(flowgate_db::Backend::Sqlite, 2);
    assert_eq!(sql.matches('?').count(), 54);
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

#[test]
fn a_partly_replayed_spool_is_replaced_by_what_is_left() {
    let dir = std::env::temp_dir().join(format!("flowgate-replace-{}", uuid_like()));
    let spool = Spool::new(&dir);
    let records: Vec<AuditRecord> = (0..3).map(|i| record(&format!("r{i}"), "m")).collect();
    spool.append(&records).unwrap();
    let size = spool.replace(&records[2..]).unwrap();
    assert_eq!(spool.read().unwrap(), records[2..]);
    assert_eq!(size, std::fs::metadata(&spool.path).unwrap().len());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no file left beside it");
    assert_eq!(spool.replace(&[]).unwrap(), 0);
    assert!(!spool.exists());
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
    // Made first, so that the burst itself is only moves: the writer wakes every 200 ms and
    // drains up to a queue's worth, which a slow burst (debug build, busy machine) would let it
    // do halfway through.
    let records: Vec<AuditRecord> = (0..total)
        .map(|i| AuditRecord {
            request_id: format!("req-{i:08}"),
            ts: i64::try_from(i).unwrap(),
            route: "/v1/chat/completions".into(),
            status: 200,
            ..AuditRecord::default()
        })
        .collect();
    for record in records {
        sink.record(record);
    }
    // The burst overflowed the queue: what did not fit went to files, never more than a
    // threshold's worth kept in memory.
    assert!(sink.0.overflow.lock().unwrap().len() < OVERFLOW_SPILL, "memory past the threshold");
    sink.flush().await;
    let spilled = usize::try_from(sink.0.spooled.get()).unwrap();
    assert!(spilled >= OVERFLOW_SPILL, "only {spilled} records went to overflow files");
    // Debug builds on a loaded 2-core machine have taken over 30 s to write the 70,007 rows.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let count = loop {
        let count: i64 = sqlx::query_scalar(&database.sql("SELECT COUNT(*) FROM audit_records"))
            .fetch_one(database.pool())
            .await
            .unwrap();
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
    let ids: Vec<String> =
        sqlx::query_scalar(&database.sql("SELECT request_id FROM audit_records ORDER BY request_id"))
            .fetch_all(database.pool())
            .await
            .unwrap();
    assert_eq!(ids, vec!["p0", "p1"]);
    assert!(spill_files(&spool_dir).is_empty() && !part.exists(), "nothing left behind");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn nullable_doubles_are_bound_as_doubles_and_turned_back_into_null() {
    let sql = insert_sql(flowgate_db::Backend::Postgres, 1);
    assert!(sql.contains("$13, NULLIF($14, 'NaN'), NULLIF($15, 'NaN'), $16"), "{sql}");
    let sql = insert_sql(flowgate_db::Backend::Sqlite, 1);
    assert_eq!(sql.matches("NULLIF(?, 'NaN')").count(), NULLABLE_DOUBLES.len());
    for column in NULLABLE_DOUBLES {
        assert!(AUDIT_COLUMNS.contains(&column), "{column}");
    }
    assert!(nullable_double(None, true).is_some_and(f64::is_nan));
    assert_eq!(nullable_double(Some(12.5), true).map(f64::to_bits), Some(12.5_f64.to_bits()));
    assert_eq!(nullable_double(None, false), None);
    let sql = insert_sql(flowgate_db::Backend::MySql, 1);
    assert!(!sql.contains("NULLIF") && !sql.contains('$'), "{sql}");
    assert_eq!(sql.matches('?').count(), AUDIT_COLUMNS.len());
    assert!(sql.ends_with("ON DUPLICATE KEY UPDATE request_id = request_id"), "{sql}");
}

/// A migrated database of `backend` in `dir`, and the throwaway PostgreSQL database behind it;
/// `None` when PostgreSQL is unreachable outside CI (skip).
async fn database(
    backend: flowgate_db::Backend,
    dir: &std::path::Path,
    connections: u32,
) -> Option<(Database, Option<flowgate_test_utils::ThrowawayDb>)> {
    let (url, throwaway) = match backend {
        flowgate_db::Backend::Sqlite => (None, None),
        flowgate_db::Backend::Postgres => {
            let db = flowgate_test_utils::ThrowawayDb::create().await?;
            (Some(secrecy::SecretString::from(db.url.clone())), Some(db))
        }
        flowgate_db::Backend::MySql => {
            let db = flowgate_test_utils::ThrowawayDb::create_mysql().await?;
            (Some(secrecy::SecretString::from(db.url.clone())), Some(db))
        }
    };
    let database = Database::connect(url.as_ref(), dir, connections, Duration::from_secs(5)).await.unwrap();
    flowgate_db::migrate::run(&database).await.unwrap();
    Some((database, throwaway))
}

fn record(id: &str, model: &str) -> AuditRecord {
    AuditRecord {
        request_id: id.to_owned(),
        ts: 1,
        route: "/v1/chat/completions".into(),
        model_requested: Some(model.to_owned()),
        status: 200,
        ..AuditRecord::default()
    }
}

/// A NULL in a double column never changes the statement's parameter types: on PostgreSQL, on
/// one connection, a statement first run with NULL `ttft_ms` and `upstream_latency_ms` is run
/// again with values (this failed with "incorrect binary data format in bind parameter 14"), and
/// the other way round; values and NULLs come back as written.
async fn null_then_value(backend: flowgate_db::Backend) {
    let dir = std::env::temp_dir().join(format!("flowgate-binds-{}", uuid_like()));
    let Some((database, throwaway)) = database(backend, &dir, 1).await else { return };
    let with = |id: &str, value: Option<f64>| AuditRecord {
        upstream_latency_ms: value,
        ttft_ms: value.map(|v| v * 2.0),
        ..record(id, "m")
    };
    insert(&database, &[with("a", None)]).await.unwrap();
    insert(&database, &[with("b", Some(12.25))]).await.unwrap();
    insert(&database, &[with("c", Some(0.0)), with("d", None)]).await.unwrap();
    insert(&database, &[with("e", None), with("f", Some(1e-3))]).await.unwrap();
    let rows: Vec<(String, Option<f64>, Option<f64>)> = sqlx::query_as(
        &database.sql("SELECT request_id, upstream_latency_ms, ttft_ms FROM audit_records ORDER BY request_id"),
    )
    .fetch_all(database.pool())
    .await
    .unwrap();
    let expected = [("a", None), ("b", Some(12.25)), ("c", Some(0.0)), ("d", None), ("e", None), ("f", Some(1e-3))];
    let expected: Vec<(String, Option<f64>, Option<f64>)> =
        expected.iter().map(|(id, v)| ((*id).to_owned(), *v, v.map(|v| v * 2.0))).collect();
    assert_eq!(rows, expected);
    database.pool().close().await;
    if let Some(db) = throwaway {
        db.drop_db().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_null_never_changes_a_statement_parameter_types_on_postgres() {
    null_then_value(flowgate_db::Backend::Postgres).await;
}

#[tokio::test]
async fn a_null_never_changes_a_statement_parameter_types_on_sqlite() {
    null_then_value(flowgate_db::Backend::Sqlite).await;
}

#[tokio::test]
async fn a_null_never_changes_a_statement_parameter_types_on_mariadb() {
    null_then_value(flowgate_db::Backend::MySql).await;
}

/// Incompressible text: PostgreSQL cannot fit it in a btree index row (`54000`).
fn noise(len: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(state % 62) as usize])
        })
        .collect()
}

/// Records the database refuses, mixed with good ones, straight to the sink (so not sanitised:
/// as spooled by an older version, or refused by a rule of the database): each good one is in
/// the table, each refused one in the dead-letter file with its error, counted, and nothing is
/// spooled. Some of them are in a spool left by an earlier run, which used to be replayed (and
/// refused) forever, holding back every newer record.
async fn poison_among_good_records(backend: flowgate_db::Backend) {
    let dir = std::env::temp_dir().join(format!("flowgate-poison-{}", uuid_like()));
    let Some((database, throwaway)) = database(backend, &dir, 2).await else { return };
    // A rule of this database: some records are refused whatever their text.
    let rule = match backend {
        flowgate_db::Backend::Postgres => {
            "ALTER TABLE audit_records ADD CONSTRAINT refuse_poison CHECK (model_requested IS DISTINCT FROM 'poison')"
        }
        flowgate_db::Backend::Sqlite => {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_records WHEN NEW.model_requested = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poison records are refused'); END"
        }
        flowgate_db::Backend::MySql => {
            "ALTER TABLE audit_records ADD CONSTRAINT refuse_poison \
             CHECK (model_requested IS NULL OR model_requested <> 'poison')"
        }
    };
    sqlx::query(&database.sql(rule)).execute(database.pool()).await.unwrap();
    let postgres = backend == flowgate_db::Backend::Postgres;
    let mysql = backend == flowgate_db::Backend::MySql;
    // What this database refuses: the rule on all; on PostgreSQL also a NUL and an index row
    // too large, on MariaDB a key id longer than its column (SQLite stores all of them).
    let refused = |r: &AuditRecord| {
        r.model_requested.as_deref() == Some("poison")
            || (postgres && (r.model_requested.as_deref().is_some_and(|m| m.contains('\0')) || r.key_id.is_some()))
            || (mysql && r.key_id.is_some())
    };
    let spool_dir = dir.join("audit-spool");
    let spooled: Vec<AuditRecord> = (0..6)
        .map(|i| match i {
            1 => record("s1", "fake-gpt\0x"),
            4 => record("s4", "poison"),
            _ => record(&format!("s{i}"), "m"),
        })
        .collect();
    Spool::new(&spool_dir).append(&spooled).unwrap();

    let metrics = flowgate_common::metrics::Metrics::default();
    let sink = AuditSink::start(database.clone(), spool_dir.clone(), true, &metrics, &Tasks::default());
    let live: Vec<AuditRecord> = (0..40)
        .map(|i| match i {
            3 => record("l03", "fake-gpt\0x"),
            17 | 18 => record(&format!("l{i}"), "poison"),
            25 => AuditRecord { key_id: Some(noise(8000)), ..record("l25", "m") },
            39 => record("l39", "poison"),
            _ => record(&format!("l{i:02}"), "m"),
        })
        .collect();
    for record in &live {
        sink.record(record.clone());
    }
    sink.flush().await;

    let all: Vec<&AuditRecord> = spooled.iter().chain(&live).collect();
    let mut good: Vec<String> = all.iter().filter(|r| !refused(r)).map(|r| r.request_id.clone()).collect();
    let mut bad: Vec<String> = all.iter().filter(|r| refused(r)).map(|r| r.request_id.clone()).collect();
    good.sort();
    bad.sort();
    assert_eq!(
        bad.len(),
        if postgres {
            7
        } else if mysql {
            5
        } else {
            4
        },
        "{bad:?}"
    );
    let stored: Vec<String> =
        sqlx::query_scalar(&database.sql("SELECT request_id FROM audit_records ORDER BY request_id"))
            .fetch_all(database.pool())
            .await
            .unwrap();
    assert_eq!(stored, good, "every good record is in the table");

    let text = std::fs::read_to_string(spool_dir.join(reject::DEAD_LETTER_FILE)).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let mut dead: Vec<String> =
        lines.iter().map(|line| line["record"]["request_id"].as_str().unwrap().to_owned()).collect();
    dead.sort();
    assert_eq!(dead, bad, "every refused record is in the dead-letter file, once");
    for line in &lines {
        assert!(line["error"].as_str().is_some_and(|e| !e.is_empty()), "{line}");
        assert!(line["code"].is_string() && line["rejected_at"].is_i64(), "{line}");
        let record: AuditRecord = serde_json::from_value(line["record"].clone()).unwrap();
        assert!(all.contains(&&record), "the record is kept as it was");
    }
    assert!(!Spool::new(&spool_dir).exists(), "nothing left in the spool");
    let exposition = metrics.encode();
    assert!(exposition.contains(&format!("flowgate_audit_records_rejected_total {}", bad.len())), "{exposition}");
    assert!(exposition.contains("flowgate_audit_records_spooled_total 0"), "{exposition}");

    // The writer is not stuck: later records go straight in.
    sink.record(record("z-later", "m"));
    sink.flush().await;
    let later: i64 =
        sqlx::query_scalar(&database.sql("SELECT COUNT(*) FROM audit_records WHERE request_id = 'z-later'"))
            .fetch_one(database.pool())
            .await
            .unwrap();
    assert_eq!(later, 1);
    database.pool().close().await;
    if let Some(db) = throwaway {
        db.drop_db().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_go_to_the_dead_letter_file_and_good_ones_to_the_table_on_postgres() {
    poison_among_good_records(flowgate_db::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_go_to_the_dead_letter_file_and_good_ones_to_the_table_on_sqlite() {
    poison_among_good_records(flowgate_db::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_go_to_the_dead_letter_file_and_good_ones_to_the_table_on_mariadb() {
    poison_among_good_records(flowgate_db::Backend::MySql).await;
}

/// An unavailable database is never taken for a refusal: everything is spooled, nothing is
/// dead-lettered, and it all goes in once the database is back.
#[tokio::test]
async fn an_unavailable_database_spools_and_never_dead_letters() {
    let dir = std::env::temp_dir().join(format!("flowgate-closed-{}", uuid_like()));
    let database = Database::connect(None, &dir, 1, Duration::from_secs(5)).await.unwrap();
    flowgate_db::migrate::run(&database).await.unwrap();
    let spool_dir = dir.join("audit-spool");
    // A closed pool answers every acquire with `PoolClosed`, as an unreachable server would.
    let closed = Database::connect(None, &dir, 1, Duration::from_secs(5)).await.unwrap();
    closed.pool().close().await;
    let metrics = flowgate_common::metrics::Metrics::default();
    let sink = AuditSink::start(closed, spool_dir.clone(), true, &metrics, &Tasks::default());
    for i in 0..5 {
        sink.record(record(&format!("r{i}"), if i == 2 { "poison" } else { "m" }));
    }
    sink.flush().await;
    assert_eq!(Spool::new(&spool_dir).read().unwrap().len(), 5);
    assert!(!spool_dir.join(reject::DEAD_LETTER_FILE).exists());
    assert!(metrics.encode().contains("flowgate_audit_records_rejected_total 0"));
    let metrics = flowgate_common::metrics::Metrics::default();
    let sink = AuditSink::start(database.clone(), spool_dir.clone(), true, &metrics, &Tasks::default());
    sink.flush().await;
    let count: i64 = sqlx::query_scalar(&database.sql("SELECT COUNT(*) FROM audit_records"))
        .fetch_one(database.pool())
        .await
        .unwrap();
    assert_eq!(count, 5);
    assert!(!Spool::new(&spool_dir).exists());
    let _ = std::fs::remove_dir_all(dir);
}
