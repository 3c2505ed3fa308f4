//! The model: logistic regression over hashed features, trained when the process starts (a few
//! milliseconds, deterministic) on the examples shipped in `data/`, and scored over windows of
//! up to three segments so an injected line is not diluted by the benign text around it.

use std::sync::LazyLock;

use serde::Deserialize;

use super::features::{DIM, features, segments, vectorize};
use super::normalize::normalize;

/// A labelled example.
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    /// The text.
    pub text: String,
    /// `injection` or `benign`.
    pub label: String,
}

impl Example {
    /// Whether this is an injection.
    pub fn is_injection(&self) -> bool {
        self.label == "injection"
    }
}

/// Training data, shipped in the repository.
pub const TRAIN_JSONL: &str = include_str!("../../data/injection_train.jsonl");
/// Held-out test data, disjoint from the training data.
pub const TEST_JSONL: &str = include_str!("../../data/injection_test.jsonl");

/// Parses JSON lines of [`Example`]s (malformed lines are skipped; a test checks there are none).
pub fn parse_examples(jsonl: &str) -> Vec<Example> {
    jsonl.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Logistic regression over hashed features, `x = counts / sqrt(total count)`.
#[derive(Debug)]
pub struct Model {
    /// One weight per feature dimension ([`DIM`]).
    weights: Vec<f32>,
    bias: f32,
}

/// Training hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct TrainConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// AdaGrad learning rate.
    pub learning_rate: f32,
    /// L2 penalty.
    pub l2: f32,
    /// Subtracted from the trained intercept: a prior correction, since about half the training
    /// examples are attacks and far fewer real prompts are.
    pub prior_shift: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { epochs: 30, learning_rate: 0.5, l2: 1e-3, prior_shift: 1.0 }
    }
}

/// The logistic function.
pub(super) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl Model {
    /// Trains on `examples` (deterministic: fixed shuffling seed).
    pub fn train(examples: &[Example], config: TrainConfig) -> Self {
        let data: Vec<(Vec<(usize, f32)>, f32)> = examples
            .iter()
            .map(|e| (vectorize(&normalize(&e.text).text), if e.is_injection() { 1.0 } else { 0.0 }))
            .collect();
        let mut weights = vec![0.0f32; DIM];
        let mut squares = vec![1e-6f32; DIM];
        let (mut bias, mut bias_square) = (0.0f32, 1e-6f32);
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..config.epochs {
            // Fisher-Yates with xorshift.
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
                order.swap(i, j);
            }
            for (x, y) in order.iter().filter_map(|&k| data.get(k)) {
                let z = bias + x.iter().map(|&(i, v)| weights.get(i).copied().unwrap_or(0.0) * v).sum::<f32>();
                let gradient = sigmoid(z) - y;
                for &(i, v) in x {
                    if let (Some(weight), Some(square)) = (weights.get_mut(i), squares.get_mut(i)) {
                        let g = gradient * v + config.l2 * *weight;
                        *square += g * g;
                        *weight -= config.learning_rate * g / square.sqrt();
                    }
                }
                bias_square += gradient * gradient;
                bias -= config.learning_rate * gradient / bias_square.sqrt();
            }
        }
        Self { weights, bias: bias - config.prior_shift }
    }

    /// The weight of feature `i` (every feature index is below [`DIM`]).
    fn weight(&self, i: usize) -> f32 {
        self.weights.get(i).copied().unwrap_or(0.0)
    }

    /// The logit of a whole normalised text.
    pub fn logit(&self, normalized: &str) -> f32 {
        let x = vectorize(normalized);
        self.bias + x.iter().map(|&(i, v)| self.weight(i) * v).sum::<f32>()
    }

    /// The best window of up to three consecutive segments of `normalized`: (logit, start, end).
    pub(super) fn best_window(&self, normalized: &str) -> (f32, usize, usize) {
        let parts = segments(normalized);
        // (start, end, sum of weights, feature count) per segment; windows add them up.
        let sums: Vec<(usize, usize, f32, u32)> = parts
            .iter()
            .map(|&(s, e)| {
                let (mut dot, mut n) = (0.0f32, 0u32);
                features(normalized.get(s..e).unwrap_or_default(), |i| {
                    dot += self.weight(i);
                    n += 1;
                });
                (s, e, dot, n)
            })
            .collect();
        let mut best = (f32::NEG_INFINITY, 0, normalized.len());
        for (first, &(start, ..)) in sums.iter().enumerate() {
            let (mut dot, mut n) = (0.0f32, 0u32);
            for &(_, end, part_dot, part_n) in sums.iter().skip(first).take(3) {
                dot += part_dot;
                n += part_n;
                if n == 0 {
                    continue;
                }
                #[expect(clippy::cast_precision_loss, reason = "feature counts are small")]
                let z = self.bias + dot / (n as f32).sqrt();
                if z > best.0 {
                    best = (z, start, end);
                }
            }
        }
        if best.0 == f32::NEG_INFINITY {
            best.0 = self.bias;
        }
        best
    }
}

/// The model trained on the shipped data, built on first use (or by `warm_up`).
pub(super) static MODEL: LazyLock<Model> =
    LazyLock::new(|| Model::train(&parse_examples(TRAIN_JSONL), TrainConfig::default()));
