//! The tool-call cache: answers of tools the config marks cacheable (`cacheable_tools`, with a
//! TTL each), kept in process and keyed by tenant, server, tool and the canonical text of the
//! arguments (members sorted), hashed. Only successful results (`isError` not true) are kept.
//! Statistics per tool: hits, misses, the upstream time hits saved.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
}

impl std::fmt::Debug for ToolCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCache").field("entries", &self.entries.entry_count()).finish_non_exhaustive()
    }
}

impl Default for ToolCache {
    fn default() -> Self {
        Self::new()
    }
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
    /// An empty cache.
    pub(crate) fn new() -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(MAX_BYTES)
            .weigher(|_key: &[u8; 32], entry: &Arc<Entry>| entry.bytes)
            .expire_after(PerEntryTtl)
            .build();
        Self { entries, stats: Arc::default() }
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
        let entry = self.entries.get(key).await;
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
        self.entries.insert(key, Arc::new(Entry { result: result.clone(), bytes, ttl, upstream_time })).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn equal_arguments_in_any_order_hit_and_other_tenants_miss() {
        let cache = ToolCache::new();
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
        let cache = ToolCache::new();
        let k = key("t", "s", "x", &json!({}));
        cache.put(k, &json!({"isError": true, "content": []}), Duration::from_secs(60), Duration::ZERO).await;
        assert_eq!(cache.get(&k, "s__x").await, None);
    }
}
