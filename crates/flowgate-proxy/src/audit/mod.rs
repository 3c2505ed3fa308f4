//! The audit trail: one record per proxied request (rejected ones included), written off the hot
//! path in batches, and never lost.
//!
//! Requests hand records to a bounded queue without waiting. A writer task inserts them in
//! batches (every 200 ms, one transaction of multi-row `INSERT`s of up to 256 rows). When the
//! database is unreachable, batches are appended to a spool file in the data directory
//! (`audit-spool/spool.ndjson`, fsynced) and replayed in order once it answers again, before
//! newer records; replays are idempotent (`ON CONFLICT (request_id) DO NOTHING`), so a crash
//! between insert and truncation cannot duplicate rows. When the queue is full, records overflow
//! into memory rather than being dropped, with a metric and a log line; past 10,000 such records
//! they move to an overflow file in the spool directory (replayed like the spool), so memory stays
//! bounded. Shutdown drains the queue after the HTTP server has drained.
//!
//! Prompts and answers are not recorded, except for tenants with `store_prompts`: theirs are
//! redacted (PII and secrets replaced by placeholders, by the compliance service) before the
//! record is queued, and not stored at all when redaction is unavailable.

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
        metrics.register("audit_queue_depth", "Audit records waiting to be written", depth.clone());
        metrics.register("audit_queue_overflow", "Audit records that found the queue full", overflowed.clone());
        metrics.register("audit_spool_bytes", "Size of the audit spool file", spool_gauge.clone());
        metrics.register("audit_records_written", "Audit records inserted into the database", written.clone());
        metrics.register("audit_records_spooled", "Audit records written to the spool file", spooled.clone());
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
        let writer =
            Writer { database, spool: Spool::new(&spool_dir), sink: inner.clone(), spool_gauge, written, spooled };
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
    sink: Arc<Inner>,
    spool_gauge: Gauge,
    written: Counter,
    spooled: Counter,
}

/// Rows per INSERT statement at most (26 parameters a row: far below SQLite's 32,766 and
/// PostgreSQL's 65,535).
const ROWS_PER_STATEMENT: usize = 256;

/// `INSERT ... VALUES (...), (...) ON CONFLICT (request_id) DO NOTHING` for `rows` rows, built
/// from constants only. SQLite gets anonymous `?` parameters: it binds a numbered or named
/// parameter by scanning the statement's parameter names, which makes binding a large statement
/// quadratic; anonymous ones bind by position.
fn insert_sql(backend: flowgate_db::Backend, rows: usize) -> String {
    let width = AUDIT_COLUMNS.len();
    let mut sql = format!("INSERT INTO audit_records ({}) VALUES ", AUDIT_COLUMNS.join(", "));
    let mut number = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            number += 1;
            match backend {
                flowgate_db::Backend::Sqlite => sql.push('?'),
                flowgate_db::Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&number.to_string());
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
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

async fn insert(database: &Database, records: &[AuditRecord]) -> Result<(), sqlx::Error> {
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

async fn insert_chunks(
    backend: flowgate_db::Backend,
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    records: &[AuditRecord],
) -> Result<(), sqlx::Error> {
    let mut rest = records;
    for size in statement_sizes(records.len()) {
        let (chunk, next) = rest.split_at(size);
        rest = next;
        let sql = insert_sql(backend, chunk.len());
        let json: Vec<_> = chunk.iter().map(|r| (json_array(&r.fallbacks), json_array(&r.guardrail_actions))).collect();
        let mut query = sqlx::query(&sql);
        // Text is bound by reference: nothing is copied until the driver encodes it.
        for (r, (fallbacks, guardrail_actions)) in chunk.iter().zip(&json) {
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
                .bind(r.upstream_latency_ms)
                .bind(r.ttft_ms)
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
                .bind(i64::from(r.usage_estimated));
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

    /// Replays the overflow files, oldest first; `false` when the database refused one (it is
    /// kept for the next attempt).
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
            if insert(&self.database, &records).await.is_err() {
                return false;
            }
            self.written.inc_by(records.len() as u64);
            if let Err(error) = spill.clear() {
                tracing::error!(%error, "cannot remove a replayed audit overflow file");
            }
            let _ = self.sink.spills.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)));
        }
        true
    }

    /// Inserts `batch` after replaying the spool and overflow files; on failure appends it to
    /// the spool.
    async fn write(&self, batch: Vec<AuditRecord>) {
        if self.spool.exists() {
            match self.spool.read() {
                Ok(spooled) if !spooled.is_empty() => match insert(&self.database, &spooled).await {
                    Ok(()) => {
                        tracing::info!(records = spooled.len(), "audit spool replayed into the database");
                        let _ = self.written.inc_by(spooled.len() as u64);
                        if let Err(error) = self.spool.clear() {
                            tracing::error!(%error, "cannot clear the replayed audit spool");
                        }
                        self.sink.spool_bytes.store(0, Ordering::Relaxed);
                        self.spool_gauge.set(0);
                    }
                    Err(_) => {
                        self.spool_batch(&batch);
                        return;
                    }
                },
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
        match insert(&self.database, &batch).await {
            Ok(()) => {
                self.written.inc_by(batch.len() as u64);
            }
            Err(error) => {
                tracing::warn!(%error, records = batch.len(), "audit database unavailable; spooling records to disk");
                self.spool_batch(&batch);
            }
        }
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

#[cfg(test)]
mod tests;
