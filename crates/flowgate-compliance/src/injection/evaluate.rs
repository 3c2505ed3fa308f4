//! How well the classifier does: confusion counts, precision and recall on labelled examples,
//! and the held-out figures measured at start and reported by the health endpoint.

use std::sync::LazyLock;

use super::features::DIM;
use super::model::{Example, MODEL, Model, TEST_JSONL, TRAIN_JSONL, parse_examples};
use super::{Mode, classify_with, patterns};

/// Confusion counts and the figures derived from them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// True positives.
    pub tp: u32,
    /// False positives.
    pub fp: u32,
    /// True negatives.
    pub tn: u32,
    /// False negatives.
    pub fn_: u32,
    /// tp / (tp + fp).
    pub precision: f32,
    /// tp / (tp + fn).
    pub recall: f32,
    /// Harmonic mean of precision and recall.
    pub f1: f32,
}

impl Metrics {
    /// Computes the figures from `(predicted, actual)` pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (bool, bool)>) -> Self {
        let mut m = Self::default();
        for (predicted, actual) in pairs {
            match (predicted, actual) {
                (true, true) => m.tp += 1,
                (true, false) => m.fp += 1,
                (false, false) => m.tn += 1,
                (false, true) => m.fn_ += 1,
            }
        }
        #[expect(clippy::cast_precision_loss, reason = "small counts")]
        {
            m.precision = if m.tp + m.fp == 0 { 1.0 } else { m.tp as f32 / (m.tp + m.fp) as f32 };
            m.recall = if m.tp + m.fn_ == 0 { 1.0 } else { m.tp as f32 / (m.tp + m.fn_) as f32 };
        }
        m.f1 =
            if m.precision + m.recall == 0.0 { 0.0 } else { 2.0 * m.precision * m.recall / (m.precision + m.recall) };
        m
    }
}

/// Evaluates `model` in `mode` on `examples` at `threshold`.
pub fn evaluate(model: &Model, examples: &[Example], mode: Mode, threshold: f32) -> Metrics {
    Metrics::from_pairs(
        examples.iter().map(|e| (classify_with(model, &e.text, mode).score >= threshold, e.is_injection())),
    )
}

/// What `/api/compliance/intelligent/health` reports about the classifier.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelStats {
    /// `logistic_regression+patterns`.
    pub kind: &'static str,
    /// Training examples (injections among them).
    pub training_examples: usize,
    /// Injections in the training data.
    pub training_injections: usize,
    /// Held-out examples.
    pub test_examples: usize,
    /// Number of weighted patterns.
    pub patterns: usize,
    /// Hashed feature dimensions.
    pub feature_dimensions: usize,
    /// Decision threshold of the figures below.
    pub threshold: f32,
    /// Held-out figures of the combined classifier.
    pub test: Metrics,
    /// Milliseconds spent training and evaluating at start.
    pub training_ms: u64,
}

static STATS: LazyLock<ModelStats> = LazyLock::new(|| {
    let started = std::time::Instant::now();
    let train = parse_examples(TRAIN_JSONL);
    let test = parse_examples(TEST_JSONL);
    let metrics = evaluate(&MODEL, &test, Mode::Combined, 0.5);
    ModelStats {
        kind: "logistic_regression+patterns",
        training_examples: train.len(),
        training_injections: train.iter().filter(|e| e.is_injection()).count(),
        test_examples: test.len(),
        patterns: patterns::COUNT,
        feature_dimensions: DIM,
        threshold: 0.5,
        test: metrics,
        training_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
});

/// Trains the model, compiles the patterns and measures the held-out figures, so the first scan
/// does not pay for it. Returns the figures.
pub fn warm_up() -> &'static ModelStats {
    LazyLock::force(&STATS)
}

/// The classifier's figures (computed on first call).
pub fn stats() -> &'static ModelStats {
    &STATS
}
