//! The near-miss guard: two texts whose vectors are close may still ask different questions.
//! all-MiniLM-L6-v2 scores "Where is my order 5521?" against "… 5527?" at 0.95 and "enable dark
//! mode" against "disable dark mode" at 0.96, so before a semantic hit counts, the features that
//! change an answer must agree:
//!
//! - **numbers** (digits, and number words up to twelve and the round ones), as sets;
//! - **identifiers** (words mixing letters and digits, or joined by `_ - . / : @`, and quoted or
//!   back-quoted spans), as sets;
//! - **named entities** (capitalised words inside a sentence and acronyms); a sentence's first
//!   word counts only when the other text names it too, so "Python decorators" and "decorators in
//!   Python" agree;
//! - **negation** (not, no, never, `n't`, without, …): the same parity;
//! - **antonyms** from a small list of opposite groups (enable / disable, increase / decrease, …):
//!   a text on one side and the other on the opposite side disagree;
//! - **direction**: "from X to Y", "X to Y", "X into Y" read as ordered pairs; a pair in one text
//!   reversed in the other disagrees.
//!
//! The guard is cheap (one pass over each text) and errs towards a miss: a false miss costs one
//! upstream call, a false hit answers the wrong question.

use std::collections::BTreeSet;

/// Why two texts are not the same question, or `None` when the guard finds no difference.
pub fn disagreement(a: &str, b: &str) -> Option<&'static str> {
    Features::of(a).disagreement(&Features::of(b))
}

/// The features of one text the guard compares. Computed once per text; entries keep theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    numbers: BTreeSet<String>,
    identifiers: BTreeSet<String>,
    entities: BTreeSet<String>,
    initials: BTreeSet<String>,
    negated: bool,
    /// For each antonym group, 1 (first side), 2 (second side) or 3 (both); absent groups omitted.
    antonyms: Vec<(u8, u8)>,
    directions: BTreeSet<(String, String)>,
}

const NEGATIONS: &[&str] = &[
    "not", "no", "never", "without", "none", "nobody", "nothing", "neither", "nor", "cannot", "cant", "dont", "doesnt",
    "isnt", "arent", "wasnt", "werent", "wont", "shouldnt", "couldnt", "wouldnt", "didnt", "hasnt", "havent", "hadnt",
    "mustnt", "nowhere",
];

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("fifty", "50"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("million", "1000000"),
    ("billion", "1000000000"),
    ("first", "#1"),
    ("second", "#2"),
    ("third", "#3"),
    ("half", "0.5"),
    ("double", "x2"),
    ("twice", "x2"),
    ("triple", "x3"),
];

/// Opposite groups: each side lists words (stems matched at a word's start) and phrases.
const ANTONYMS: &[(&[&str], &[&str])] = &[
    (
        &["enabl", "activat", "turn on", "switch on", "turning on", "switching on"],
        &["disabl", "deactivat", "turn off", "switch off", "turning off", "switching off"],
    ),
    (
        &["increas", "rais", "rise", "grow", "more", "higher", "up"],
        &["decreas", "lower", "reduc", "drop", "shrink", "less", "fewer", "down"],
    ),
    (&["add", "insert", "creat"], &["remov", "delet", "drop"]),
    (&["before", "earlier", "prior"], &["after", "later"]),
    (
        &["max", "maxim", "largest", "biggest", "most", "highest", "longest"],
        &["min", "minim", "smallest", "least", "lowest", "shortest"],
    ),
    (
        &["big", "bigger", "large", "larger", "greater", "heavier"],
        &["small", "smaller", "little", "tiny", "lesser", "lighter"],
    ),
    (&["start", "begin"], &["stop", "end", "finish"]),
    (&["open"], &["clos"]),
    (&["buy", "purchas", "bought"], &["sell", "sold"]),
    (&["upload"], &["download"]),
    (&["import"], &["export"]),
    (
        &["encrypt", "encod", "compress", "serializ", "serialis"],
        &["decrypt", "decod", "decompress", "deserializ", "deserialis"],
    ),
    (
        &["allow", "permit", "accept", "grant", "whitelist", "allowlist"],
        &["deny", "forbid", "reject", "revok", "block", "blacklist", "denylist"],
    ),
    (&["lock"], &["unlock"]),
    (&["subscrib"], &["unsubscrib"]),
    (&["install"], &["uninstall"]),
    (&["login", "log in", "sign in", "signin"], &["logout", "log out", "sign out", "signout"]),
    (&["connect"], &["disconnect"]),
    (&["public"], &["privat"]),
    (&["input", "incoming", "inbound", "ingress"], &["output", "outgoing", "outbound", "egress"]),
    (&["true"], &["false"]),
    (&["success", "pass"], &["fail"]),
    (&["cheap", "fast", "quick"], &["expensive", "slow"]),
    (&["hot", "warm"], &["cold", "cool"]),
    (&["north"], &["south"]),
    (&["east"], &["west"]),
    (&["left"], &["right"]),
    (&["ascend"], &["descend"]),
    (&["push"], &["pull"]),
    (&["send", "sent"], &["receiv"]),
    (&["include"], &["exclud"]),
    (&["merge", "join"], &["split"]),
    (&["mount"], &["unmount"]),
    (&["show", "display"], &["hide", "hidden"]),
    (&["wide", "widen"], &["narrow"]),
    (&["long"], &["short"]),
    (&["strong"], &["weak"]),
    (&["same"], &["different"]),
    (&["valid"], &["invalid"]),
    (&["sync"], &["async"]),
    (&["online"], &["offline"]),
    (&["pros", "advantag", "benefit"], &["cons", "disadvantag", "drawback"]),
];

/// Words that never name an entity though capitalised (pronouns, titles of politeness).
const NOT_ENTITIES: &[&str] = &["i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "please", "thanks", "hi", "hello"];

/// Words skipped as ends of a direction pair.
const STOP: &[&str] = &[
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that", "it", "me", "you", "us",
    "them", "how", "what", "want", "need", "going", "have", "has", "had", "able", "is", "are", "be", "do", "i", "we",
    "they", "way", "ways", "like", "order", "used", "back",
];

impl Features {
    /// The features of `text`.
    pub fn of(text: &str) -> Self {
        let mut features = Self::default();
        let words = words(text);
        let lower: Vec<String> = words.iter().map(|w| w.text.to_lowercase()).collect();
        let joined = format!(" {} ", lower.join(" "));
        for (word, low) in words.iter().zip(&lower) {
            let plain: String = low.chars().filter(|c| *c != '\'' && *c != '\u{2019}').collect();
            if word.text.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | ','))
                && word.text.chars().any(|c| c.is_ascii_digit())
            {
                features.numbers.insert(word.text.replace(',', "").trim_end_matches('.').to_owned());
                continue;
            }
            if let Some((_, digits)) = NUMBER_WORDS.iter().find(|(w, _)| *w == plain) {
                features.numbers.insert((*digits).to_owned());
            }
            if NEGATIONS.contains(&plain.as_str()) || (plain.ends_with("nt") && low.ends_with("n't")) {
                features.negated = !features.negated;
            }
            if is_identifier(word.text) {
                features.identifiers.insert(low.trim_end_matches("'s").to_owned());
            } else if is_entity(word.text) && !NOT_ENTITIES.contains(&low.as_str()) {
                let name = low.trim_end_matches("'s").to_owned();
                if word.initial && !word.text.chars().all(|c| c.is_uppercase() || !c.is_alphabetic()) {
                    features.initials.insert(name);
                } else {
                    features.entities.insert(name);
                }
            }
        }
        for quoted in quoted_spans(text) {
            features.identifiers.insert(quoted.to_lowercase());
        }
        for (group, (first, second)) in (0u8..).zip(ANTONYMS) {
            let side = u8::from(first.iter().any(|w| mentions(&joined, w)))
                | (u8::from(second.iter().any(|w| mentions(&joined, w))) << 1);
            if side != 0 {
                features.antonyms.push((group, side));
            }
        }
        features.directions = directions(&lower);
        features
    }

    /// Why `self` and `other` are different questions, if they are.
    pub fn disagreement(&self, other: &Self) -> Option<&'static str> {
        if self.numbers != other.numbers {
            return Some("numbers");
        }
        if self.identifiers != other.identifiers {
            return Some("identifiers");
        }
        let named = |a: &Self, b: &Self| a.entities.iter().all(|e| b.entities.contains(e) || b.initials.contains(e));
        if !named(self, other) || !named(other, self) {
            return Some("named entities");
        }
        if self.negated != other.negated {
            return Some("negation");
        }
        for (group, side) in &self.antonyms {
            if let Some((_, theirs)) = other.antonyms.iter().find(|(g, _)| g == group)
                && theirs != side
            {
                return Some("antonyms");
            }
        }
        if self.directions.iter().any(|(x, y)| other.directions.contains(&(y.clone(), x.clone())) && x != y) {
            return Some("direction");
        }
        let ends = |d: &BTreeSet<(String, String)>| d.iter().map(|(x, _)| x.clone()).collect::<BTreeSet<_>>();
        if !self.directions.is_empty()
            && !other.directions.is_empty()
            && ends(&self.directions) == ends(&other.directions)
            && self.directions != other.directions
        {
            return Some("direction");
        }
        None
    }
}

/// Whether the space-joined lowercase text mentions `stem` at a word's start (or the phrase).
fn mentions(joined: &str, stem: &str) -> bool {
    let mut from = 0;
    while let Some(at) = joined.get(from..).and_then(|rest| rest.find(stem)) {
        let start = from + at;
        if start > 0 && joined.as_bytes().get(start - 1) == Some(&b' ') {
            // Short stems must be whole words ("up", "end", "add" are not "update", "endpoint", "address").
            let after = joined.as_bytes().get(start + stem.len()).copied().unwrap_or(b' ');
            let whole = !after.is_ascii_alphanumeric();
            if stem.len() > 4 || whole || matches!(stem, "rais" | "clos" | "lock" | "fail" | "send") {
                return true;
            }
        }
        from = start + stem.len().max(1);
    }
    false
}

struct Word<'a> {
    text: &'a str,
    /// The first word of a sentence.
    initial: bool,
}

fn joiner(c: char) -> bool {
    matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '\'' | '\u{2019}' | '#' | '+' | ',')
}

/// The words of `text`: runs of letters, digits and the joiners inside identifiers
/// (`_ - . / : @ ' # + ,`), with leading and trailing joiners dropped.
fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut initial = true;
    let mut start: Option<usize> = None;
    for (at, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        if c.is_alphanumeric() || (start.is_some() && joiner(c)) {
            if start.is_none() {
                start = Some(at);
            }
            continue;
        }
        if let Some(s) = start.take() {
            let word = text.get(s..at).unwrap_or_default();
            let trimmed = word.trim_end_matches(joiner).trim_start_matches(joiner);
            if !trimmed.is_empty() {
                out.push(Word { text: trimmed, initial });
                initial = false;
            }
            if word.ends_with(['.', ':']) && !trimmed.ends_with(char::is_numeric) {
                initial = true;
            }
        }
        if matches!(c, '?' | '!' | '\n' | ';' | '.') {
            initial = true;
        }
    }
    out
}

fn is_identifier(word: &str) -> bool {
    let letters = word.chars().any(char::is_alphabetic);
    let digits = word.chars().any(|c| c.is_ascii_digit());
    let inner_joiner = word
        .trim_end_matches("'s")
        .char_indices()
        .any(|(i, c)| i > 0 && matches!(c, '_' | '.' | '/' | ':' | '@' | '#') && i + 1 < word.len());
    let camel = word.chars().skip(1).any(char::is_uppercase) && word.chars().any(char::is_lowercase);
    (letters && digits) || inner_joiner || camel
}

fn is_entity(word: &str) -> bool {
    let mut chars = word.chars();
    let first_upper = chars.next().is_some_and(char::is_uppercase);
    let acronym = word.chars().filter(|c| c.is_alphabetic()).count() >= 2 && word.chars().all(|c| !c.is_lowercase());
    first_upper || acronym
}

/// The spans between matching quotes or back-quotes.
fn quoted_spans(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for quote in ['"', '`', '\u{201c}'] {
        let close = if quote == '\u{201c}' { '\u{201d}' } else { quote };
        let mut rest = text;
        while let Some(open) = rest.find(quote) {
            let after = rest.get(open + quote.len_utf8()..).unwrap_or_default();
            let Some(end) = after.find(close) else { break };
            let span = after.get(..end).unwrap_or_default().trim();
            if !span.is_empty() {
                out.push(span);
            }
            rest = after.get(end + close.len_utf8()..).unwrap_or_default();
        }
    }
    out
}

/// Ordered pairs read from "from X to Y", "X to Y" and "X into Y" (stop words skipped).
fn directions(lower: &[String]) -> BTreeSet<(String, String)> {
    let content = |w: &String| !STOP.contains(&w.as_str()) && !w.is_empty();
    let mut out = BTreeSet::new();
    for (i, word) in lower.iter().enumerate() {
        if word != "to" && word != "into" && word != "vs" && word != "versus" {
            continue;
        }
        let next = lower.get(i + 1).filter(|w| content(w));
        let previous =
            lower.get(..i).and_then(|before| before.iter().rev().take(3).position(|w| w == "from").map(|p| i - 1 - p));
        let source = match previous {
            Some(from) => lower.get(from + 1..i).and_then(|s| s.iter().find(|w| content(w))),
            None => i.checked_sub(1).and_then(|p| lower.get(p)).filter(|w| content(w)),
        };
        if let (Some(x), Some(y)) = (source, next) {
            out.insert((x.clone(), y.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_brief_near_misses_disagree() {
        assert_eq!(disagreement("Where is my order 5521?", "Where is my order 5527?"), Some("numbers"));
        assert_eq!(
            disagreement("Is the rate limit applied per key?", "Is the rate limit not applied per key?"),
            Some("negation")
        );
        assert_eq!(
            disagreement("Translate from English to German", "Translate from German to English"),
            Some("direction")
        );
        assert_eq!(disagreement("enable dark mode", "disable dark mode"), Some("antonyms"));
        assert_eq!(disagreement("How do I turn on dark mode?", "How do I turn off dark mode?"), Some("antonyms"));
        assert_eq!(disagreement("Convert celsius to fahrenheit", "Convert fahrenheit to celsius"), Some("direction"));
        assert_eq!(
            disagreement("What is the capital of France?", "What is the capital of Germany?"),
            Some("named entities")
        );
        assert_eq!(
            disagreement("Explain `user_id` in the schema", "Explain `account_id` in the schema"),
            Some("identifiers")
        );
    }

    #[test]
    fn paraphrases_agree() {
        for (a, b) in [
            ("How do I enable dark mode?", "How can I turn on dark mode?"),
            ("What is the refund policy for orders?", "What's your refund policy on orders?"),
            ("Python decorators explained", "What are decorators in Python?"),
            ("Where is my order 5521?", "Where's order 5521?"),
            ("Isn't the limit per key?", "Is the limit not per key?"),
            ("Translate from English to German: hello", "Please translate hello from English to German."),
            ("I want to reset my password", "I need to reset my password"),
            ("How many days are in a leap year?", "How many days does a leap year have?"),
        ] {
            assert_eq!(disagreement(a, b), None, "{a} / {b}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read_without_panicking_and_agrees_with_itself(text in "\\PC{0,120}") {
            proptest::prop_assert_eq!(disagreement(&text, &text), None);
        }
    }
}
