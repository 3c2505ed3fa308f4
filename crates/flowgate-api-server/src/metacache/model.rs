//! The `/api/metacache/stats` report.

use std::collections::BTreeMap;

use flowgate_contracts::metacache::{LATENCY_BUCKETS_US, Phase, counter_key};
use flowgate_db::SharedState;
use serde::Serialize;

/// One phase's figures, over every replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct PhaseStats {
    pub(crate) lookups: u64,
    pub(crate) hits: u64,
    /// Hits over lookups; 0 before any lookup.
    pub(crate) hit_rate: f64,
    /// Lookup time percentiles in milliseconds (the upper bound of the bucket they fall in).
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    /// Entries held (as last reported by a replica), and their bytes where known.
    pub(crate) entries: u64,
    pub(crate) bytes: Option<u64>,
}

/// A layer's counters in the earlier shape (`exact`: phases 1 and 2, `semantic`: 3 and 4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct LayerStats {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

/// Upstream cost and latency the hits avoided, from the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Savings {
    pub(crate) hits: u64,
    pub(crate) cost_usd: f64,
    pub(crate) cost_nanos: i64,
    pub(crate) latency_ms: f64,
}

/// Savings of one tenant and model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SavingsItem {
    pub(crate) tenant_id: String,
    pub(crate) model: String,
    /// Hits by phase name.
    pub(crate) phases: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub(crate) savings: Savings,
}

/// `GET /api/metacache/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct CacheStats {
    pub(crate) exact: LayerStats,
    pub(crate) semantic: LayerStats,
    /// Hits over lookups that reached the cache (a request counts once).
    pub(crate) hit_rate: f64,
    /// Per phase, in lookup order.
    pub(crate) phases: BTreeMap<&'static str, PhaseStats>,
    /// All hits together.
    pub(crate) savings: Savings,
    /// By tenant and model, the largest savings first.
    pub(crate) by_tenant_model: Vec<SavingsItem>,
    /// Whether any proxy has reported: `false` means the zeros are "no cache reporting", not "a
    /// cache with no traffic".
    pub(crate) cache_metrics_present: bool,
}

async fn number(shared: &SharedState, key: &str) -> Option<u64> {
    let bytes = shared.get(key).await.ok()??;
    std::str::from_utf8(&bytes).ok()?.trim().parse::<i64>().ok().and_then(|n| u64::try_from(n).ok())
}

/// The upper bound, in milliseconds, of the bucket holding the `q` quantile of `buckets`.
pub(crate) fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss, reason = "a rank")]
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            let bound =
                LATENCY_BUCKETS_US.get(i).copied().unwrap_or(LATENCY_BUCKETS_US[LATENCY_BUCKETS_US.len() - 1] * 2);
            #[expect(clippy::cast_precision_loss, reason = "bucket bounds")]
            return Some(bound as f64 / 1000.0);
        }
    }
    None
}

fn ratio(a: u64, b: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a ratio")]
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl PhaseStats {
    /// Reads `phase`'s shared counters.
    pub(crate) async fn read(shared: &SharedState, phase: Phase) -> (Self, bool) {
        let lookups = number(shared, &counter_key(phase, "lookups")).await;
        let present = lookups.is_some();
        let lookups = lookups.unwrap_or(0);
        let hits = number(shared, &counter_key(phase, "hits")).await.unwrap_or(0);
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_US.len() + 1);
        for i in 0..=LATENCY_BUCKETS_US.len() {
            buckets.push(number(shared, &counter_key(phase, &format!("bucket:{i}"))).await.unwrap_or(0));
        }
        let entries = number(shared, &counter_key(phase, "entries")).await;
        let stats = Self {
            lookups,
            hits,
            hit_rate: ratio(hits, lookups),
            p50_ms: quantile_ms(&buckets, 0.50),
            p99_ms: quantile_ms(&buckets, 0.99),
            entries: entries.unwrap_or(0),
            bytes: number(shared, &counter_key(phase, "bytes")).await,
        };
        (stats, present || entries.is_some())
    }
}

impl CacheStats {
    /// The report from the shared counters and the savings.
    pub(crate) async fn read(shared: &SharedState, savings: Vec<SavingsItem>) -> Self {
        let mut stats = Self::default();
        for phase in Phase::ALL {
            let (figures, present) = PhaseStats::read(shared, phase).await;
            stats.cache_metrics_present |= present;
            stats.phases.insert(phase.name(), figures);
        }
        let phase = |p: Phase| stats.phases.get(p.name()).cloned().unwrap_or_default();
        let (exact, exact_shared) = (phase(Phase::Exact), phase(Phase::ExactShared));
        let (semantic, semantic_shared) = (phase(Phase::Semantic), phase(Phase::SemanticShared));
        let exact_hits = exact.hits + exact_shared.hits;
        let semantic_hits = semantic.hits + semantic_shared.hits;
        stats.exact = LayerStats {
            hits: exact_hits,
            misses: exact.lookups.saturating_sub(exact_hits),
            entries: exact.entries,
            bytes: 0,
        };
        stats.semantic = LayerStats {
            hits: semantic_hits,
            misses: semantic.lookups.saturating_sub(semantic_hits),
            entries: semantic.entries,
            bytes: semantic.bytes.unwrap_or(0),
        };
        stats.hit_rate = ratio(exact_hits + semantic_hits, exact.lookups);
        for item in &savings {
            stats.savings.hits += item.savings.hits;
            stats.savings.cost_nanos = stats.savings.cost_nanos.saturating_add(item.savings.cost_nanos);
            stats.savings.latency_ms += item.savings.latency_ms;
        }
        stats.savings.cost_usd = crate::fields::usd(stats.savings.cost_nanos);
        stats.by_tenant_model = savings;
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_bounds() {
        let mut buckets = vec![0u64; LATENCY_BUCKETS_US.len() + 1];
        assert_eq!(quantile_ms(&buckets, 0.5), None);
        buckets[0] = 98;
        buckets[4] = 2;
        assert_eq!(quantile_ms(&buckets, 0.5), Some(0.05));
        assert_eq!(quantile_ms(&buckets, 0.99), Some(1.0));
        buckets[LATENCY_BUCKETS_US.len()] = 100;
        assert_eq!(quantile_ms(&buckets, 0.99), Some(500.0));
    }

    #[tokio::test]
    async fn stats_add_up_the_phases_counters() {
        let shared = SharedState::local("t:");
        let day = std::time::Duration::from_secs(86_400);
        for (phase, lookups, hits) in [(Phase::Exact, 10, 2), (Phase::Semantic, 8, 3), (Phase::SemanticShared, 8, 1)] {
            shared.incr_by(&counter_key(phase, "lookups"), lookups, day).await.unwrap();
            shared.incr_by(&counter_key(phase, "hits"), hits, day).await.unwrap();
            shared.incr_by(&counter_key(phase, "bucket:0"), lookups, day).await.unwrap();
        }
        let stats = CacheStats::read(&shared, Vec::new()).await;
        assert!(stats.cache_metrics_present);
        assert_eq!(stats.exact, LayerStats { hits: 2, misses: 8, entries: 0, bytes: 0 });
        assert_eq!(stats.semantic.hits, 4);
        assert!((stats.hit_rate - 0.6).abs() < 1e-9);
        assert_eq!(stats.phases["semantic"].p99_ms, Some(0.05));
        assert!(!CacheStats::read(&SharedState::local("u:"), Vec::new()).await.cache_metrics_present);
    }
}
