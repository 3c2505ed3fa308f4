//! The audit trail: one record per proxied request (rejected ones included), written off the hot
//! path in batches, and never lost.
//!
//! Requests hand records to a bounded queue without waiting, after their text was cleaned and
//! bounded ([`sanitise`]). A writer task inserts them in batches (every 200 ms, one transaction
//! of multi-row `INSERT`s of up to 256 rows). When the database is unreachable, batches are
//! appended to a spool file in the data directory (`audit-spool/spool.ndjson`, fsynced) and
//! replayed in order once it answers again, before newer records; replays are idempotent
//! (`ON CONFLICT (request_id) DO NOTHING`), so a crash between insert and truncation cannot
//! duplicate rows. When the queue is full, records overflow into memory rather than being
//! dropped, with a metric and a log line; past 10,000 such records they move to an overflow file
//! in the spool directory (replayed like the spool), so memory stays bounded. Shutdown drains the
//! queue after the HTTP server has drained.
//!
//! A write error is classified ([`reject`]): an unavailable database keeps the records for a
//! retry (spool); a batch the database refuses is split in halves until each refused record
//! stands alone, the others are written, and each refused one goes to `audit-spool/
//! dead-letter.ndjson` with its error, counted (`flowgate_audit_records_rejected_total`) and
//! logged once. One bad record never holds back the others.
//!
//! Prompts and answers are not recorded, except for tenants with `store_prompts`: theirs are
//! redacted (PII and secrets replaced by placeholders, by the compliance service) before the
//! record is queued, and not stored at all when redaction is unavailable.

pub(crate) mod reject;
pub(crate) mod sanitise;

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use flowgate_db::{Database, sqlx};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Records queued in memory before overflow.
const QUEUE_CAPACITY: usize = 50_000;
/// Records held in memory beyond the queue before they are moved to a file in the spool
/// directory: what bounds the audit trail's memory under sustained overload.
const OVERFLOW_SPILL: usize = 10_000;
/// Time between batches: the longest a record waits in memory.
const BATCH_WAIT: Duration = Duration::from_millis(200);

// One request, as the audit trail keeps it: the record type and its columns are shared with
// the api-server, which reads them back.
use flowgate_common::tasks::Tasks;
use flowgate_contracts::audit::AUDIT_COLUMNS;
pub(crate) use flowgate_contracts::audit::AuditRecord;

use self::reject::{DeadLetter, Failure};

enum Message {
    Record(Box<AuditRecord>),
    Flush(oneshot::Sender<()>),
}

/// Where requests hand their records. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditSink(Arc<Inner>);

struct Inner {
    enabled: bool,
    /// Records still being completed (see [`AuditSink::hold`]).
    holds: std::sync::atomic::AtomicUsize,
    tx: mpsc::Sender<Message>,
    overflow: Mutex<VecDeque<AuditRecord>>,
    depth: Gauge,
    overflowed: Counter,
    spooled: Counter,
    spool_bytes: Arc<AtomicI64>,
    /// Where overflow files go (`overflow-*.ndjson`), next to the spool.
    spool_dir: PathBuf,
    /// Overflow files written and not yet replayed.
    spills: AtomicU64,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").finish_non_exhaustive()
    }
}

impl AuditSink {
    /// Starts the writer for `database`, spooling into `spool_dir` when it is unreachable.
    pub(crate) fn start(
        database: Database,
        spool_dir: PathBuf,
        enabled: bool,
        metrics: &flowgate_common::metrics::Metrics,
        tasks: &Tasks,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let depth = Gauge::default();
        let overflowed = Counter::default();
        let spool_gauge: Gauge = Gauge::default();
        let written = Counter::default();
        let spooled = Counter::default();
        let rejected = Counter::default();
        metrics.register("audit_queue_depth", "Audit records waiting to be written", depth.clone());
        metrics.register("audit_queue_overflow", "Audit records that found the queue full", overflowed.clone());
        metrics.register("audit_spool_bytes", "Size of the audit spool file", spool_gauge.clone());
        metrics.register("audit_records_written", "Audit records inserted into the database", written.clone());
        metrics.register("audit_records_spooled", "Audit records written to the spool file", spooled.clone());
        metrics.register(
            "audit_records_rejected",
            "Audit records the database refused, moved to the dead-letter file",
            rejected.clone(),
        );
        let spool_bytes = Arc::new(AtomicI64::new(0));
        let inner = Arc::new(Inner {
            enabled,
            holds: std::sync::atomic::AtomicUsize::new(0),
            tx,
            overflow: Mutex::new(VecDeque::new()),
            depth: depth.clone(),
            overflowed,
            spooled: spooled.clone(),
            spool_bytes,
            spills: AtomicU64::new({
                promote_parts(&spool_dir);
                u64::try_from(spill_files(&spool_dir).len()).unwrap_or(0)
            }),
            spool_dir: spool_dir.clone(),
        });
        let writer = Writer {
            database,
            spool: Spool::new(&spool_dir),
            dead_letter: DeadLetter::new(&spool_dir),
            sink: inner.clone(),
            spool_gauge,
            written,
            spooled,
            rejected,
            outage: std::sync::atomic::AtomicBool::new(false),
        };
        tasks.spawn("audit-writer", writer.run(rx));
        Self(inner)
    }

    /// Queues `record` without waiting.
    pub(crate) fn record(&self, record: AuditRecord) {
        let inner = &self.0;
        if !inner.enabled {
            return;
        }
        inner.depth.inc();
        let returned = match inner.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(message) | mpsc::error::TrySendError::Closed(message)) => message,
        };
        if let Message::Record(record) = returned {
            let mut overflow = inner.overflow.lock().unwrap_or_else(PoisonError::into_inner);
            if overflow.is_empty() {
                tracing::warn!("audit queue full: holding records in memory until the writer catches up");
            }
            overflow.push_back(*record);
            inner.overflowed.inc();
            if overflow.len() >= OVERFLOW_SPILL {
                let records = std::mem::take(&mut *overflow);
                drop(overflow);
                self.spill(records);
            }
        }
    }

    /// Moves overflowing records to a new file in the spool directory, on a blocking thread; the
    /// writer replays such files before newer records. Memory stays bounded however long the
    /// database stays slower than the traffic.
    fn spill(&self, records: VecDeque<AuditRecord>) {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let name = format!("overflow-{:015}-{sequence:06}.ndjson", flowgate_db::now_millis());
        // Written under a `.part` name and renamed when complete, so the writer never replays (and
        // deletes) a file that is still being written.
        let done = self.0.spool_dir.join(&name);
        let spool = Spool::at(self.0.spool_dir.join(format!("{name}{PART}")));
        tracing::warn!(records = records.len(), "audit queue overloaded: moving held records to disk");
        let hold = self.hold();
        let inner = self.0.clone();
        let task = move || {
            let records: Vec<AuditRecord> = records.into();
            let count = records.len() as u64;
            // Counted before it can be seen, so the writer looks for it until it has replayed it.
            inner.spills.fetch_add(1, Ordering::AcqRel);
            match spool.append(&records).and_then(|_| std::fs::rename(&spool.path, &done)) {
                Ok(()) => {
                    inner.spooled.inc_by(count);
                    inner.depth.dec_by(i64::try_from(count).unwrap_or(0));
                }
                Err(error) => {
                    let _ =
                        inner.spills.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
                    let _ = spool.clear();
                    tracing::error!(%error, "cannot write an audit overflow file; keeping the records in memory");
                    inner.overflow.lock().unwrap_or_else(PoisonError::into_inner).extend(records);
                }
            }
            drop(hold);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(task)),
            Err(_) => task(),
        }
    }

    /// Marks a record as coming: [`flush`](Self::flush) waits (up to 10 s) for it until the hold
    /// is dropped. For records completed on a task after the response (redacted prompts).
    pub(crate) fn hold(&self) -> AuditHold {
        self.0.holds.fetch_add(1, Ordering::AcqRel);
        AuditHold(self.0.clone())
    }

    /// Writes (or spools) everything queued so far; called at shutdown after requests drained.
    pub(crate) async fn flush(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.0.holds.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.0.tx.send(Message::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
        }
    }
}

/// A record on its way; see [`AuditSink::hold`].
pub(crate) struct AuditHold(Arc<Inner>);

impl std::fmt::Debug for AuditHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHold").finish_non_exhaustive()
    }
}

impl Drop for AuditHold {
    fn drop(&mut self) {
        self.0.holds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Suffix of an overflow file being written.
const PART: &str = ".part";

/// Overflow files left half-written by a crash are kept: their complete lines are replayed.
fn promote_parts(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(PART))
            && name.starts_with("overflow-")
            && let Err(error) = std::fs::rename(&path, dir.join(name))
        {
            tracing::error!(%error, "cannot recover a half-written audit overflow file");
        }
    }
}

/// Overflow files in `dir`, oldest first.
fn spill_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("overflow-") && name.ends_with(".ndjson"))
        })
        .collect();
    files.sort();
    files
}

/// The append-only spool file.
struct Spool {
    path: PathBuf,
}

impl Spool {
    fn new(dir: &std::path::Path) -> Self {
        Self::at(dir.join("spool.ndjson"))
    }

    fn at(path: PathBuf) -> Self {
        Self { path }
    }

    fn append(&self, records: &[AuditRecord]) -> std::io::Result<u64> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        let mut buffer = Vec::new();
        for record in records {
            serde_json::to_writer(&mut buffer, record).map_err(std::io::Error::other)?;
            buffer.push(b'\n');
        }
        file.write_all(&buffer)?;
        file.sync_data()?;
        Ok(file.metadata()?.len())
    }

    fn read(&self) -> std::io::Result<Vec<AuditRecord>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter_map(|line| match serde_json::from_str(line) {
                    Ok(record) => Some(record),
                    Err(error) => {
                        tracing::error!(%error, "skipping an unreadable audit spool line");
                        None
                    }
                })
                .collect()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    /// Replaces the file's records with `records` (removes it when there are none). Written beside
    /// it and renamed over it, so a crash leaves either the old content or the new. Returns the
    /// new size.
    fn replace(&self, records: &[AuditRecord]) -> std::io::Result<u64> {
        if records.is_empty() {
            return self.clear().map(|()| 0);
        }
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(".next");
        let next = Spool::at(self.path.with_file_name(name));
        next.clear()?;
        let size = next.append(records)?;
        std::fs::rename(&next.path, &self.path)?;
        Ok(size)
    }

    fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    fn exists(&self) -> bool {
        self.path.exists()
    }
}

struct Writer {
    database: Database,
    spool: Spool,
    dead_letter: DeadLetter,
    sink: Arc<Inner>,
    spool_gauge: Gauge,
    written: Counter,
    spooled: Counter,
    rejected: Counter,
    /// The database was found unavailable and has not taken a write since (logged once).
    outage: std::sync::atomic::AtomicBool,
}

/// Refused records logged one by one per batch; past that, one line says how many more (each one
/// is in the dead-letter file with its error).
const REJECTIONS_LOGGED: usize = 10;

/// Rows per INSERT statement at most (26 parameters a row: far below SQLite's 32,766 and
/// PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 256;

/// The columns of type double that may be empty. Their parameters are always bound as a double:
/// an empty one as NaN, which the statement turns back into NULL (`NULLIF(?, 'NaN')`; SQLite
/// also stores a bound NaN as NULL).
///
/// Why: a parameter's type must not depend on its value. sqlx's `Any` driver (0.8.6) binds a NULL
/// `f64` as a 4-byte `float4` (`AnyArguments::convert_to` swaps the NULL types of `Real` and
/// `Double`), and PostgreSQL keeps the parameter types a statement was prepared with: on a fresh
/// connection (after a restart), a batch whose first statement had a NULL `ttft_ms` made every
/// later statement of that size with a value there fail with "incorrect binary data format in
/// bind parameter 15". Text parameters are `TEXT` whether NULL or not, integers are never NULL.
const NULLABLE_DOUBLES: [&str; 2] = ["upstream_latency_ms", "ttft_ms"];

/// A nullable double as the statement's parameter: always a double where the engine turns NaN
/// back into NULL (see [`NULLABLE_DOUBLES`]), else the value or NULL.
fn nullable_double(value: Option<f64>, nan_for_null: bool) -> Option<f64> {
    if nan_for_null { Some(value.unwrap_or(f64::NAN)) } else { value }
}

/// `INSERT ... VALUES (...), (...)` for `rows` rows that leaves a row already present alone
/// (`ON CONFLICT (request_id) DO NOTHING` or the engine's equivalent), built from constants
/// only, with the engine's placeholders ([`flowgate_db::Dialect::placeholder`]).
fn insert_sql(backend: flowgate_db::Backend, rows: usize) -> String {
    let dialect = backend.dialect();
    let nan_for_null = dialect.nan_for_null_doubles();
    let mut sql = format!("INSERT INTO audit_records ({}) VALUES ", AUDIT_COLUMNS.join(", "));
    let mut number = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (index, column) in AUDIT_COLUMNS.iter().enumerate() {
            if index > 0 {
                sql.push_str(", ");
            }
            number += 1;
            let nullable_double = nan_for_null && NULLABLE_DOUBLES.contains(column);
            if nullable_double {
                sql.push_str("NULLIF(");
            }
            dialect.placeholder(number, &mut sql);
            if nullable_double {
                sql.push_str(", 'NaN')");
            }
        }
        sql.push(')');
    }
    sql.push_str(&dialect.on_conflict_ignore(&["request_id"]));
    sql
}

/// Statement sizes for `rows` rows: full statements, then powers of two, so that a handful of
/// distinct statements (each prepared once per connection) serve every batch size.
fn statement_sizes(mut rows: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if rows == 0 {
            return None;
        }
        let size = if rows >= ROWS_PER_STATEMENT { ROWS_PER_STATEMENT } else { 1 << rows.ilog2() };
        rows -= size;
        Some(size)
    })
}

/// Most rows one transaction writes: a Galera cluster certifies a transaction's whole write set
/// at once, so a replayed spool of many thousand records is committed in pieces of this size,
/// far under `wsrep_max_ws_rows` / `wsrep_max_ws_size`.
const ROWS_PER_TRANSACTION: usize = 4 * ROWS_PER_STATEMENT;

/// Inserts `records`, up to [`ROWS_PER_TRANSACTION`] per transaction, each run again when the
/// engine reports a conflict (a deadlock, a Galera certification failure): rows already present
/// are left alone, so neither a retry nor a second attempt after a failed piece writes one twice.
async fn insert(database: &Database, records: &[AuditRecord]) -> Result<(), sqlx::Error> {
    for piece in records.chunks(ROWS_PER_TRANSACTION) {
        database.retry(|| insert_once(database, piece)).await?;
    }
    Ok(())
}

async fn insert_once(database: &Database, records: &[AuditRecord]) -> Result<(), sqlx::Error> {
    // One transaction per batch: one commit (and fsync) however many statements it takes.
    let mut conn = database.pool().acquire().await?;
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    let result = match insert_chunks(database.backend(), &mut conn, records).await {
        Ok(()) => sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ()),
        Err(error) => Err(error),
    };
    if result.is_err() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
        // Never hand a connection with a transaction still open back to the pool.
        drop(conn.detach());
    }
    result
}

/// A JSON array column; the empty array (the usual case) without serialising.
fn json_array<T: Serialize>(items: &[T]) -> std::borrow::Cow<'static, str> {
    if items.is_empty() {
        return std::borrow::Cow::Borrowed("[]");
    }
    std::borrow::Cow::Owned(serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned()))
}

fn json_object(map: &std::collections::BTreeMap<String, String>) -> std::borrow::Cow<'static, str> {
    if map.is_empty() {
        return std::borrow::Cow::Borrowed("{}");
    }
    std::borrow::Cow::Owned(serde_json::to_string(map).unwrap_or_else(|_| "{}".to_owned()))
}

async fn insert_chunks(
    backend: flowgate_db::Backend,
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    records: &[AuditRecord],
) -> Result<(), sqlx::Error> {
    let nan_for_null = backend.dialect().nan_for_null_doubles();
    let mut rest = records;
    for size in statement_sizes(records.len()) {
        let (chunk, next) = rest.split_at(size);
        rest = next;
        let sql = insert_sql(backend, chunk.len());
        let json: Vec<_> = chunk
            .iter()
            .map(|r| (json_array(&r.fallbacks), json_array(&r.guardrail_actions), json_object(&r.metadata)))
            .collect();
        let mut query = sqlx::query(&sql);
        // Text is bound by reference: nothing is copied until the driver encodes it.
        for (r, (fallbacks, guardrail_actions, metadata)) in chunk.iter().zip(&json) {
            query = query
                .bind(r.request_id.as_str())
                .bind(r.ts)
                .bind(r.tenant_id.as_deref())
                .bind(r.key_id.as_deref())
                .bind(r.client_ip.as_deref())
                .bind(r.route.as_str())
                .bind(r.model_requested.as_deref())
                .bind(r.model_used.as_deref())
                .bind(r.deployment.as_deref())
                .bind(r.provider.as_deref())
                .bind(r.status)
                .bind(r.error_code.as_deref())
                .bind(r.latency_ms)
                .bind(nullable_double(r.upstream_latency_ms, nan_for_null))
                .bind(nullable_double(r.ttft_ms, nan_for_null))
                .bind(r.prompt_tokens)
                .bind(r.completion_tokens)
                .bind(r.cost_nanos)
                .bind(i64::from(r.cache_hit))
                .bind(i64::from(r.stream))
                .bind(r.retries)
                .bind(fallbacks.as_ref())
                .bind(guardrail_actions.as_ref())
                .bind(r.prompt.as_deref())
                .bind(r.response.as_deref())
                .bind(i64::from(r.usage_estimated))
                .bind(metadata.as_ref());
        }
        query.execute(&mut **conn).await?;
    }
    Ok(())
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        // Records spooled by an earlier run go first.
        self.write(Vec::new()).await;
        let mut closed = false;
        while !closed {
            // The writer sleeps between batches instead of waiting on the queue, so a request
            // never has to wake it: records collect in the queue and are taken in one go.
            tokio::time::sleep(BATCH_WAIT).await;
            let mut batch: Vec<AuditRecord> = Vec::new();
            let mut flushes = Vec::new();
            // Bounded, so that a queue refilled as fast as it is drained still gets written.
            for _ in 0..QUEUE_CAPACITY {
                match rx.try_recv() {
                    Ok(Message::Record(record)) => batch.push(*record),
                    Ok(Message::Flush(done)) => flushes.push(done),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            batch.extend(self.sink.overflow.lock().unwrap_or_else(PoisonError::into_inner).drain(..));
            let count = batch.len();
            if count > 0 || self.spool.exists() || self.sink.spills.load(Ordering::Acquire) > 0 {
                self.write(batch).await;
                self.sink.depth.dec_by(i64::try_from(count).unwrap_or(0));
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    /// Replays the overflow files, oldest first; `false` when the database became unavailable
    /// (what was not written is kept in its file for the next attempt).
    async fn replay_spills(&self) -> bool {
        if self.sink.spills.load(Ordering::Acquire) == 0 {
            return true;
        }
        for path in spill_files(&self.sink.spool_dir) {
            let spill = Spool::at(path);
            let records = match spill.read() {
                Ok(records) => records,
                Err(error) => {
                    tracing::error!(%error, "cannot read an audit overflow file");
                    continue;
                }
            };
            let count = records.len();
            let stored = self.store(records).await;
            if stored.kept.is_empty() {
                if let Err(error) = spill.clear() {
                    tracing::error!(%error, "cannot remove a replayed audit overflow file");
                }
                let _ =
                    self.sink.spills.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
            } else if stored.kept.len() < count
                && let Err(error) = spill.replace(&stored.kept)
            {
                tracing::error!(%error, "cannot rewrite a partly replayed audit overflow file");
            }
            if !stored.available {
                return false;
            }
        }
        true
    }

    /// Inserts `batch` after replaying the spool and overflow files; what the database cannot
    /// take now is appended to the spool.
    async fn write(&self, batch: Vec<AuditRecord>) {
        if self.spool.exists() {
            match self.spool.read() {
                Ok(spooled) if !spooled.is_empty() => {
                    let count = spooled.len();
                    let stored = self.store(spooled).await;
                    if stored.kept.is_empty() {
                        tracing::info!(records = count, "audit spool replayed into the database");
                        if let Err(error) = self.spool.clear() {
                            tracing::error!(%error, "cannot clear the replayed audit spool");
                        }
                        self.sink.spool_bytes.store(0, Ordering::Relaxed);
                        self.spool_gauge.set(0);
                    } else if stored.kept.len() < count {
                        // Only what is left, so that nothing is written or refused twice.
                        match self.spool.replace(&stored.kept) {
                            Ok(size) => {
                                let size = i64::try_from(size).unwrap_or(i64::MAX);
                                self.sink.spool_bytes.store(size, Ordering::Relaxed);
                                self.spool_gauge.set(size);
                            }
                            // Kept whole: the records already in are skipped on the next replay.
                            Err(error) => tracing::error!(%error, "cannot rewrite the partly replayed audit spool"),
                        }
                    }
                    if !stored.available {
                        self.spool_batch(&batch);
                        return;
                    }
                }
                Ok(_) => {
                    let _ = self.spool.clear();
                }
                Err(error) => tracing::error!(%error, "cannot read the audit spool"),
            }
        }
        if !self.replay_spills().await {
            self.spool_batch(&batch);
            return;
        }
        if batch.is_empty() {
            return;
        }
        let stored = self.store(batch).await;
        self.spool_batch(&stored.kept);
    }

    /// Inserts `records`, each one in the table or, when the database refuses it, in the
    /// dead-letter file. A batch that fails on its content is split in halves, and each half
    /// tried again, until every refused record stands alone: k bad records among n cost about
    /// 2·k·log2(n) extra statements, and the good ones are all written. What is not written
    /// because the database became unavailable is returned, in order, to be kept.
    async fn store(&self, records: Vec<AuditRecord>) -> Stored {
        // The refused records (by index) with their errors, and the ranges of `records` still to
        // write, the next one last.
        let mut refused: Vec<(usize, sqlx::Error)> = Vec::new();
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..records.len());
        let mut available = true;
        while let Some(range) = pending.pop() {
            let Some(slice) = records.get(range.clone()) else { continue };
            if slice.is_empty() {
                continue;
            }
            let error = match insert(&self.database, slice).await {
                Ok(()) => {
                    self.written.inc_by(slice.len() as u64);
                    if self.outage.swap(false, Ordering::Relaxed) {
                        tracing::info!("audit database available again; writing records");
                    }
                    continue;
                }
                Err(error) => error,
            };
            match reject::classify(self.database.backend(), &error) {
                Failure::Rejected if slice.len() == 1 => refused.push((range.start, error)),
                Failure::Rejected => {
                    let middle = range.start + slice.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
                Failure::Unavailable => {
                    if !self.outage.swap(true, Ordering::Relaxed) {
                        tracing::warn!(%error, "audit database unavailable; spooling records to disk");
                    }
                    pending.push(range);
                    available = false;
                    break;
                }
            }
        }
        let mut kept = self.move_to_dead_letter(&records, refused);
        pending.sort_by_key(|range| range.start);
        for range in pending {
            kept.extend(records.get(range).unwrap_or_default().iter().cloned());
        }
        Stored { kept, available }
    }

    /// Moves the records the database refused to the dead-letter file (one write, fsynced),
    /// counted and logged once each (the id and the error, never the content; past
    /// [`REJECTIONS_LOGGED`], one line for the rest). Returns them if the file cannot be written,
    /// to be kept for a retry.
    fn move_to_dead_letter(&self, records: &[AuditRecord], refused: Vec<(usize, sqlx::Error)>) -> Vec<AuditRecord> {
        let refused: Vec<(&AuditRecord, sqlx::Error)> =
            refused.into_iter().filter_map(|(index, error)| Some((records.get(index)?, error))).collect();
        if refused.is_empty() {
            return Vec::new();
        }
        if let Err(io) = self.dead_letter.append(&refused) {
            tracing::error!(%io, records = refused.len(), "cannot write the audit dead-letter file; keeping refused records in the spool");
            return refused.into_iter().map(|(record, _)| record.clone()).collect();
        }
        self.rejected.inc_by(refused.len() as u64);
        for (record, error) in refused.iter().take(REJECTIONS_LOGGED) {
            tracing::error!(
                request_id = %record.request_id,
                %error,
                file = reject::DEAD_LETTER_FILE,
                "the database refused an audit record; moved to the dead-letter file",
            );
        }
        if let Some(more) = refused.len().checked_sub(REJECTIONS_LOGGED).filter(|more| *more > 0) {
            tracing::error!(
                records = more,
                file = reject::DEAD_LETTER_FILE,
                "the database refused more audit records of this batch; moved to the dead-letter file",
            );
        }
        Vec::new()
    }

    fn spool_batch(&self, batch: &[AuditRecord]) {
        if batch.is_empty() {
            return;
        }
        match self.spool.append(batch) {
            Ok(size) => {
                self.spooled.inc_by(batch.len() as u64);
                let size = i64::try_from(size).unwrap_or(i64::MAX);
                self.sink.spool_bytes.store(size, Ordering::Relaxed);
                self.spool_gauge.set(size);
            }
            Err(error) => {
                // Last resort: keep them in memory for the next attempt.
                tracing::error!(%error, records = batch.len(), "cannot write the audit spool; keeping records in memory");
                self.sink.overflow.lock().unwrap_or_else(PoisonError::into_inner).extend(batch.iter().cloned());
            }
        }
    }
}

/// What [`Writer::store`] did with a batch.
#[derive(Debug)]
struct Stored {
    /// Records neither written nor dead-lettered: to keep for the next attempt.
    kept: Vec<AuditRecord>,
    /// False when the database became unavailable.
    available: bool,
}

#[cfg(test)]
mod tests;
