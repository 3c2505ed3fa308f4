//! The tool-call cache: answers of tools the config marks cacheable (`cacheable_tools`, with a
//! TTL each), keyed by tenant, server, tool and the canonical text of the arguments (members
//! sorted), hashed. Kept in process (moka) and, with Redis, shared by every replica: a miss in
//! process asks Redis (an entry found there is kept in process for what is left of its TTL), and
//! a new answer is written to both. Only successful results (`isError` not true) are kept.
//! Statistics per tool (per process): hits, misses, the upstream time hits saved.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use flowgate_db::SharedState;
use serde_json::{Value, json};

/// Bytes of results the cache holds at most.
const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Largest single result kept.
const MAX_ENTRY_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
struct Entry {
    result: Value,
    bytes: u32,
    ttl: Duration,
    /// How long the upstream took to produce it: what each hit saves.
    upstream_time: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<[u8; 32], Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &[u8; 32], value: &Arc<Entry>, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[derive(Debug, Default, Clone)]
struct ToolStats {
    hits: u64,
    misses: u64,
    saved: Duration,
}

/// The cache and its statistics.
#[derive(Clone)]
pub(crate) struct ToolCache {
    entries: moka::future::Cache<[u8; 32], Arc<Entry>>,
    stats: Arc<Mutex<BTreeMap<String, ToolStats>>>,
    /// Redis, when configured: entries shared by every replica.
    shared: Option<SharedState>,
}

impl std::fmt::Debug for ToolCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCache").field("entries", &self.entries.entry_count()).finish_non_exhaustive()
    }
}

/// Redis key of an entry (the shared state adds the installation's prefix).
fn shared_key(key: &[u8; 32]) -> String {
    let mut name = String::with_capacity(10 + 64);
    name.push_str("mcp-cache:");
    for byte in key {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The key of one call.
pub(crate) fn key(tenant: &str, server: &str, tool: &str, arguments: &Value) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [tenant, server, tool] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    context.update(super::jsonrpc::canonical(arguments).as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

impl ToolCache {
    /// An empty cache, shared through `shared` when that is Redis.
    pub(crate) fn new(shared: &SharedState) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(MAX_BYTES)
            .weigher(|_key: &[u8; 32], entry: &Arc<Entry>| entry.bytes)
            .expire_after(PerEntryTtl)
            .build();
        Self { entries, stats: Arc::default(), shared: shared.is_shared().then(|| shared.clone()) }
    }

    fn count(&self, tool: &str, hit: Option<Duration>) {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = stats.entry(tool.to_owned()).or_default();
        match hit {
            Some(saved) => {
                stats.hits += 1;
                stats.saved += saved;
            }
            None => stats.misses += 1,
        }
    }

    /// The cached result for `key`, counted as a hit or a miss of `tool` (`server__tool`).
    pub(crate) async fn get(&self, key: &[u8; 32], tool: &str) -> Option<Value> {
        let mut entry = self.entries.get(key).await;
        if entry.is_none()
            && let Some(shared) = &self.shared
            && let Ok(Some(bytes)) = shared.get(&shared_key(key)).await
            && let Some(found) = decode(&bytes)
        {
            let found = Arc::new(found);
            self.entries.insert(*key, found.clone()).await;
            entry = Some(found);
        }
        self.count(tool, entry.as_ref().map(|e| e.upstream_time));
        entry.map(|e| e.result.clone())
    }

    /// Keeps `result` for `ttl` unless it is an error result or too large.
    pub(crate) async fn put(&self, key: [u8; 32], result: &Value, ttl: Duration, upstream_time: Duration) {
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return;
        }
        let bytes = result.to_string().len();
        if bytes > MAX_ENTRY_BYTES {
            return;
        }
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        let entry = Entry { result: result.clone(), bytes, ttl, upstream_time };
        if let Some(shared) = &self.shared
            && let Err(error) = shared.set_ex(&shared_key(&key), &encode(&entry), ttl).await
        {
            tracing::debug!(%error, "tool result not stored in the shared cache");
        }
        self.entries.insert(key, Arc::new(entry)).await;
    }

    /// `GET /api/mcp/cache/stats`.
    pub(crate) async fn stats(&self) -> Value {
        self.entries.run_pending_tasks().await;
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let rate = |hits: u64, misses: u64| {
            #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
            let rate = if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 };
            rate
        };
        let (mut hits, mut misses, mut saved) = (0, 0, Duration::ZERO);
        let tools: serde_json::Map<String, Value> = stats
            .into_iter()
            .map(|(tool, s)| {
                hits += s.hits;
                misses += s.misses;
                saved += s.saved;
                let doc = json!({
                    "hits": s.hits, "misses": s.misses, "hit_rate": rate(s.hits, s.misses),
                    "saved_upstream_ms": s.saved.as_secs_f64() * 1000.0,
                });
                (tool, doc)
            })
            .collect();
        json!({
            "hits": hits,
            "misses": misses,
            "hit_rate": rate(hits, misses),
            "entries": self.entries.entry_count(),
            "bytes": self.entries.weighted_size(),
            "saved_upstream_ms": saved.as_secs_f64() * 1000.0,
            "tools": tools,
        })
    }
}

/// An entry as Redis keeps it: the result, when it expires, what producing it took.
fn encode(entry: &Entry) -> Vec<u8> {
    let expires_ms = now_ms().saturating_add(u64::try_from(entry.ttl.as_millis()).unwrap_or(u64::MAX));
    let upstream_us = u64::try_from(entry.upstream_time.as_micros()).unwrap_or(u64::MAX);
    json!({"result": entry.result, "expires_ms": expires_ms, "upstream_us": upstream_us}).to_string().into_bytes()
}

/// An entry read from Redis, with what is left of its TTL; `None` when unreadable or expired.
fn decode(bytes: &[u8]) -> Option<Entry> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let left = value.get("expires_ms")?.as_u64()?.checked_sub(now_ms()).filter(|ms| *ms > 0)?;
    let result = value.get("result")?.clone();
    let bytes = u32::try_from(result.to_string().len()).ok()?;
    let upstream_time = Duration::from_micros(value.get("upstream_us").and_then(Value::as_u64).unwrap_or(0));
    Some(Entry { result, bytes, ttl: Duration::from_millis(left), upstream_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn equal_arguments_in_any_order_hit_and_other_tenants_miss() {
        let cache = ToolCache::new(&SharedState::local("t:"));
        let args = json!({"city": "Oslo", "days": 2});
        let reordered: Value = serde_json::from_str(r#"{"days": 2, "city": "Oslo"}"#).unwrap();
        let result = json!({"content": [{"type": "text", "text": "sunny"}]});
        cache.put(key("t1", "w", "forecast", &args), &result, Duration::from_secs(60), Duration::from_millis(40)).await;
        assert_eq!(cache.get(&key("t1", "w", "forecast", &reordered), "w__forecast").await, Some(result));
        assert_eq!(cache.get(&key("t2", "w", "forecast", &args), "w__forecast").await, None);
        let stats = cache.stats().await;
        assert_eq!(stats["hits"], 1);
        assert_eq!(stats["misses"], 1);
        assert_eq!(stats["entries"], 1);
        assert_eq!(stats["tools"]["w__forecast"]["saved_upstream_ms"], 40.0);
    }

    #[tokio::test]
    async fn error_results_are_not_kept() {
        let cache = ToolCache::new(&SharedState::local("t:"));
        let k = key("t", "s", "x", &json!({}));
        cache.put(k, &json!({"isError": true, "content": []}), Duration::from_secs(60), Duration::ZERO).await;
        assert_eq!(cache.get(&k, "s__x").await, None);
    }

    #[test]
    fn shared_entries_keep_what_is_left_of_their_ttl_and_expired_ones_are_misses() {
        let entry = Entry {
            result: json!({"content": []}),
            bytes: 14,
            ttl: Duration::from_secs(60),
            upstream_time: Duration::from_millis(7),
        };
        let read = decode(&encode(&entry)).unwrap();
        assert_eq!(read.result, entry.result);
        assert!(read.ttl <= Duration::from_secs(60) && read.ttl > Duration::from_secs(55));
        assert_eq!(read.upstream_time, Duration::from_millis(7));
        let expired = json!({"result": {}, "expires_ms": now_ms() - 1, "upstream_us": 0}).to_string();
        assert!(decode(expired.as_bytes()).is_none());
        assert!(decode(b"not json").is_none());
    }
}
