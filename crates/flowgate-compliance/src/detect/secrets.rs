//! Secret detection, three ways, all reported as kind `secret`:
//!
//! 1. **Provider formats** (score 0.95–0.99): OpenAI/Anthropic/Flowgate `sk-…`, AWS `AKIA…`/`ASIA…`,
//!    GitHub `ghp_…`/`github_pat_…`, Slack `xox…`, Google `AIza…`, Stripe `sk_live_…`, GitLab
//!    `glpat-…`, Hugging Face `hf_…`, PEM private-key blocks, JWTs.
//! 2. **Credential assignments** (0.85): `password=…`, `api_key: "…"`, `DB_SECRET=…` where the
//!    value is not a placeholder (`<your-key>`, `${VAR}`, `changeme`, …) and is not a plain word.
//! 3. **High-entropy tokens** (0.6–0.9): runs of base64/base62-like characters of 20–256 bytes
//!    that look random: Shannon entropy at or above a length-dependent floor, upper case, lower case
//!    and digits mixed, frequent character-class changes, and few word-like stretches. Hex-only
//!    runs (hashes, UUIDs, commit ids) and lower-case-only runs (slugs, pod names) are reported only
//!    after a keyword (`token`, `key`, `secret`, `password`, `bearer`, …), since ordinary prose is
//!    full of them. Runs longer than 256 bytes are data (base64 images, blobs), not credentials.
//!
//! The thresholds were set on the labelled set in `data/pii_test.jsonl` and on the
//! `entropy_thresholds_*` unit tests (random tokens versus identifiers, hashes, UUIDs and paths).

use std::sync::LazyLock;

use regex::Regex;

use super::re;

static PROVIDER: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"sk-(?:ant-|proj-|fg-)?[A-Za-z0-9_-]{20,}",
        r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b",
        r"|\bgithub_pat_[A-Za-z0-9_]{22,}",
        r"|\bxox[abeprs]-[A-Za-z0-9-]{10,}",
        r"|\bAIza[0-9A-Za-z_-]{35}\b",
        r"|\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
        r"|\bglpat-[A-Za-z0-9_-]{20,}",
        r"|\bhf_[A-Za-z0-9]{30,}\b",
        r"|-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)?",
        r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ))
});

static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r#"(?i)[a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key"#,
        r#"|private[_-]?key|client[_-]?secret|credentials?)[a-z0-9_.-]*["']?\s*[:=]\s*["']?([^\s"'`,;]{8,200})"#,
    ))
});

static TOKEN_RUN: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Za-z0-9+/_-]{20,}={0,2}"));

static CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:token|key|secret|password|passwd|pwd|bearer|auth|credential|cookie|session|signature)")
});

/// Shannon entropy, in bits per byte, of `bytes`.
pub fn shannon_entropy(bytes: &[u8]) -> f32 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    #[expect(clippy::cast_precision_loss, reason = "lengths are at most a few hundred bytes")]
    let n = bytes.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            #[expect(clippy::cast_precision_loss, reason = "small counts")]
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// Shape of a candidate token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenShape {
    /// Bytes.
    pub len: usize,
    /// Shannon entropy (bits per byte).
    pub entropy: f32,
    /// Upper-case letters, lower-case letters, digits.
    pub upper: usize,
    /// Lower-case letters.
    pub lower: usize,
    /// Digits.
    pub digits: usize,
    /// Only hex digits (and `-`).
    pub hex_only: bool,
    /// Fraction of adjacent alphanumeric pairs whose class (upper/lower/digit) differs.
    pub transitions: f32,
    /// Fraction of letters in word-like stretches (a letter followed by at least four lower-case
    /// letters, a quarter of them vowels).
    pub wordiness: f32,
}

/// Measures `token`.
pub fn shape(token: &str) -> TokenShape {
    let bytes = token.as_bytes();
    let (mut upper, mut lower, mut digits) = (0, 0, 0);
    let mut hex_only = true;
    let (mut pairs, mut changes) = (0u32, 0u32);
    let mut previous: Option<u8> = None;
    for &b in bytes {
        let class = if b.is_ascii_uppercase() {
            upper += 1;
            Some(0)
        } else if b.is_ascii_lowercase() {
            lower += 1;
            Some(1)
        } else if b.is_ascii_digit() {
            digits += 1;
            Some(2)
        } else {
            None
        };
        if !(b.is_ascii_hexdigit() || b == b'-') {
            hex_only = false;
        }
        if let (Some(a), Some(c)) = (previous, class) {
            pairs += 1;
            if a != c {
                changes += 1;
            }
        }
        previous = class;
    }
    // Word-like stretches: [A-Za-z][a-z]{4,}, at least a quarter vowels.
    let mut wordy = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_lowercase() {
                j += 1;
            }
            let stretch = &bytes[i..j];
            let vowels = stretch.iter().filter(|b| b"aeiouAEIOU".contains(b)).count();
            if stretch.len() >= 5 && vowels * 4 >= stretch.len() {
                wordy += stretch.len();
            }
            i = j;
        } else {
            i += 1;
        }
    }
    let letters = upper + lower;
    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    TokenShape {
        len: bytes.len(),
        entropy: shannon_entropy(bytes),
        upper,
        lower,
        digits,
        hex_only,
        transitions: if pairs == 0 { 0.0 } else { changes as f32 / pairs as f32 },
        wordiness: if letters == 0 { 0.0 } else { wordy as f32 / letters as f32 },
    }
}

/// Prefixes of identifiers that are random but public (Stripe object ids, request ids), common in
/// support conversations.
const PUBLIC_ID_PREFIXES: &[&str] = &[
    "evt_", "cus_", "ch_", "pi_", "pm_", "py_", "in_", "sub_", "price_", "prod_", "acct_", "txn_", "req_", "seti_",
    "cs_test_", "cs_live_",
];

/// Entropy floor for a random-looking token of `len` bytes: 3.6 bits at 20 bytes rising to 4.2 at
/// 40 and beyond (a uniformly random base62 token measures about 4.0 at 20 bytes and 4.7 at 40).
fn entropy_floor(len: usize) -> f32 {
    #[expect(clippy::cast_precision_loss, reason = "small lengths")]
    let extra = (len.saturating_sub(20) as f32 / 20.0).min(1.0);
    3.6 + 0.6 * extra
}

/// The score of `token` as a secret, if it looks like one. `context` says a keyword (`token`,
/// `key`, `password`, …) precedes it.
pub fn token_score(token: &str, context: bool) -> Option<f32> {
    if PUBLIC_ID_PREFIXES.iter().any(|p| token.starts_with(p)) {
        return None;
    }
    let s = shape(token.trim_end_matches('='));
    if !(20..=256).contains(&s.len) || s.digits == 0 || s.upper + s.lower < 4 {
        return None;
    }
    if context {
        // After a keyword, hashes and lower-case tokens count too.
        let floor = if s.hex_only { 3.0 } else { 3.3 };
        return (s.entropy >= floor && s.wordiness <= 0.5).then_some(0.85);
    }
    if s.hex_only || s.upper < 2 || s.lower < 2 || s.digits < 2 {
        return None;
    }
    let floor = entropy_floor(s.len);
    if s.entropy < floor || s.transitions < 0.3 || s.wordiness > 0.3 {
        return None;
    }
    Some(0.6 + 0.3 * ((s.entropy - floor) / 0.8).clamp(0.0, 1.0))
}

fn placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    let first = value.as_bytes().first().copied().unwrap_or(b'x');
    matches!(first, b'<' | b'{' | b'$' | b'%' | b'[' | b'(')
        || [
            "xxxx",
            "****",
            "....",
            "example",
            "changeme",
            "your",
            "placeholder",
            "redacted",
            "os.environ",
            "env(",
            "null",
            "none",
            "secret",
            "password",
            "token",
        ]
        .iter()
        .any(|p| lower.contains(p))
        || value.bytes().all(|b| b == value.as_bytes()[0])
}

/// Whether a credential-assignment value looks real: not a placeholder, and not a plain word or
/// number (it mixes letters with digits or symbols, or cases).
fn credential_value(value: &str) -> bool {
    if placeholder(value) {
        return false;
    }
    let s = shape(value);
    let symbols = value.bytes().filter(|b| !b.is_ascii_alphanumeric()).count();
    let letters = s.upper + s.lower;
    letters > 0 && (s.digits > 0 || symbols > 0 || (s.upper > 0 && s.lower > 0)) && s.wordiness < 0.8
}

/// Finds secrets in `text`, calling `push(kind, start, end, score)` for each (overlaps are
/// resolved by the caller).
pub(crate) fn scan(text: &str, push: &mut impl FnMut(&'static str, usize, usize, f32)) {
    for m in PROVIDER.find_iter(text) {
        let score = if m.as_str().starts_with("-----BEGIN") { 0.99 } else { 0.95 };
        push("secret", m.start(), m.end(), score);
    }
    for c in ASSIGNMENT.captures_iter(text) {
        if let Some(value) = c.get(1)
            && credential_value(value.as_str())
        {
            push("secret", value.start(), value.end(), 0.85);
        }
    }
    for m in TOKEN_RUN.find_iter(text) {
        let before = &text[floor_char_boundary(text, m.start().saturating_sub(24))..m.start()];
        let context = CONTEXT.is_match(before);
        if let Some(score) = token_score(m.as_str(), context) {
            push("secret", m.start(), m.end(), score);
        }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of random tokens over `alphabet`.
    fn random_tokens(alphabet: &[u8], len: usize, count: usize, seed: u64) -> Vec<String> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        char::from(alphabet[usize::try_from(state % alphabet.len() as u64).unwrap()])
                    })
                    .collect()
            })
            .collect()
    }

    const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    fn rate(tokens: &[String], context: bool) -> f32 {
        let hits = tokens.iter().filter(|t| token_score(t, context).is_some()).count();
        hits as f32 / tokens.len() as f32
    }

    #[test]
    fn entropy_thresholds_catch_random_tokens() {
        // Measured: the share of uniformly random base62 tokens reported, by length.
        let mut report = Vec::new();
        for len in [20, 24, 32, 40, 64] {
            let tokens = random_tokens(BASE62, len, 2000, 0x9e37_79b9_7f4a_7c15 ^ len as u64);
            let r = rate(&tokens, false);
            report.push(format!("len {len}: {:.1}%", r * 100.0));
            let floor = if len >= 32 { 0.95 } else { 0.6 };
            assert!(r >= floor, "random base62 of {len}: only {r}");
        }
        println!("random base62 tokens reported without context: {}", report.join(", "));
        let hex = random_tokens(b"0123456789abcdef", 40, 500, 7);
        assert!(rate(&hex, false) == 0.0, "bare hashes are not secrets");
        assert!(rate(&hex, true) > 0.95, "hex after a keyword is");
    }

    #[test]
    fn entropy_thresholds_spare_hashes_ids_and_identifiers() {
        let ordinary = [
            "3f2b8c1e-9d4a-4e6b-8f7a-1c2d3e4f5a6b",
            "550e8400-e29b-41d4-a716-446655440000",
            "9fceb02d0ae598e95dc970b74767f19372d61af8",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "d41d8cd98f00b204e9800998ecf8427e",
            "payments-api-7d9c6b8f5d-x2kqp",
            "getUserAccountSettingsById",
            "AbstractSingletonProxyFactoryBean",
            "Base64EncodedString1234",
            "/usr/local/lib/python3/site-packages",
            "design-system-components",
            "1Z999AA10123456784ABCDEF",
            "SPRING2024SALE_WINTER2025SALE",
            "HttpClientV2RetryPolicy2024",
            "ISO8601DateTimeFormatter",
            "btn-primary--large",
            "aGVsbG8gd29ybGQgaG93IGFyZSB5b3U=",
        ];
        let flagged: Vec<&&str> = ordinary.iter().filter(|t| token_score(t, false).is_some()).collect();
        assert!(flagged.len() <= 1, "ordinary tokens flagged: {flagged:?}");
    }

    #[test]
    fn credential_assignments_skip_placeholders() {
        let found = |text: &str| {
            let mut out = Vec::new();
            scan(text, &mut |_, s, e, _| out.push(text[s..e].to_owned()));
            out
        };
        assert_eq!(found("DB_PASSWORD=hT7$kP2qWz9LmX4vRb8N"), vec!["hT7$kP2qWz9LmX4vRb8N"]);
        assert_eq!(found("password: \"s3cr3t!pass\""), vec!["s3cr3t!pass"]);
        assert!(found("api_key: <your-key-here>").is_empty());
        assert!(found("API_KEY=${OPENAI_API_KEY}").is_empty());
        assert!(found("api_key: os.environ/OPENAI_API_KEY").is_empty());
        assert!(found("tokenizer: sentencepiece").is_empty());
        assert!(found("password: changeme123").is_empty());
    }

    #[test]
    fn provider_formats_and_private_key_blocks() {
        let text = "k=-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY----- done";
        let mut spans = Vec::new();
        scan(text, &mut |_, s, e, score| spans.push((s, e, score)));
        assert!(spans.iter().any(|&(s, e, score)| text[s..e].ends_with("KEY-----") && s == 2 && score > 0.98));
        for key in ["sk_live_51HxQ2eLkz8aBcD3fGhJk", "glpat-abcdefghij0123456789", "ASIAIOSFODNN7EXAMPLE"] {
            let mut hits = 0;
            scan(key, &mut |_, _, _, _| hits += 1);
            assert!(hits > 0, "{key}");
        }
    }
}
