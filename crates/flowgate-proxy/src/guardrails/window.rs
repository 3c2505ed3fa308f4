//! The stream guard's sliding window over one streamed text (the answer's text, or one tool
//! call's arguments). Text arrives in pieces; what can no longer be part of a finding is released,
//! and only the end that could still be (its trailing run of characters a finding of an active
//! kind may contain, capped at the longest such finding, see [`span_shape`]) is held back. Each
//! scan covers the held text and the last released bytes as left context, so a value split across
//! any number of chunks (`4111 1111 1111 1111` token by token) is seen whole, and a cut never
//! falls inside a finding or a placeholder to restore.

use flowgate_contracts::guardrails::{SpanShape, span_shape};
use flowgate_proto::compliance::Finding;

/// Released bytes kept as left context for the next scan (word boundaries, the keyword before a
/// secret).
const CONTEXT: usize = 256;

/// The most text held back, whatever the shapes say: beyond it text is released, and a finding
/// that crosses the cut is redacted in parts.
const MAX_HELD: usize = 4096;

/// What a window must hold back, from the kinds scanned during the call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reach {
    /// One shape per kind with findings located in the text.
    shapes: Vec<SpanShape>,
    /// Bytes held back whatever they are (blocked terms, which may contain anything).
    any: usize,
    /// Longest placeholder to restore, in bytes (0: nothing to restore).
    placeholder: usize,
}

impl Reach {
    /// The reach of `detectors` (as sent to the compliance service), and of the placeholders put
    /// back (`<EMAIL_1>`) when `restoring`.
    pub(crate) fn new(detectors: &[String], restoring: bool) -> Self {
        let mut reach = Self { placeholder: if restoring { PLACEHOLDER } else { 0 }, ..Self::default() };
        for detector in detectors {
            if let Some(shape) = span_shape(detector) {
                reach.shapes.push(shape);
            } else if let Some(terms) = detector.strip_prefix("blocked_terms:") {
                // Case folding may triple a character's bytes; whitespace runs may be longer.
                let longest = terms.split('|').map(|t| t.trim().len()).max().unwrap_or(0);
                reach.any = reach.any.max(longest * 3 + 16);
            }
        }
        reach
    }
}

/// Longest placeholder waited for (`<PAYMENT_CARD_123>` and some).
const PLACEHOLDER: usize = 32;

/// One streamed text: released context and held text.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// The last released bytes, as they came (before redaction).
    tail: String,
    /// Text not released yet.
    held: String,
}

/// The largest char boundary of `text` at or below `index`.
fn floor_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The smallest char boundary of `text` at or above `index`.
fn ceil_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while index < text.len() && !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

impl Window {
    /// Adds a piece of text.
    pub(crate) fn push(&mut self, delta: &str) {
        self.held.push_str(delta);
    }

    /// Bytes held.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// How many held bytes no finding still to come can reach: everything before the trailing run
    /// of characters some active kind's finding may contain (each run capped at that kind's
    /// longest finding), and before an unclosed `<` that may open a placeholder.
    pub(crate) fn releasable(&self, reach: &Reach) -> usize {
        let held = &self.held;
        let len = held.len();
        let mut cut = len;
        for shape in &reach.shapes {
            let run = held.char_indices().rev().take_while(|(_, c)| (shape.chars)(*c)).last().map_or(len, |(i, _)| i);
            cut = cut.min(run.max(ceil_boundary(held, len.saturating_sub(shape.max_bytes))));
        }
        if reach.any > 0 {
            cut = cut.min(ceil_boundary(held, len.saturating_sub(reach.any)));
        }
        if reach.placeholder > 0
            && let Some(open) = held.rfind('<')
            && !held.get(open..).unwrap_or_default().contains('>')
            && len - open < reach.placeholder
        {
            cut = cut.min(open);
        }
        cut
    }

    /// The text a scan covers: the released context, then the held text. Findings' offsets are
    /// in it.
    pub(crate) fn scan_text(&self) -> String {
        let mut text = String::with_capacity(self.tail.len() + self.held.len());
        text.push_str(&self.tail);
        text.push_str(&self.held);
        text
    }

    /// Releases held text up to `cut`, moved back to the start of a finding that crosses it (or
    /// of a placeholder `<…>` that does), unless that would hold more than [`MAX_HELD`]. Returns
    /// the released text and the findings over it (offsets made local, clipped to it; a finding
    /// that began in text already released is redacted from where the piece starts).
    pub(crate) fn release(&mut self, cut: usize, findings: &[Finding]) -> (String, Vec<Finding>) {
        let base = self.tail.len();
        let len = self.held.len();
        let floor = ceil_boundary(&self.held, len.saturating_sub(MAX_HELD));
        let mut cut = floor_boundary(&self.held, cut);
        loop {
            let crossing = findings
                .iter()
                .filter(|f| f.kind != "prompt_injection")
                .map(|f| (f.start as usize, f.end as usize))
                .filter(|&(start, end)| start >= base && start < base + cut && end > base + cut)
                .map(|(start, _)| start - base)
                .min();
            let held = &self.held;
            let placeholder = held
                .get(..cut)
                .and_then(|before| before.rfind('<'))
                .filter(|&open| cut - open < PLACEHOLDER && !held.get(open..cut).unwrap_or_default().contains('>'))
                .filter(|&open| held.get(open..).unwrap_or_default().contains('>'));
            let Some(back) = crossing.into_iter().chain(placeholder).min() else { break };
            let back = floor_boundary(&self.held, back);
            if back < floor || back >= cut {
                break;
            }
            cut = back;
        }
        let local = findings
            .iter()
            .filter_map(|f| {
                let start = (f.start as usize).max(base);
                let end = (f.end as usize).min(base + cut);
                (start < end).then(|| Finding {
                    start: u32::try_from(start - base).unwrap_or(u32::MAX),
                    end: u32::try_from(end - base).unwrap_or(u32::MAX),
                    ..f.clone()
                })
            })
            .collect();
        let rest = self.held.split_off(cut);
        let released = std::mem::replace(&mut self.held, rest);
        self.tail.push_str(&released);
        let drop = ceil_boundary(&self.tail, self.tail.len().saturating_sub(CONTEXT));
        self.tail.drain(..drop);
        (released, local)
    }
}
