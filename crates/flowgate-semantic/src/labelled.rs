//! The labelled query pairs (`fixtures/pairs.json`: paraphrases that must hit, near misses that
//! must not) and their scoring, shared by the tests and `examples/evaluate.rs`.

use serde::Deserialize;

use crate::embedder::{Embedder, cosine};
use crate::guard;

/// The labelled set, compiled in.
pub const PAIRS: &str = include_str!("../fixtures/pairs.json");

/// One labelled pair.
#[derive(Debug, Clone, Deserialize)]
pub struct Pair {
    /// The stored question.
    pub a: String,
    /// The new question.
    pub b: String,
    /// Whether `b` may be answered with `a`'s answer.
    pub hit: bool,
    /// `paraphrase`, or what differs in a near miss (`numbers`, `negation`, …).
    pub kind: String,
}

/// A pair's outcome.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The pair.
    pub pair: Pair,
    /// The cosine similarity of the two vectors.
    pub similarity: f32,
    /// What the near-miss guard found, if anything.
    pub guard: Option<&'static str>,
}

impl Scored {
    /// Whether the cache would answer `b` with `a`'s answer at `threshold`.
    pub fn hit_at(&self, threshold: f32) -> bool {
        self.similarity >= threshold && self.guard.is_none()
    }
}

/// The labelled pairs.
pub fn pairs() -> Result<Vec<Pair>, serde_json::Error> {
    serde_json::from_str(PAIRS)
}

/// Every pair scored with `embedder`.
pub fn score(embedder: &Embedder) -> Result<Vec<Scored>, serde_json::Error> {
    Ok(pairs()?
        .into_iter()
        .map(|pair| {
            let similarity = cosine(&embedder.embed(&pair.a), &embedder.embed(&pair.b));
            let guard = guard::disagreement(&pair.a, &pair.b);
            Scored { pair, similarity, guard }
        })
        .collect())
}

/// `(precision, recall, false hits)` at `threshold`.
pub fn precision_recall(scored: &[Scored], threshold: f32) -> (f64, f64, usize) {
    let hits = scored.iter().filter(|s| s.hit_at(threshold)).count();
    let true_hits = scored.iter().filter(|s| s.hit_at(threshold) && s.pair.hit).count();
    let positives = scored.iter().filter(|s| s.pair.hit).count();
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            1.0
        } else {
            f64::from(u32::try_from(a).unwrap_or(u32::MAX)) / f64::from(u32::try_from(b).unwrap_or(u32::MAX))
        }
    };
    (ratio(true_hits, hits), ratio(true_hits, positives), hits - true_hits)
}

/// The model directory the tests use: `FLOWGATE_EMBEDDING_MODEL_DIR`, else the folder
/// `scripts/fetch-embedding-model.sh` fills.
pub fn test_model_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("FLOWGATE_EMBEDDING_MODEL_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_default();
    cache.join("flowgate/models/all-minilm-l6-v2")
}
