//! The metacache's shared facts: the Redis stream every proxy replica publishes its semantic-cache
//! entries to and applies to its own index (phase 4), the records on it, the audit metadata a
//! cache hit carries, and the keys of the counters the api-server's stats read.

use serde::{Deserialize, Serialize};

/// The Redis stream (under the configured prefix) of semantic-cache records, oldest first.
pub const ENTRIES_STREAM: &str = "metacache:entries";

/// Records kept on the stream (trimmed approximately past it).
pub const STREAM_MAX_LEN: u64 = 100_000;

/// The audit metadata member naming the phase that answered a cache hit: one of [`Phase::name`].
pub const METADATA_PHASE: &str = "cache_phase";

/// The audit metadata member holding a semantic hit's similarity.
pub const METADATA_SIMILARITY: &str = "cache_similarity";

/// The four phases of the metacache, in lookup order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// 1: exact match in the process.
    Exact,
    /// 2: exact match in Redis.
    ExactShared,
    /// 3: semantic match among the entries this process stored.
    Semantic,
    /// 4: semantic match among the entries other replicas published.
    SemanticShared,
}

impl Phase {
    /// Every phase, in lookup order.
    pub const ALL: [Self; 4] = [Self::Exact, Self::ExactShared, Self::Semantic, Self::SemanticShared];

    /// The phase's name in the stats, the metrics' `phase` label and the audit metadata.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::ExactShared => "exact_shared",
            Self::Semantic => "semantic",
            Self::SemanticShared => "semantic_shared",
        }
    }

    /// The `x-flowgate-cache` value of a hit in this phase.
    pub fn header(self) -> &'static str {
        match self {
            Self::Exact => "hit-exact",
            Self::ExactShared => "hit-exact-shared",
            Self::Semantic => "hit-semantic",
            Self::SemanticShared => "hit-semantic-shared",
        }
    }

    /// The phase named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The Redis counter of `what` (`lookups`, `hits`, `micros`, or `bucket:<i>`) for `phase`, summed
/// over every replica.
pub fn counter_key(phase: Phase, what: &str) -> String {
    format!("metacache:stats:{}:{what}", phase.name())
}

/// Upper bounds (microseconds) of the lookup-time buckets counted per phase; the last bucket is
/// everything slower.
pub const LATENCY_BUCKETS_US: [u64; 12] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000];

/// One record of the entries stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StreamRecord {
    /// A new entry.
    Put(Box<SharedEntry>),
    /// Entries to forget: all, or those of a tenant, of a model, or of both.
    Delete {
        /// Only this tenant's entries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// Only entries of this requested model.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
}

/// A semantic-cache entry as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedEntry {
    /// The replica that stored it (replicas skip their own records).
    pub replica: String,
    /// The partition hash (tenant, format, model, tools, response format, temperature bucket, …).
    pub partition: u64,
    /// The tenant, for deletes and inspection.
    pub tenant: String,
    /// The requested model, for deletes and inspection.
    pub model: String,
    /// The embedded text (kept in memory for the near-miss guard; shown only under `store_prompts`).
    pub text: String,
    /// When it expires, unix milliseconds.
    pub expires_at_ms: u64,
    /// When it was stored, unix milliseconds.
    pub created_at_ms: u64,
    /// The unit vector, base64 of little-endian `f32`s.
    pub vector: String,
    /// The answer is an event stream.
    pub stream: bool,
    /// The answer's content type.
    pub content_type: String,
    /// The answer's bytes, base64.
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_have_names_and_headers_that_round_trip() {
        for phase in Phase::ALL {
            assert_eq!(Phase::from_name(phase.name()), Some(phase));
            assert!(phase.header().starts_with("hit-"));
        }
        let delete = StreamRecord::Delete { tenant: Some("t".into()), model: None };
        let text = serde_json::to_string(&delete).unwrap();
        assert_eq!(text, r#"{"op":"delete","tenant":"t"}"#);
        assert_eq!(serde_json::from_str::<StreamRecord>(&text).unwrap(), delete);
    }
}
