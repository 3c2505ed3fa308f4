//! Built-in detectors. Each finds candidate spans with a regular expression and confirms them with
//! a checksum or a parse where one exists (Luhn for cards, mod-97 for IBANs, address parsing for
//! IPs), so the false-positive rate stays low enough to redact on.
//!
//! Secrets are found three ways: provider key formats (OpenAI, Anthropic, AWS, GitHub, Slack,
//! Google, Stripe, GitLab, Hugging Face, PEM private keys, JWTs); credential assignments
//! (`password=…`, `api_key: …`); and high-entropy tokens (see [`secrets`]). Prompt injection is a
//! scored classifier (see [`crate::injection`]). Blocked terms come with the request (see
//! [`terms`]).
//!
//! Every regular expression is compiled once per process ([`LazyLock`]).

pub mod secrets;
pub mod terms;

use std::sync::{Arc, LazyLock};

use regex::Regex;

use crate::injection;

/// One thing found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Detector kind: one of [`KINDS`] or [`BLOCKED_TERMS`].
    pub kind: &'static str,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// Confidence in [0, 1].
    pub score: f32,
}

/// Every built-in detector kind, in priority order: when two data findings overlap, the earlier
/// kind wins. `prompt_injection` classifies the text rather than locating data, so it never
/// competes for a span (and is never redacted).
pub const KINDS: &[&str] =
    &["secret", "payment_card", "iban", "ssn", "email", "phone", "ip_address", "prompt_injection"];

/// Kind of the per-request blocked-terms detector (`blocked_terms:term1|term2`).
pub const BLOCKED_TERMS: &str = "blocked_terms";

/// The prompt-injection kind.
pub const PROMPT_INJECTION: &str = "prompt_injection";

/// Number of kinds with per-tenant thresholds and baselines: [`KINDS`] then [`BLOCKED_TERMS`].
pub const TRACKED_KINDS: usize = 9;

/// [`KINDS`] followed by [`BLOCKED_TERMS`], indexed like thresholds and baselines.
pub const ALL_KINDS: [&str; TRACKED_KINDS] =
    ["secret", "payment_card", "iban", "ssn", "email", "phone", "ip_address", "prompt_injection", BLOCKED_TERMS];

/// The index of `kind` in [`ALL_KINDS`].
pub fn kind_index(kind: &str) -> Option<usize> {
    ALL_KINDS.iter().position(|k| *k == kind)
}

/// Minimum score per kind (indexed like [`ALL_KINDS`]): findings scored below are dropped.
pub type Thresholds = [f32; TRACKED_KINDS];

/// The thresholds used when a tenant has none of its own: every data finding is kept; prompt
/// injection is reported from 0.5 (the classifier's decision boundary).
pub const DEFAULT_THRESHOLDS: Thresholds = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0];

/// Which detectors a scan runs, parsed from the request's `detectors` list.
#[derive(Debug, Clone, Default)]
pub struct DetectorSet {
    /// Bit `i` set: run `KINDS[i]`.
    builtins: u16,
    /// The per-request blocked terms, when `blocked_terms:…` was asked.
    terms: Option<Arc<terms::TermMatcher>>,
}

/// A `detectors` entry the service does not know.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DetectorError(pub String);

impl DetectorSet {
    /// Every built-in detector (what an empty `detectors` list means).
    pub fn all() -> Self {
        Self { builtins: (1u16 << KINDS.len()) - 1, terms: None }
    }

    /// Parses a request's `detectors`: built-in kind names, and `blocked_terms:term1|term2` (terms
    /// matched case-insensitively on word boundaries). An empty list means every built-in
    /// detector; otherwise exactly the named ones run (`["blocked_terms:x"]` runs only the terms).
    pub fn parse(names: &[String]) -> Result<Self, DetectorError> {
        if names.is_empty() {
            return Ok(Self::all());
        }
        let mut set = Self::default();
        for name in names {
            let name = name.trim();
            if let Some(index) = KINDS.iter().position(|k| *k == name) {
                set.builtins |= 1 << index;
            } else if let Some(list) = name.strip_prefix(BLOCKED_TERMS).and_then(|rest| rest.strip_prefix(':')) {
                if set.terms.is_some() {
                    return Err(DetectorError("`blocked_terms:` may appear only once".to_owned()));
                }
                set.terms = Some(terms::matcher(list).map_err(DetectorError)?);
            } else if name == BLOCKED_TERMS {
                return Err(DetectorError(
                    "`blocked_terms` needs its terms: `blocked_terms:term one|term two`".to_owned(),
                ));
            } else {
                return Err(DetectorError(format!(
                    "unknown detector `{}`; known: {}, {BLOCKED_TERMS}:<term>|<term>",
                    truncate(name, 64),
                    KINDS.join(", ")
                )));
            }
        }
        Ok(set)
    }

    /// Whether `kind` runs.
    pub fn runs(&self, kind: &str) -> bool {
        KINDS.iter().position(|k| *k == kind).is_some_and(|i| self.builtins & (1 << i) != 0)
            || (kind == BLOCKED_TERMS && self.terms.is_some())
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

pub(crate) fn re(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(re) => re,
        // The patterns are constants covered by tests; an invalid one is a programming error.
        Err(error) => panic!("invalid built-in pattern {pattern}: {error}"),
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"));
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d(?:[ -]?\d){12,18}\b"));
static IBAN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b"));
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d{3})-(\d{2})-(\d{4})\b"));
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}\b|\+\d{8,15}\b"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"));
static IPV6: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}\b"));

/// Luhn checksum over the digits of `text`.
pub fn luhn_valid(text: &str) -> bool {
    let mut digits = [0u8; 19];
    let mut n = 0;
    for c in text.bytes().filter(u8::is_ascii_digit) {
        if n == digits.len() {
            return false;
        }
        digits[n] = c - b'0';
        n += 1;
    }
    if !(13..=19).contains(&n) {
        return false;
    }
    let sum: u32 = digits[..n]
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 mod-97 check of an IBAN (spaces ignored).
pub fn iban_valid(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder: u64 = 0;
    for &c in tail.iter().chain(head) {
        let value = match c {
            b'0'..=b'9' => u64::from(c - b'0'),
            b'A'..=b'Z' => u64::from(c - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

fn ssn_valid(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// Runs the detectors named in `kinds` (all of [`KINDS`] when empty) with the default thresholds.
/// Unknown names are ignored; use [`DetectorSet::parse`] to reject them.
pub fn scan(text: &str, kinds: &[String]) -> Vec<Finding> {
    let set = DetectorSet::parse(kinds).unwrap_or_else(|_| {
        let known: Vec<String> = kinds.iter().filter(|k| KINDS.contains(&k.as_str())).cloned().collect();
        DetectorSet::parse(&known).unwrap_or_default()
    });
    scan_with(text, &set, &DEFAULT_THRESHOLDS)
}

/// Runs `set` over `text`, dropping findings scored below their kind's threshold. Findings are
/// sorted by position; data findings never overlap each other (blocked terms and prompt injection
/// are reported even where they overlap data).
pub fn scan_with(text: &str, set: &DetectorSet, thresholds: &Thresholds) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut push = |kind: &'static str, start: usize, end: usize, score: f32| {
        let threshold = kind_index(kind).map_or(0.0, |i| thresholds[i]);
        if score >= threshold {
            found.push(Finding { kind, start, end, score });
        }
    };
    if set.runs("secret") {
        secrets::scan(text, &mut push);
    }
    if set.runs("payment_card") {
        for m in CARD.find_iter(text) {
            // `+4915112345678` is an international phone number, whatever its checksum.
            let after_plus = text[..m.start()].ends_with('+');
            if !after_plus && luhn_valid(m.as_str()) {
                push("payment_card", m.start(), m.end(), 0.95);
            }
        }
    }
    if set.runs("iban") {
        for m in IBAN.find_iter(text) {
            if iban_valid(m.as_str()) {
                push("iban", m.start(), m.end(), 0.95);
            }
        }
    }
    if set.runs("ssn") {
        for c in SSN.captures_iter(text) {
            if let (Some(all), Some(a), Some(g), Some(s)) = (c.get(0), c.get(1), c.get(2), c.get(3))
                && ssn_valid(a.as_str(), g.as_str(), s.as_str())
            {
                push("ssn", all.start(), all.end(), 0.85);
            }
        }
    }
    if set.runs("email") {
        for m in EMAIL.find_iter(text) {
            push("email", m.start(), m.end(), 0.99);
        }
    }
    if set.runs("phone") {
        for m in PHONE.find_iter(text) {
            let digits = m.as_str().bytes().filter(u8::is_ascii_digit).count();
            if (9..=15).contains(&digits) {
                push("phone", m.start(), m.end(), 0.7);
            }
        }
    }
    if set.runs("ip_address") {
        for m in IPV4.find_iter(text) {
            if m.as_str().parse::<std::net::Ipv4Addr>().is_ok() {
                push("ip_address", m.start(), m.end(), 0.9);
            }
        }
        for m in IPV6.find_iter(text) {
            if m.as_str().contains(':') && m.as_str().parse::<std::net::Ipv6Addr>().is_ok() && m.as_str().len() > 2 {
                push("ip_address", m.start(), m.end(), 0.9);
            }
        }
    }
    let mut found = resolve_overlaps(found);
    if let Some(matcher) = &set.terms {
        let threshold = thresholds[TRACKED_KINDS - 1];
        for (start, end) in matcher.find_iter(text) {
            if 1.0 >= threshold {
                found.push(Finding { kind: BLOCKED_TERMS, start, end, score: 1.0 });
            }
        }
    }
    if set.runs(PROMPT_INJECTION) {
        let verdict = injection::classify(text);
        let threshold = kind_index(PROMPT_INJECTION).map_or(0.5, |i| thresholds[i]);
        if verdict.score >= threshold && !text.is_empty() {
            found.push(Finding {
                kind: PROMPT_INJECTION,
                start: verdict.start,
                end: verdict.end,
                score: verdict.score,
            });
        }
    }
    found.sort_by_key(|f| (f.start, f.end));
    found
}

/// Keeps, among overlapping findings, the one whose kind comes first in [`KINDS`] (then the
/// longer one).
fn resolve_overlaps(mut found: Vec<Finding>) -> Vec<Finding> {
    if found.len() < 2 {
        return found;
    }
    let rank = |kind: &str| KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len());
    found.sort_by(|a, b| rank(a.kind).cmp(&rank(b.kind)).then((b.end - b.start).cmp(&(a.end - a.start))));
    let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
    for finding in found {
        if kept.iter().all(|k| finding.end <= k.start || finding.start >= k.end) {
            kept.push(finding);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}

/// `text` with each data finding (and blocked term) replaced by `<KIND_N>` (N counts per kind
/// from 1, the same value getting the same number). Prompt-injection findings classify the text
/// and are not replaced; a finding overlapping one already replaced is skipped.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut seen: Vec<(&str, &str, usize)> = Vec::new();
    let mut last = 0;
    for finding in findings {
        if finding.kind == PROMPT_INJECTION || finding.start < last || finding.end > text.len() {
            continue;
        }
        let value = &text[finding.start..finding.end];
        let number = match seen.iter().find(|(k, v, _)| *k == finding.kind && *v == value) {
            Some((_, _, n)) => *n,
            None => {
                let n = seen.iter().filter(|(k, _, _)| *k == finding.kind).count() + 1;
                seen.push((finding.kind, value, n));
                n
            }
        };
        out.push_str(&text[last..finding.start]);
        out.push('<');
        out.push_str(&finding.kind.to_ascii_uppercase());
        out.push('_');
        out.push_str(&number.to_string());
        out.push('>');
        last = finding.end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests;
