//! The blocked-terms detector. The terms travel with each request, inside the `detectors` list
//! (the gRPC contract has no other place for them):
//!
//! ```text
//! detectors: ["email", "blocked_terms:project falcon|acme corp|c++"]
//! ```
//!
//! Terms are separated by `|`, trimmed, and matched case-insensitively (Unicode case folding) on
//! word boundaries: `falcon` matches "Falcon." but not "falconry". A boundary is required only on a
//! side where the term starts or ends with a word character, so `c++` and `.env` work. A term
//! cannot contain `|`. At most [`MAX_TERMS`] terms of at most [`MAX_TERM_BYTES`] bytes each.
//!
//! Compiled matchers are cached by their specification, so a guardrail that sends the same list
//! with every request compiles it once.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use regex::{Regex, RegexBuilder};

/// Most terms in one `blocked_terms:` entry.
pub const MAX_TERMS: usize = 1000;
/// Longest term, in bytes.
pub const MAX_TERM_BYTES: usize = 200;
/// Distinct term lists kept compiled.
const CACHE_CAPACITY: usize = 256;

/// A compiled list of blocked terms.
#[derive(Debug)]
pub struct TermMatcher {
    regex: Regex,
    terms: usize,
}

impl TermMatcher {
    /// Byte spans of every blocked term in `text`, left to right, not overlapping.
    pub fn find_iter<'a>(&'a self, text: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
        self.regex.find_iter(text).map(|m| (m.start(), m.end()))
    }

    /// How many terms.
    pub fn len(&self) -> usize {
        self.terms
    }

    /// Whether there are no terms (never true for a parsed matcher).
    pub fn is_empty(&self) -> bool {
        self.terms == 0
    }
}

static CACHE: LazyLock<Mutex<HashMap<String, Arc<TermMatcher>>>> = LazyLock::new(Mutex::default);

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Compiles `spec` (`term1|term2`), or returns the cached matcher for it.
pub fn matcher(spec: &str) -> Result<Arc<TermMatcher>, String> {
    if let Some(found) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).get(spec) {
        return Ok(found.clone());
    }
    let compiled = Arc::new(compile(spec)?);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(spec.to_owned(), compiled.clone());
    Ok(compiled)
}

fn compile(spec: &str) -> Result<TermMatcher, String> {
    let mut terms: Vec<&str> = spec.split('|').map(str::trim).filter(|t| !t.is_empty()).collect();
    if terms.is_empty() {
        return Err("`blocked_terms:` lists no terms; use `blocked_terms:term one|term two`".to_owned());
    }
    if terms.len() > MAX_TERMS {
        return Err(format!("`blocked_terms:` lists {} terms; at most {MAX_TERMS}", terms.len()));
    }
    if let Some(long) = terms.iter().position(|t| t.len() > MAX_TERM_BYTES) {
        return Err(format!("blocked term #{} is longer than {MAX_TERM_BYTES} bytes", long + 1));
    }
    // Longest first, so "acme corp" wins over "acme" at the same position.
    terms.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    terms.dedup();
    let alternatives: Vec<String> = terms
        .iter()
        .map(|term| {
            let mut pattern = String::with_capacity(term.len() + 8);
            if term.chars().next().is_some_and(is_word) {
                pattern.push_str(r"\b");
            }
            // Any run of whitespace in a term matches any run of whitespace in the text.
            let words: Vec<String> = term.split_whitespace().map(regex::escape).collect();
            pattern.push_str(&words.join(r"\s+"));
            if term.chars().next_back().is_some_and(is_word) {
                pattern.push_str(r"\b");
            }
            pattern
        })
        .collect();
    let regex = RegexBuilder::new(&format!("(?:{})", alternatives.join("|")))
        .case_insensitive(true)
        .size_limit(32 * 1024 * 1024)
        .build()
        .map_err(|error| format!("blocked terms do not compile: {error}"))?;
    Ok(TermMatcher { regex, terms: terms.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(spec: &str, text: &str) -> Vec<String> {
        matcher(spec).unwrap().find_iter(text).map(|(s, e)| text[s..e].to_owned()).collect()
    }

    #[test]
    fn case_insensitive_on_word_boundaries() {
        assert_eq!(found("falcon|Acme Corp", "Project FALCON, by acme  corp; falconry"), vec!["FALCON", "acme  corp"]);
        assert!(found("cat", "concatenate category").is_empty());
        assert_eq!(found("c++|.env", "we use C++ and a .env file"), vec!["C++", ".env"]);
        assert_eq!(found("straße", "Die STRASSE ist nicht die Straße."), vec!["Straße"]);
    }

    #[test]
    fn longer_terms_win_and_cache_is_reused() {
        assert_eq!(found("acme|acme corp", "acme corp"), vec!["acme corp"]);
        let a = matcher("x1|y2").unwrap();
        let b = matcher("x1|y2").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn bad_lists_are_rejected() {
        assert!(matcher(" | ").is_err());
        let many = vec!["t"; MAX_TERMS + 1].join("|");
        assert!(matcher(&many).unwrap_err().contains("at most"));
        assert!(matcher(&"x".repeat(MAX_TERM_BYTES + 1)).is_err());
    }
}
