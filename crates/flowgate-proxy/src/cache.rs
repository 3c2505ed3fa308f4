//! The metacache: the same request (phases 1 and 2, here) or the same question (phases 3 and 4,
//! `crate::semantic`) from the same tenant gets the stored answer without an upstream call.
//!
//! Exact phases: an in-process moka cache (phase 1) in front of Redis (phase 2, shared by every
//! replica) when Redis is configured. When Redis is unreachable, its phase is skipped (a miss,
//! nothing stored there). The semantic phases run only after both exact phases missed, so a
//! request answered by them is never embedded.
//!
//! - **Key:** SHA-256 of the tenant, the API format and endpoint, and the request body as it
//!   would be sent (after guardrails and reroutes), serialised with sorted object keys, without
//!   `user`, `metadata` and `cache`. Tenants never share entries.
//! - **What is stored:** complete successful answers, as the client received them: a JSON body,
//!   or a whole event stream (only when it ended properly: `[DONE]` or `message_stop`), which is
//!   replayed as a stream. Requests with guardrails are not cached (their answers depend on
//!   policies that may change).
//! - **Per request:** `Cache-Control: no-cache` skips the lookup (the answer is still stored),
//!   `no-store` skips both; LiteLLM's body field `"cache": {"no-cache": true, "no-store": true}`
//!   does the same and is never forwarded upstream.
//! - **Answers:** `x-flowgate-cache: hit-exact|hit-exact-shared|hit-semantic|hit-semantic-shared|miss`
//!   (and `x-flowgate-cache-similarity` on semantic hits); hits cost nothing against the budget
//!   and tokens per minute, and count as requests for the rate limits.
//! - **Stats:** per phase, lookups, hits and lookup time are counted in the process (Prometheus)
//!   and added every second to shared counters (Redis, or the in-process store in `all` mode)
//!   that the api-server's `/api/metacache/stats` reads, so they cover every replica.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use flowgate_common::settings::CacheSettings;
use flowgate_db::SharedState;
use futures_util::Stream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;

use crate::semantic::{Pending, SemanticCache};
use crate::translate::ApiFormat;
use crate::wire::Endpoint;
use flowgate_common::tasks::Tasks;
use flowgate_contracts::metacache::{LATENCY_BUCKETS_US, Phase, StreamRecord, counter_key};
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `cache` label of the cache metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CacheLabels {
    /// `exact` (this cache) or `semantic`.
    pub cache: &'static str,
}

const EXACT: CacheLabels = CacheLabels { cache: "exact" };
const SEMANTIC: CacheLabels = CacheLabels { cache: "semantic" };

/// The `phase` label of the per-phase metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PhaseLabels {
    /// `exact`, `exact_shared`, `semantic` or `semantic_shared`.
    pub phase: &'static str,
}

/// How long the shared stats counters live (they are running totals).
const STATS_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// One phase's counts since the last flush to the shared counters.
#[derive(Debug, Default)]
struct PhaseCounts {
    lookups: AtomicU64,
    hits: AtomicU64,
    micros: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
}

/// Per-phase counts: Prometheus series in the process, and deltas flushed to shared counters.
#[derive(Debug)]
struct PhaseStats {
    pending: [PhaseCounts; 4],
    lookups: Family<PhaseLabels, Counter>,
    hits: Family<PhaseLabels, Counter>,
    seconds: Family<PhaseLabels, Histogram, fn() -> Histogram>,
}

fn lookup_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_US.iter().map(|us| {
        #[expect(clippy::cast_precision_loss, reason = "bucket bounds far below 2^52")]
        let seconds = *us as f64 / 1e6;
        seconds
    }))
}

fn phase_index(phase: Phase) -> usize {
    Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0)
}

impl PhaseStats {
    fn new(metrics: &flowgate_common::metrics::Metrics) -> Self {
        let stats = Self {
            pending: Default::default(),
            lookups: Family::default(),
            hits: Family::default(),
            seconds: Family::new_with_constructor(lookup_histogram),
        };
        metrics.register("cache_lookups", "Cache lookups by phase", stats.lookups.clone());
        metrics.register("cache_phase_hits", "Cache hits by phase", stats.hits.clone());
        metrics.register("cache_lookup_seconds", "Time a cache phase took to answer a lookup", stats.seconds.clone());
        stats
    }

    fn record(&self, phase: Phase, hit: bool, took: Duration) {
        let label = PhaseLabels { phase: phase.name() };
        self.lookups.get_or_create(&label).inc();
        if hit {
            self.hits.get_or_create(&label).inc();
        }
        self.seconds.get_or_create(&label).observe(took.as_secs_f64());
        let counts = &self.pending[phase_index(phase)];
        counts.lookups.fetch_add(1, Ordering::Relaxed);
        counts.hits.fetch_add(u64::from(hit), Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        counts.micros.fetch_add(micros, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US.iter().position(|bound| micros <= *bound).unwrap_or(LATENCY_BUCKETS_US.len());
        if let Some(bucket) = counts.buckets.get(bucket) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the counts since the last flush to the shared counters.
    async fn flush(&self, shared: &SharedState) {
        for phase in Phase::ALL {
            let counts = &self.pending[phase_index(phase)];
            let mut deltas = vec![
                ("lookups".to_owned(), counts.lookups.swap(0, Ordering::Relaxed)),
                ("hits".to_owned(), counts.hits.swap(0, Ordering::Relaxed)),
                ("micros".to_owned(), counts.micros.swap(0, Ordering::Relaxed)),
            ];
            for (i, bucket) in counts.buckets.iter().enumerate() {
                deltas.push((format!("bucket:{i}"), bucket.swap(0, Ordering::Relaxed)));
            }
            for (what, delta) in deltas.into_iter().filter(|(_, d)| *d > 0) {
                let delta = i64::try_from(delta).unwrap_or(i64::MAX);
                if let Err(error) = shared.incr_by(&counter_key(phase, &what), delta, STATS_TTL).await {
                    tracing::debug!(%error, "cache stats not shared");
                }
            }
        }
    }
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cached {
    /// An event stream (replayed as one) rather than a JSON body.
    pub stream: bool,
    /// The answer's `content-type`.
    pub content_type: String,
    /// The answer's bytes.
    pub body: Bytes,
}

impl Cached {
    /// The stored form: a stream flag byte, the content type's length (2 bytes) and the type, then
    /// the body.
    fn encode(&self) -> Vec<u8> {
        let content_type = self.content_type.as_bytes();
        let length = u16::try_from(content_type.len()).unwrap_or(0);
        let mut out = Vec::with_capacity(3 + content_type.len() + self.body.len());
        out.push(u8::from(self.stream));
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(content_type.get(..usize::from(length)).unwrap_or_default());
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (&stream, rest) = bytes.split_first()?;
        let length = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        let content_type = std::str::from_utf8(rest.get(2..2 + length)?).ok()?.to_owned();
        let body = Bytes::copy_from_slice(rest.get(2 + length..)?);
        Some(Self { stream: stream == 1, content_type, body })
    }

    /// The answer to send: the JSON body, or the stream replayed event by event, saying which
    /// `phase` answered.
    pub(crate) fn response(&self, phase: Phase) -> Response {
        let body = if self.stream {
            let events: Vec<Result<Bytes, std::convert::Infallible>> = split_events(&self.body).map(Ok).collect();
            Body::from_stream(futures_util::stream::iter(events))
        } else {
            Body::from(self.body.clone())
        };
        let mut response = Response::new(body);
        if let Ok(value) = HeaderValue::from_str(&self.content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        if self.stream {
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        response.headers_mut().insert("x-flowgate-cache", HeaderValue::from_static(phase.header()));
        response
    }
}

/// The events of an event stream, each with its blank-line terminator.
fn split_events(body: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= body.len() {
            return None;
        }
        let rest = body.get(start..)?;
        let end = rest.windows(2).position(|w| w == b"\n\n").map_or(rest.len(), |i| i + 2);
        let event = body.slice(start..start + end);
        start += end;
        Some(event)
    })
}

/// What one request allows the cache to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Control {
    /// Look the answer up.
    pub read: bool,
    /// Store the answer.
    pub write: bool,
}

/// Reads the request's cache controls (`Cache-Control`, the body's `cache` object) and removes
/// the `cache` field from the body, which upstreams do not know.
pub(crate) fn control(headers: &HeaderMap, body: &mut Value) -> Control {
    let mut control = Control { read: true, write: true };
    for value in headers.get_all(header::CACHE_CONTROL) {
        let value = value.to_str().unwrap_or_default().to_ascii_lowercase();
        for directive in value.split(',').map(str::trim) {
            match directive {
                "no-cache" => control.read = false,
                "no-store" => control = Control { read: false, write: false },
                _ => {}
            }
        }
    }
    if let Some(Value::Object(fields)) = body.as_object_mut().and_then(|b| b.remove("cache")) {
        let set = |name: &str| fields.get(name).and_then(Value::as_bool).unwrap_or(false);
        if set("no-cache") {
            control.read = false;
        }
        if set("no-store") {
            control = Control { read: false, write: false };
        }
    }
    control
}

/// The process's exact-match cache. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ResponseCache(Option<Arc<Inner>>);

struct Inner {
    local: moka::future::Cache<[u8; 32], Arc<Cached>>,
    shared: Option<SharedState>,
    ttl: Duration,
    max_entry_bytes: usize,
    hits: Family<CacheLabels, Counter>,
    misses: Family<CacheLabels, Counter>,
    entries: Family<CacheLabels, Gauge>,
    phases: PhaseStats,
    /// Phases 3 and 4, when `cache.semantic.enabled`.
    semantic: Option<SemanticCache>,
    /// Stores run as supervised jobs after the answer has gone.
    tasks: Tasks,
}

impl Inner {
    /// Applies a `DELETE /api/metacache` notification: this process's exact entries (their keys
    /// are hashes, so all of them) and the matching semantic entries.
    fn forget(&self, message: &str) {
        let Ok(StreamRecord::Delete { tenant, model }) = serde_json::from_str::<StreamRecord>(message) else {
            tracing::debug!("unreadable metacache delete ignored");
            return;
        };
        self.local.invalidate_all();
        if let Some(semantic) = &self.semantic {
            let removed = semantic.delete(tenant.as_deref(), model.as_deref());
            tracing::info!(
                removed,
                tenant = tenant.as_deref(),
                model = model.as_deref(),
                "semantic cache entries deleted"
            );
        }
    }

    /// Writes this process's entry counts and sizes where the api-server reads them.
    async fn publish_sizes(&self, shared: &SharedState) {
        let mut sizes = vec![(Phase::Exact, "entries", self.local.entry_count())];
        if let Some(semantic) = &self.semantic {
            let (entries, bytes) = semantic.size();
            let entries = u64::try_from(entries).unwrap_or(u64::MAX);
            let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
            sizes.extend([(Phase::Semantic, "entries", entries), (Phase::Semantic, "bytes", bytes)]);
        }
        for (phase, what, value) in sizes {
            let key = counter_key(phase, what);
            if let Err(error) = shared.set_ex(&key, value.to_string().as_bytes(), Duration::from_secs(10)).await {
                tracing::debug!(%error, "cache sizes not shared");
            }
        }
    }
}

/// Where a request's answer is stored: its exact key and, when it may be semantically cached,
/// its semantic query.
#[derive(Debug, Clone)]
pub(crate) struct EntryKey {
    pub(crate) exact: [u8; 32],
    pub(crate) semantic: Option<crate::semantic::Query>,
    /// The semantic lookup's vector, once computed (the store does not embed again).
    pub(crate) pending: Option<Pending>,
}

/// A cache hit: the answer, the phase and, for a semantic hit, the similarity.
#[derive(Debug)]
pub(crate) struct Hit {
    pub(crate) cached: Arc<Cached>,
    pub(crate) phase: Phase,
    pub(crate) similarity: Option<f32>,
}

/// The semantic cache could not start.
#[derive(Debug, thiserror::Error)]
#[error("cache.semantic.local_model_dir: {0}")]
pub(crate) struct CacheError(#[from] flowgate_semantic::Error);

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("enabled", &self.0.is_some()).finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// The cache `settings` describe (a disabled one when `cache.enabled` is false), over `shared`
    /// when it is Redis.
    pub(crate) fn new(
        settings: &CacheSettings,
        shared: &SharedState,
        metrics: &flowgate_common::metrics::Metrics,
        tasks: &Tasks,
    ) -> Result<Self, CacheError> {
        if !settings.enabled {
            return Ok(Self(None));
        }
        let ttl = Duration::from_secs(settings.ttl_secs.max(1));
        let semantic = if settings.semantic.enabled {
            Some(SemanticCache::start(&settings.semantic, ttl, shared, tasks)?)
        } else {
            None
        };
        let inner = Inner {
            local: moka::future::Cache::builder().max_capacity(settings.max_entries).time_to_live(ttl).build(),
            shared: shared.is_shared().then(|| shared.clone()),
            ttl,
            max_entry_bytes: settings.max_entry_bytes,
            hits: Family::default(),
            misses: Family::default(),
            entries: Family::default(),
            phases: PhaseStats::new(metrics),
            semantic,
            tasks: tasks.clone(),
        };
        metrics.register("cache_hits", "Requests answered from the response cache", inner.hits.clone());
        metrics.register("cache_misses", "Cache lookups that found nothing", inner.misses.clone());
        metrics.register("cache_entries", "Answers held in this process's cache", inner.entries.clone());
        // Present from the start, so the stats say "a cache with no traffic yet".
        inner.hits.get_or_create(&EXACT).inc_by(0);
        inner.misses.get_or_create(&EXACT).inc_by(0);
        inner.entries.get_or_create(&EXACT).set(0);
        if inner.semantic.is_some() {
            inner.hits.get_or_create(&SEMANTIC).inc_by(0);
            inner.misses.get_or_create(&SEMANTIC).inc_by(0);
            inner.entries.get_or_create(&SEMANTIC).set(0);
        }
        let inner = Arc::new(inner);
        let flusher = Arc::downgrade(&inner);
        let stats_to = shared.clone();
        tasks.spawn("cache-stats", async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(inner) = flusher.upgrade() else { return };
                inner.phases.flush(&stats_to).await;
                inner.publish_sizes(&stats_to).await;
            }
        });
        let mut deletes = shared.subscribe(flowgate_contracts::channels::METACACHE_DELETE);
        let forget = Arc::downgrade(&inner);
        tasks.spawn("cache-deletes", async move {
            loop {
                let message = match deletes.recv().await {
                    Ok(flowgate_db::Notification::Message(message)) => message,
                    Ok(flowgate_db::Notification::Resync)
                    | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(inner) = forget.upgrade() else { return };
                inner.forget(&message);
            }
        });
        Ok(Self(Some(inner)))
    }

    /// The semantic phases, when configured.
    pub(crate) fn semantic(&self) -> Option<&SemanticCache> {
        self.0.as_ref().and_then(|inner| inner.semantic.as_ref())
    }

    /// Whether caching is on.
    pub(crate) fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The entry key of a request (see the module documentation).
    pub(crate) fn key(tenant_id: &str, format: ApiFormat, endpoint: Endpoint, body: &Value) -> [u8; 32] {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [tenant_id.as_bytes(), format!("{format:?}").as_bytes(), format!("{endpoint:?}").as_bytes()] {
            context.update(part);
            context.update(&[0]);
        }
        let mut canonical = body.clone();
        if let Some(fields) = canonical.as_object_mut() {
            for ignored in ["user", "metadata", "cache"] {
                fields.remove(ignored);
            }
        }
        // serde_json's maps are sorted by key: equal requests serialise to equal bytes.
        context.update(&serde_json::to_vec(&canonical).unwrap_or_default());
        let mut key = [0; 32];
        key.copy_from_slice(context.finish().as_ref());
        key
    }

    /// The stored answer for `key`, if any, through the four phases in order (each counted);
    /// `key.pending` is filled with the semantic vector for the store after a miss.
    pub(crate) async fn lookup(&self, key: &mut EntryKey) -> Option<Hit> {
        let inner = self.0.as_ref()?;
        let started = std::time::Instant::now();
        let mut found = inner.local.get(&key.exact).await.map(|cached| (cached, Phase::Exact));
        inner.phases.record(Phase::Exact, found.is_some(), started.elapsed());
        if found.is_none()
            && let Some(shared) = &inner.shared
        {
            let started = std::time::Instant::now();
            if let Ok(Some(bytes)) = shared.get(&redis_key(&key.exact)).await
                && let Some(cached) = Cached::decode(&bytes)
            {
                let cached = Arc::new(cached);
                inner.local.insert(key.exact, cached.clone()).await;
                found = Some((cached, Phase::ExactShared));
            }
            inner.phases.record(Phase::ExactShared, found.is_some(), started.elapsed());
        }
        match &found {
            Some(_) => inner.hits.get_or_create(&EXACT).inc(),
            None => inner.misses.get_or_create(&EXACT).inc(),
        };
        inner.entries.get_or_create(&EXACT).set(i64::try_from(inner.local.entry_count()).unwrap_or(i64::MAX));
        if let Some((cached, phase)) = found {
            return Some(Hit { cached, phase, similarity: None });
        }
        let (semantic, query) = (inner.semantic.as_ref()?, key.semantic.take()?);
        let started = std::time::Instant::now();
        let (hit, pending) = semantic.lookup(query).await;
        let took = started.elapsed();
        key.pending = Some(pending);
        let phase = match &hit {
            Some(hit) if hit.shared => Phase::SemanticShared,
            _ => Phase::Semantic,
        };
        inner.phases.record(Phase::Semantic, hit.as_ref().is_some_and(|h| !h.shared), took);
        if inner.shared.is_some() {
            // Phase 4 is answered by the same in-process lookup over the replicated entries.
            inner.phases.record(Phase::SemanticShared, hit.as_ref().is_some_and(|h| h.shared), Duration::ZERO);
        }
        match &hit {
            Some(_) => inner.hits.get_or_create(&SEMANTIC).inc(),
            None => inner.misses.get_or_create(&SEMANTIC).inc(),
        };
        let (entries, _) = semantic.size();
        inner.entries.get_or_create(&SEMANTIC).set(i64::try_from(entries).unwrap_or(i64::MAX));
        hit.map(|hit| Hit { cached: hit.cached, phase, similarity: Some(hit.similarity) })
    }

    async fn store(&self, key: EntryKey, cached: Cached) {
        let Some(inner) = self.0.as_ref() else { return };
        if let Some(shared) = &inner.shared
            && let Err(error) = shared.set_ex(&redis_key(&key.exact), &cached.encode(), inner.ttl).await
        {
            tracing::debug!(%error, "answer not stored in the shared cache");
        }
        let cached = Arc::new(cached);
        if let Some(semantic) = &inner.semantic {
            let pending = key.pending.or_else(|| key.semantic.map(Pending::new));
            if let Some(pending) = pending {
                semantic.store(pending, cached.clone());
            }
        }
        let key = key.exact;
        inner.local.insert(key, cached).await;
        inner.local.run_pending_tasks().await;
        inner.entries.get_or_create(&EXACT).set(i64::try_from(inner.local.entry_count()).unwrap_or(i64::MAX));
    }

    /// Passes `response` through, storing it under `key` once it has been sent whole, when it is a
    /// complete successful answer no larger than the entry limit.
    pub(crate) fn store_after(&self, mut response: Response, key: EntryKey) -> Response {
        let Some(inner) = self.0.as_ref() else { return response };
        response.headers_mut().insert("x-flowgate-cache", HeaderValue::from_static("miss"));
        if response.status() != StatusCode::OK {
            return response;
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let stream = content_type.starts_with("text/event-stream");
        let (parts, body) = response.into_parts();
        let tee = Tee {
            inner: body.into_data_stream(),
            buffer: Some(BytesMut::new()),
            limit: inner.max_entry_bytes,
            done: Some((self.clone(), key, stream, content_type)),
        };
        Response::from_parts(parts, Body::from_stream(tee))
    }
}

fn redis_key(key: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut name = String::with_capacity(6 + 64);
    name.push_str("cache:");
    for byte in key {
        let _ = write!(name, "{byte:02x}");
    }
    name
}

/// Whether a buffered answer is complete: any JSON body; a stream only with its end marker.
fn complete(stream: bool, body: &[u8]) -> bool {
    if !stream {
        return !body.is_empty();
    }
    let tail = body.get(body.len().saturating_sub(256)..).unwrap_or(body);
    let contains = |needle: &[u8]| tail.windows(needle.len()).any(|w| w == needle);
    contains(b"data: [DONE]") || contains(b"event: message_stop")
}

/// A response body that keeps a copy of what passes (up to a limit) and stores it at the end.
struct Tee {
    inner: axum::body::BodyDataStream,
    buffer: Option<BytesMut>,
    limit: usize,
    done: Option<(ResponseCache, EntryKey, bool, String)>,
}

impl Stream for Tee {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = Pin::new(&mut this.inner).poll_next(cx);
        match &item {
            Poll::Ready(Some(Ok(chunk))) => {
                let over = this.buffer.as_ref().is_some_and(|b| b.len() + chunk.len() > this.limit);
                if over {
                    this.buffer = None;
                } else if let Some(buffer) = this.buffer.as_mut() {
                    buffer.extend_from_slice(chunk);
                }
            }
            Poll::Ready(Some(Err(_))) => this.buffer = None,
            Poll::Ready(None) => this.store(true),
            Poll::Pending => {}
        }
        item
    }
}

impl Tee {
    /// Stores the copy, once, when it is a complete answer: a JSON body that `ended`, or a stream
    /// whose end marker has passed.
    fn store(&mut self, ended: bool) {
        let stream = self.done.as_ref().is_some_and(|(_, _, stream, _)| *stream);
        if !ended && !stream {
            return;
        }
        if let (Some(buffer), Some((cache, key, stream, content_type))) = (self.buffer.take(), self.done.take())
            && complete(stream, &buffer)
            && let Some(inner) = cache.0.clone()
        {
            let cached = Cached { stream, content_type, body: buffer.freeze() };
            inner.tasks.job("cache-store", async move { cache.store(key, cached).await });
        }
    }
}

impl Drop for Tee {
    /// A client may close the connection as soon as it has the stream's end marker (the official
    /// SDKs do), before the body has ended: the answer is complete all the same.
    fn drop(&mut self) {
        self.store(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_answers_round_trip() {
        let cached = Cached {
            stream: true,
            content_type: "text/event-stream".to_owned(),
            body: Bytes::from_static(b"data: 1\n\n"),
        };
        assert_eq!(Cached::decode(&cached.encode()), Some(cached));
        assert_eq!(Cached::decode(&[]), None);
        assert_eq!(Cached::decode(&[0, 0xff, 0xff, b'a']), None, "a length past the end is rejected");
    }

    #[test]
    fn keys_ignore_field_order_and_per_user_fields_but_not_content_or_tenant() {
        let key = |tenant: &str, body: Value| ResponseCache::key(tenant, ApiFormat::OpenAi, Endpoint::Chat, &body);
        let a = key("t", json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "user": "u1"}));
        let b = key("t", json!({"messages": [{"content": "hi", "role": "user"}], "model": "m", "metadata": {"x": 1}}));
        assert_eq!(a, b);
        assert_ne!(a, key("t", json!({"model": "m", "messages": [{"role": "user", "content": "hi!"}]})));
        assert_ne!(a, key("other", json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})));
        let streamed = key("t", json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}));
        assert_ne!(a, streamed, "a stream and a JSON answer are different entries");
    }

    #[test]
    fn controls_come_from_cache_control_and_the_body_which_loses_its_cache_field() {
        let mut headers = HeaderMap::new();
        let mut body = json!({"model": "m"});
        assert_eq!(control(&headers, &mut body), Control { read: true, write: true });
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0, No-Cache"));
        assert_eq!(control(&headers, &mut body), Control { read: false, write: true });
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(control(&headers, &mut body), Control { read: false, write: false });
        let mut body = json!({"model": "m", "cache": {"no-store": true}});
        assert_eq!(control(&HeaderMap::new(), &mut body), Control { read: false, write: false });
        assert_eq!(body, json!({"model": "m"}));
        let mut body = json!({"model": "m", "cache": {"no-cache": true}});
        assert_eq!(control(&HeaderMap::new(), &mut body), Control { read: false, write: true });
    }

    #[test]
    fn only_streams_that_ended_properly_are_complete() {
        assert!(complete(true, b"data: {}\n\ndata: [DONE]\n\n"));
        assert!(complete(true, b"event: message_stop\ndata: {}\n\n"));
        assert!(!complete(true, b"data: {}\n\n"));
        assert!(complete(false, b"{}"));
        assert!(!complete(false, b""));
        let events: Vec<Bytes> = split_events(&Bytes::from_static(b"data: 1\n\ndata: 2\n\nrest")).collect();
        assert_eq!(
            events,
            vec![Bytes::from_static(b"data: 1\n\n"), Bytes::from_static(b"data: 2\n\n"), Bytes::from_static(b"rest")]
        );
    }
}
