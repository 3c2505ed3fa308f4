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

use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde::Deserialize;

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

/// Weighted patterns, matched on the normalised text (lower case, de-obfuscated).
const PATTERNS: &[(&str, f32, &str)] = &[
    (
        "override_instructions",
        3.5,
        r"\b(?:ignore|disregard|forget|skip|bypass|override|drop|cancel|set aside|throw away|discard|do not follow|don't follow|stop following)\b[^.\n]{0,40}?\b(?:all|any|previous|prior|above|earlier|preceding|original|initial|system|developer|former|existing|old|current)\b[^.\n]{0,25}?\b(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|constraints|programming|polic(?:y|ies)|guidance|orders)\b",
    ),
    (
        "ignore_your_rules",
        3.0,
        r"\b(?:ignore|disregard|forget|bypass|break|override|abandon|stop following|do not follow|don't follow)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:your|its)\s+(?:own\s+)?(?:instructions|rules|guidelines|programming|training|constraints|restrictions|safety|content polic|principles|ethic|filters?|directives)",
    ),
    (
        "reveal_prompt",
        2.5,
        r"\b(?:reveal|show|print|repeat|output|display|dump|leak|tell me|give me|share|echo|copy|translate|spell out|write out|quote|summari[sz]e|list|what (?:is|are|were))\b[^.\n]{0,40}?(?:system prompt|system message|developer message|initial prompt|initial instructions|original prompt|original instructions|hidden (?:prompt|instructions|rules|text)|secret (?:instructions|rules|prompt)|confidential (?:instructions|part)|your (?:instructions|rules|prompt|configuration))",
    ),
    (
        "text_above",
        2.0,
        r"\b(?:repeat|print|output|copy|echo|show)\b[^.\n]{0,30}?\b(?:text|everything|all|words?|content)\b[^.\n]{0,20}?\b(?:above|before (?:this|my))",
    ),
    (
        "dan_persona",
        3.5,
        r"\bdo anything now\b|\b(?:you are|you're|act as|pretend to be|become|respond as|stay in character as)\s+(?:now\s+)?(?:going to (?:act as|be|pretend to be)\s+)?(?:a\s+|an\s+)?(?:dan|stan|dude|aim|evilbot|betterdan)\b",
    ),
    (
        "unrestricted_persona",
        2.5,
        r"\b(?:you are|you're|act as|pretend to be|become|respond as|answer as|roleplay as|role-play as|play the role of)\b[^.\n]{0,30}?\b(?:jailbroken|unfiltered|uncensored|unrestricted|without (?:any )?(?:rules|restrictions|limits|filters|ethics)|no (?:rules|restrictions|limits|filters|ethics|morals|content policy)|evil|amoral)",
    ),
    (
        "special_mode",
        2.5,
        r"\b(?:jailbreak|jailbroken|god|dan|unrestricted|unfiltered|uncensored|opposite|sudo) mode\b|\bdeveloper mode (?:enabled|activated)\b|\bstay in developer mode\b",
    ),
    ("developer_mode", 0.8, r"\bdeveloper mode\b"),
    (
        "remove_restrictions",
        2.0,
        r"\b(?:no|without(?: any)?|free(?:d)? from|not bound by|no longer bound by|disable[sd]?|turn(?:ed)? off|suspend(?:ed)?|bypass|remove[sd]?|lift(?:ed)?)\s+(?:any\s+|all\s+|your\s+|the\s+|of\s+)*(?:restrictions|limitations|filters?|filtering|content polic(?:y|ies)|safety (?:rules|guidelines|filters|protocols?|checks|policies|settings)|ethical (?:guidelines|constraints)|ethics|guardrails|moderation|censorship)\b",
    ),
    (
        "never_refuse",
        1.5,
        r"\b(?:never|don't|do not|must not|without|no longer|won't|will not)\s+(?:ever\s+)?(?:refuse|decline|refusing)\b|\bno (?:refusals|disclaimers)\b",
    ),
    (
        "authority_claim",
        1.5,
        r"\b(?:i am|i'm|as)\s+(?:your|the|an?)\s+(?:developer|creator|administrator|admin|owner|openai employee|anthropic employee)\b[^.\n]{0,60}?\b(?:authori[sz]e|order|permit|command|grant)|\bpermission to (?:break|ignore|disregard|bypass)\b|\b(?:restrictions|guidelines|policies|rules|filters) (?:are|is|have been) (?:suspended|disabled|lifted|removed|turned off)\b",
    ),
    (
        "delimiter_injection",
        2.5,
        r#"<\|(?:im_start|im_end|system|endoftext|user|assistant)\|>|\[/?inst\]|<</?sys>>|</?system>|###\s*(?:system|instruction)|\bend of (?:user input|prompt|instructions)\b|\bnew (?:system )?(?:prompt|instructions|directive|rule)s?\s*:|\[system\]|\(#override\)|"role"\s*:\s*"system"|\b(?:admin|system) override\b|\bsystem note to\b"#,
    ),
    (
        "addressed_to_ai",
        2.0,
        r"\b(?:note|instruction|instructions|message|hidden instruction)s?\s+(?:to|for)\s+(?:the\s+|any\s+)?(?:ai|llm|assistant|model|language model|chatbot|ai agent|ai assistant)s?\b|\bif you are an? (?:ai|llm|language model|assistant|chatbot|ai model)\b|\b(?:dear|attention|hey)\s+(?:ai|llm|language model|assistant|chatbot)\b|\b(?:ai|llm|assistant|language model|ai model|ai agent|ai assistant)s?\s*(?:reading|processing|summari[sz]ing)\s+this\b|\b(?:ai|assistant|llm|ai reviewer|ai screeners?|ai model)\s*[:,]\s*(?:please\s+)?(?:ignore|disregard|forget|stop|do not)\b",
    ),
    (
        "exfiltration",
        2.0,
        r"!\[[^\]]*\]\(https?://[^)\s]*[?&][a-z]+=|\b(?:send|forward|post|upload|exfiltrate|wire)\b[^.\n]{0,40}?\b(?:chat history|conversation|emails?|inbox|contacts|password|messages|calendar)\b[^.\n]{0,20}?\bto\s+(?:https?://|\S+@)",
    ),
    (
        "encoded_payload",
        2.0,
        r"\b(?:decode|reverse|read|unscramble)\b[^.\n]{0,50}?\b(?:and|then)\s+(?:follow|obey|execute|do what it says|do it|run it|act on)",
    ),
    (
        "multilingual_override",
        3.0,
        r"\b(?:ignorier\w*|vergiss)\s+(?:alle\s+|deine\s+|die\s+)?(?:vorherigen\s+|bisherigen\s+|obigen\s+)?(?:anweisungen|regeln|instruktionen)|\b(?:ignore|oublie)\w*\s+(?:toutes\s+)?(?:les\s+|tes\s+)?(?:instructions|consignes|règles)\s+(?:précédentes|antérieures)|\boublie\s+(?:tes|toutes les)\s+(?:règles|instructions)|\b(?:ignora|olvida)\w*\s+(?:todas\s+)?(?:las\s+|tus\s+)?(?:instrucciones|reglas)|\bignora\s+(?:tutte\s+)?(?:le\s+)?(?:istruzioni|regole)|\bignore\s+(?:todas\s+)?(?:as\s+)?(?:instruções|regras)|\bnegeer\s+(?:alle\s+)?(?:eerdere\s+|vorige\s+)?(?:instructies|regels)",
    ),
    (
        "stay_in_character",
        1.0,
        r"\bstay in character\b|\bdon't break character\b|\bdo not break (?:character|the fiction)\b",
    ),
];

/// Largest total pattern weight added to the model's logit.
const MAX_PATTERN_WEIGHT: f32 = 6.0;

struct Patterns {
    set: RegexSet,
    each: Vec<Regex>,
}

static COMPILED: LazyLock<Patterns> = LazyLock::new(|| {
    let sources: Vec<&str> = PATTERNS.iter().map(|(_, _, p)| *p).collect();
    let set = match RegexSet::new(&sources) {
        Ok(set) => set,
        Err(error) => panic!("invalid injection pattern: {error}"),
    };
    Patterns { set, each: sources.iter().map(|p| crate::detect::re(p)).collect() }
});

// ----------------------------------------------------------------------------------------------
// Normalisation
// ----------------------------------------------------------------------------------------------

/// Text normalised for matching, with the original byte offset of every normalised byte.
#[derive(Debug)]
pub struct Normalized {
    /// Lower case, de-obfuscated.
    pub text: String,
    /// `orig[i]` is the original byte offset of normalised byte `i`; one extra entry holds the
    /// original length.
    orig: Vec<u32>,
}

impl Normalized {
    /// The original byte range of normalised range `start..end`.
    pub fn original_range(&self, start: usize, end: usize, original: &str) -> (usize, usize) {
        let at = |i: usize| self.orig.get(i).map_or(original.len(), |&o| o as usize);
        let s = at(start);
        // The end is one past the last byte's character in the original.
        let e = if end == 0 {
            s
        } else {
            let last = at(end - 1);
            original[last..].chars().next().map_or(original.len(), |c| last + c.len_utf8())
        };
        (s.min(original.len()), e.clamp(s, original.len()))
    }
}

fn homoglyph(c: char) -> char {
    match c {
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'х' => 'x',
        'і' => 'i',
        'у' => 'y',
        'ѕ' => 's',
        '‘' | '’' | '`' | '´' => '\'',
        _ => c,
    }
}

fn leet(c: char) -> char {
    match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '@' => 'a',
        '$' => 's',
        _ => c,
    }
}

const SPACING: &[char] = &[' ', '.', '-', '_', '*', '/'];

/// Normalises `text`: lower case, no zero-width characters, homoglyphs and leetspeak inside words
/// mapped to letters, letter-spaced words and hyphenated words joined.
pub fn normalize(text: &str) -> Normalized {
    let original_len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let offset = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
    // 1. Lower case, drop invisible characters, map homoglyphs.
    let mut chars: Vec<(char, u32)> = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if matches!(c, '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}' | '\u{00ad}') {
            continue;
        }
        if c.is_ascii() {
            chars.push((c.to_ascii_lowercase(), offset(i)));
        } else {
            for lower in c.to_lowercase() {
                chars.push((homoglyph(lower), offset(i)));
            }
        }
    }
    // 2. Leetspeak: inside a word that has letters, map digits and @/$ to letters.
    let word = |c: char| c.is_alphanumeric() || c == '@' || c == '$';
    let mut i = 0;
    while i < chars.len() {
        if !word(chars[i].0) {
            i += 1;
            continue;
        }
        let mut j = i;
        let (mut letters, mut leets) = (0, 0);
        while j < chars.len() && word(chars[j].0) {
            if chars[j].0.is_alphabetic() {
                letters += 1;
            } else if leet(chars[j].0) != chars[j].0 {
                leets += 1;
            }
            j += 1;
        }
        if letters >= 2 && leets > 0 && j - i >= 3 {
            for entry in &mut chars[i..j] {
                entry.0 = leet(entry.0);
            }
        }
        i = j;
    }
    // 3. Letter-spacing ("i g n o r e", "I.g.n.o.r.e") and hyphens inside words ("ign-ore").
    let alnum = |i: usize, chars: &[(char, u32)]| chars.get(i).is_some_and(|(c, _)| c.is_alphanumeric());
    let alpha = |i: usize, chars: &[(char, u32)]| chars.get(i).is_some_and(|(c, _)| c.is_alphabetic());
    let mut joined: Vec<(char, u32)> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].0;
        // A single letter, then (separator, single letter) at least twice.
        if c.is_alphabetic()
            && (i == 0 || !alnum(i - 1, &chars))
            && let Some(&(sep, _)) = chars.get(i + 1)
            && SPACING.contains(&sep)
        {
            let mut j = i;
            let mut letters = 1;
            while chars.get(j + 1).is_some_and(|(s, _)| *s == sep) && alpha(j + 2, &chars) && !alnum(j + 3, &chars) {
                j += 2;
                letters += 1;
            }
            if letters >= 3 {
                for k in (i..=j).step_by(2) {
                    joined.push(chars[k]);
                }
                i = j + 1;
                continue;
            }
        }
        if c == '-' && i > 0 && alpha(i - 1, &chars) && alpha(i + 1, &chars) {
            i += 1;
            continue;
        }
        joined.push(chars[i]);
        i += 1;
    }
    let mut out = String::with_capacity(text.len());
    let mut orig = Vec::with_capacity(text.len() + 1);
    for (c, at) in joined {
        out.push(c);
        for _ in 0..c.len_utf8() {
            orig.push(at);
        }
    }
    orig.push(original_len);
    Normalized { text: out, orig }
}

// ----------------------------------------------------------------------------------------------
// Features
// ----------------------------------------------------------------------------------------------

/// Hashed feature space: 2^18 weights (1 MiB).
const DIM_BITS: u32 = 18;
const DIM: usize = 1 << DIM_BITS;
const MASK: u64 = (1 << DIM_BITS) - 1;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = seed;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn index(hash: u64) -> usize {
    // Fold the high bits in: FNV's low bits alone are weak.
    usize::try_from((hash ^ (hash >> 29) ^ (hash >> 47)) & MASK).unwrap_or(0)
}

/// Longest token that gets character trigrams.
const MAX_TOKEN: usize = 40;

/// Calls `emit(feature index)` for every feature of `text`: word unigrams, word bigrams, and
/// character trigrams of each word with boundary markers.
fn features(text: &str, mut emit: impl FnMut(usize)) {
    let mut previous: Option<u64> = None;
    for token in text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()) {
        let bytes = token.as_bytes();
        let unigram = fnv(FNV_OFFSET ^ 0x57, bytes);
        emit(index(unigram));
        if let Some(previous) = previous {
            emit(index(fnv(previous ^ 0x42, bytes)));
        }
        previous = Some(unigram);
        if bytes.len() >= 3 && bytes.len() <= MAX_TOKEN {
            let mut padded = [0u8; MAX_TOKEN + 2];
            padded[0] = b'<';
            padded[1..=bytes.len()].copy_from_slice(bytes);
            padded[bytes.len() + 1] = b'>';
            for gram in padded[..bytes.len() + 2].windows(3) {
                emit(index(fnv(FNV_OFFSET ^ 0x33, gram)));
            }
        }
    }
}

/// Sentence-like segments of `text` (byte ranges): split after `.`, `!`, `?` followed by
/// whitespace and at newlines; long segments are cut at whitespace every ~300 bytes.
fn segments(text: &str) -> Vec<(usize, usize)> {
    const MAX_SEGMENT: usize = 300;
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let end_of_sentence =
            matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace());
        let too_long = i - start >= MAX_SEGMENT && b.is_ascii_whitespace();
        if b == b'\n' || end_of_sentence || too_long {
            if text[start..=i].trim().len() > 1 {
                out.push((start, i + 1));
            }
            start = i + 1;
        }
        i += 1;
    }
    if start < bytes.len() && text[start..].trim().len() > 1 {
        out.push((start, bytes.len()));
    }
    out
}

// ----------------------------------------------------------------------------------------------
// Model
// ----------------------------------------------------------------------------------------------

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
pub const TRAIN_JSONL: &str = include_str!("../data/injection_train.jsonl");
/// Held-out test data, disjoint from the training data.
pub const TEST_JSONL: &str = include_str!("../data/injection_test.jsonl");

/// Parses JSON lines of [`Example`]s (malformed lines are skipped; a test checks there are none).
pub fn parse_examples(jsonl: &str) -> Vec<Example> {
    jsonl.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Logistic regression over hashed features, `x = counts / sqrt(total count)`.
#[derive(Debug)]
pub struct Model {
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

/// Sparse feature vector of one normalised text: (index, value) sorted by index.
fn vectorize(text: &str) -> Vec<(usize, f32)> {
    let mut raw = Vec::with_capacity(text.len() * 2);
    features(text, |i| raw.push(i));
    raw.sort_unstable();
    #[expect(clippy::cast_precision_loss, reason = "feature counts are small")]
    let norm = (raw.len().max(1) as f32).sqrt();
    let mut out: Vec<(usize, f32)> = Vec::with_capacity(raw.len());
    for i in raw {
        match out.last_mut() {
            Some((last, value)) if *last == i => *value += 1.0,
            _ => out.push((i, 1.0)),
        }
    }
    for (_, value) in &mut out {
        *value /= norm;
    }
    out
}

fn sigmoid(z: f32) -> f32 {
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
            for &k in &order {
                let (x, y) = &data[k];
                let z = bias + x.iter().map(|&(i, v)| weights[i] * v).sum::<f32>();
                let gradient = sigmoid(z) - y;
                for &(i, v) in x {
                    let g = gradient * v + config.l2 * weights[i];
                    squares[i] += g * g;
                    weights[i] -= config.learning_rate * g / squares[i].sqrt();
                }
                bias_square += gradient * gradient;
                bias -= config.learning_rate * gradient / bias_square.sqrt();
            }
        }
        Self { weights, bias: bias - config.prior_shift }
    }

    /// The logit of a whole normalised text.
    pub fn logit(&self, normalized: &str) -> f32 {
        let x = vectorize(normalized);
        self.bias + x.iter().map(|&(i, v)| self.weights[i] * v).sum::<f32>()
    }

    /// The best window of up to three consecutive segments of `normalized`: (logit, start, end).
    fn best_window(&self, normalized: &str) -> (f32, usize, usize) {
        let parts = segments(normalized);
        // (sum of weights, feature count) per segment; windows add them up.
        let sums: Vec<(f32, u32)> = parts
            .iter()
            .map(|&(s, e)| {
                let (mut dot, mut n) = (0.0f32, 0u32);
                features(&normalized[s..e], |i| {
                    dot += self.weights[i];
                    n += 1;
                });
                (dot, n)
            })
            .collect();
        let mut best = (f32::NEG_INFINITY, 0, normalized.len());
        for first in 0..parts.len() {
            let (mut dot, mut n) = (0.0f32, 0u32);
            for last in first..(first + 3).min(parts.len()) {
                dot += sums[last].0;
                n += sums[last].1;
                if n == 0 {
                    continue;
                }
                #[expect(clippy::cast_precision_loss, reason = "feature counts are small")]
                let z = self.bias + dot / (n as f32).sqrt();
                if z > best.0 {
                    best = (z, parts[first].0, parts[last].1);
                }
            }
        }
        if best.0 == f32::NEG_INFINITY {
            best.0 = self.bias;
        }
        best
    }
}

/// The model trained on the shipped data, built on first use (or by [`warm_up`]).
static MODEL: LazyLock<Model> = LazyLock::new(|| Model::train(&parse_examples(TRAIN_JSONL), TrainConfig::default()));

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

/// Classifies `text` with `model` in `mode`.
pub fn classify_with(model: &Model, text: &str, mode: Mode) -> Verdict {
    let normalized = normalize(text);
    let (model_logit, window_start, window_end) =
        if mode == Mode::Patterns { (-2.0, 0, normalized.text.len()) } else { model.best_window(&normalized.text) };
    let (mut pattern_weight, mut strongest) = (0.0f32, None::<(f32, usize)>);
    if mode != Mode::Model {
        let compiled = &*COMPILED;
        for index in compiled.set.matches(&normalized.text).iter() {
            let weight = PATTERNS[index].1;
            pattern_weight += weight;
            if strongest.is_none_or(|(w, _)| weight > w) {
                strongest = Some((weight, index));
            }
        }
        pattern_weight = pattern_weight.min(MAX_PATTERN_WEIGHT);
    }
    let (start, end) = match strongest.and_then(|(_, i)| COMPILED.each[i].find(&normalized.text)) {
        Some(m) => normalized.original_range(m.start(), m.end(), text),
        None => normalized.original_range(window_start, window_end, text),
    };
    Verdict { score: sigmoid(model_logit + pattern_weight), start, end, model_logit, pattern_weight }
}

/// Names of the patterns that match `text` (for explanations and tests; never logged with text).
pub fn matched_patterns(text: &str) -> Vec<&'static str> {
    let normalized = normalize(text);
    COMPILED.set.matches(&normalized.text).iter().map(|i| PATTERNS[i].0).collect()
}

// ----------------------------------------------------------------------------------------------
// Evaluation
// ----------------------------------------------------------------------------------------------

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
        patterns: PATTERNS.len(),
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

#[cfg(test)]
mod tests;
