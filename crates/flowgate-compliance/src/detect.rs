//! Built-in detectors. Each finds candidate spans with a regular expression and confirms them with
//! a checksum or a parse where one exists (Luhn for cards, mod-97 for IBANs, address parsing for
//! IPs), so the false-positive rate stays low enough to redact on.

use std::sync::LazyLock;

use regex::Regex;

/// One thing found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Detector kind: `email`, `phone`, `payment_card`, `iban`, `ssn`, `ip_address`, `secret`.
    pub kind: &'static str,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// Confidence in [0, 1].
    pub score: f32,
}

/// Every built-in detector kind, in priority order: when two findings overlap, the earlier kind
/// wins.
pub const KINDS: &[&str] = &["secret", "payment_card", "iban", "ssn", "email", "phone", "ip_address"];

fn re(pattern: &str) -> Regex {
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
static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"sk-(?:ant-|proj-|fg-)?[A-Za-z0-9_-]{20,}",
        r"|\bAKIA[0-9A-Z]{16}\b",
        r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b",
        r"|\bxox[baprs]-[A-Za-z0-9-]{10,}",
        r"|\bAIza[0-9A-Za-z_-]{35}\b",
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ))
});

/// Luhn checksum over the digits of `text`.
pub fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 mod-97 check of an IBAN (spaces ignored).
pub fn iban_valid(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder: u64 = 0;
    for c in tail.chars().chain(head.chars()) {
        let value = match c {
            '0'..='9' => u64::from(c as u8 - b'0'),
            'A'..='Z' => u64::from(c as u8 - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

fn ssn_valid(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// Runs the detectors named in `kinds` (all of [`KINDS`] when empty) over `text`. Findings are
/// sorted by position and never overlap.
pub fn scan(text: &str, kinds: &[String]) -> Vec<Finding> {
    let wanted = |kind: &str| kinds.is_empty() || kinds.iter().any(|k| k == kind);
    let mut found = Vec::new();
    let mut push = |kind: &'static str, start: usize, end: usize, score: f32| {
        found.push(Finding { kind, start, end, score });
    };
    if wanted("secret") {
        for m in SECRET.find_iter(text) {
            push("secret", m.start(), m.end(), 0.95);
        }
    }
    if wanted("payment_card") {
        for m in CARD.find_iter(text) {
            if luhn_valid(m.as_str()) {
                push("payment_card", m.start(), m.end(), 0.95);
            }
        }
    }
    if wanted("iban") {
        for m in IBAN.find_iter(text) {
            if iban_valid(m.as_str()) {
                push("iban", m.start(), m.end(), 0.95);
            }
        }
    }
    if wanted("ssn") {
        for c in SSN.captures_iter(text) {
            if let (Some(all), Some(a), Some(g), Some(s)) = (c.get(0), c.get(1), c.get(2), c.get(3))
                && ssn_valid(a.as_str(), g.as_str(), s.as_str())
            {
                push("ssn", all.start(), all.end(), 0.85);
            }
        }
    }
    if wanted("email") {
        for m in EMAIL.find_iter(text) {
            push("email", m.start(), m.end(), 0.99);
        }
    }
    if wanted("phone") {
        for m in PHONE.find_iter(text) {
            let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
            if (9..=15).contains(&digits) {
                push("phone", m.start(), m.end(), 0.7);
            }
        }
    }
    if wanted("ip_address") {
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
    resolve_overlaps(found)
}

/// Keeps, among overlapping findings, the one whose kind comes first in [`KINDS`] (then the
/// longer one).
fn resolve_overlaps(mut found: Vec<Finding>) -> Vec<Finding> {
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

/// `text` with each finding replaced by `<KIND_N>` (N counts per kind from 1, the same value
/// getting the same number).
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut seen: Vec<(&str, &str, usize)> = Vec::new();
    let mut last = 0;
    for finding in findings {
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
