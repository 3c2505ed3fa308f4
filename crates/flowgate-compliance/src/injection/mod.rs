//! Prompt-injection and jailbreak classifier: weighted patterns plus a small logistic-regression
//! model, combined in log-odds.
//!
//! # Why this design
//! - **Patterns** capture what is known about attacks ("ignore previous instructions", DAN and
//!   "developer mode" personas, system-prompt extraction, chat-template delimiters, text addressed
//!   to "the AI reading this", exfiltration through markdown images, the common non-English
//!   overrides). Each pattern carries a weight in log-odds: 3.5 means "on its own, about 30:1 that
//!   this is an attack"; 0.8 is a weak hint. Patterns are precise but brittle to paraphrase.
//! - **The model** generalises over phrasing: logistic regression over hashed word unigrams, word
//!   bigrams and character trigrams, trained when the process starts (a few milliseconds) on
//!   `data/injection_train.jsonl`, shipped in the repository and compiled into the binary. No
//!   download, no native runtime, deterministic.
//! - **Combined**: `score = sigmoid(model_logit + min(Σ pattern weights, 6))`. Patterns act as a
//!   prior the small training set cannot learn reliably; the model moves the score for phrasing no
//!   pattern anticipated. Findings are reported from 0.5 by default (per-tenant feedback moves
//!   that); the built-in policy denies from 0.8.
//! - **Obfuscation** is undone before both see the text: case, zero-width characters, a few
//!   Cyrillic homoglyphs, leetspeak inside words (`1gn0r3`), letter-spacing (`i g n o r e`,
//!   `I.g.n.o.r.e`) and hyphenation inside words (`ign-ore`).
//! - **Long texts** (a document with an injected line) are scored by windows of up to three
//!   sentences; the text's score is its best window's, so an injected line is not diluted by the
//!   benign text around it. The finding's span is the strongest pattern match, else that window.
//!
//! Precision and recall on the held-out `data/injection_test.jsonl` are computed at start (see
//! [`stats`]) and asserted by a unit test.
//!
//! # Layout
//! - `patterns`: the weighted pattern table and its matching;
//! - `normalize`: de-obfuscation, with the map back to original byte offsets;
//! - `features`: hashed features, the sparse vector, the segments long texts are scored by;
//! - `model`: the labelled examples, training, and the best-window logit;
//! - `evaluate`: confusion counts, precision and recall, the figures measured at start;
//! - here: patterns and model combined into a [`Verdict`].

mod evaluate;
mod features;
mod model;
mod normalize;
mod patterns;

pub use evaluate::{Metrics, ModelStats, evaluate, stats, warm_up};
pub use model::{Example, Model, TEST_JSONL, TRAIN_JSONL, TrainConfig, parse_examples};
pub use normalize::{Normalized, normalize};

use model::{MODEL, sigmoid};

/// The classifier's verdict on a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Combined score in [0, 1].
    pub score: f32,
    /// Byte span of the strongest evidence (pattern match, else best window) in the original text.
    pub start: usize,
    /// End of that span.
    pub end: usize,
    /// The model's logit for the best window.
    pub model_logit: f32,
    /// Sum of the matched patterns' weights (capped).
    pub pattern_weight: f32,
}

/// Scores `text` with patterns only, the model only, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Patterns only: `sigmoid(-2 + Σ weights)`, so one pattern of weight ≥ 2 reports.
    Patterns,
    /// The model only.
    Model,
    /// Both (what the service uses).
    Combined,
}

/// Classifies `text` with the shipped model.
pub fn classify(text: &str) -> Verdict {
    classify_with(&MODEL, text, Mode::Combined)
}

/// Classifies `text` with `model` in `mode`: `score = sigmoid(model_logit + pattern weight)`,
/// the span that of the strongest pattern match, else of the model's best window.
pub fn classify_with(model: &Model, text: &str, mode: Mode) -> Verdict {
    let normalized = normalize(text);
    let (model_logit, window_start, window_end) =
        if mode == Mode::Patterns { (-2.0, 0, normalized.text.len()) } else { model.best_window(&normalized.text) };
    let evidence =
        if mode == Mode::Model { patterns::PatternEvidence::default() } else { patterns::evidence(&normalized.text) };
    let (start, end) = match evidence.strongest {
        Some((start, end)) => normalized.original_range(start, end, text),
        None => normalized.original_range(window_start, window_end, text),
    };
    Verdict { score: sigmoid(model_logit + evidence.weight), start, end, model_logit, pattern_weight: evidence.weight }
}

/// Names of the patterns that match `text` (for explanations and tests; never logged with text).
pub fn matched_patterns(text: &str) -> Vec<&'static str> {
    patterns::names(&normalize(text).text)
}

#[cfg(test)]
mod tests;
