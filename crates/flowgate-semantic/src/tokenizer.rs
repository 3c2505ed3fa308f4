//! The BERT WordPiece tokenizer of sentence-transformers models (`tokenizer.json` with a
//! `BertNormalizer`, a `BertPreTokenizer` and a `WordPiece` model), written here so the embedder
//! needs no C or C++ build: clean the text, pad CJK characters, strip accents and lowercase, split
//! on whitespace and punctuation, then greedy longest-match word pieces (`##` continuations).

use std::collections::HashMap;

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::Error;

/// A loaded WordPiece vocabulary and its normaliser settings.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
    lowercase: bool,
    strip_accents: bool,
    max_chars_per_word: usize,
}

#[derive(Deserialize)]
struct File {
    normalizer: Option<Normalizer>,
    model: Model,
}

#[derive(Deserialize)]
struct Normalizer {
    #[serde(default)]
    lowercase: Option<bool>,
    #[serde(default)]
    strip_accents: Option<bool>,
}

#[derive(Deserialize)]
struct Model {
    #[serde(rename = "type")]
    kind: String,
    vocab: HashMap<String, u32>,
    unk_token: String,
    #[serde(default)]
    max_input_chars_per_word: Option<usize>,
}

impl Tokenizer {
    /// Reads a `tokenizer.json` document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| Error::Model(format!("tokenizer.json: {e}")))?;
        if file.model.kind != "WordPiece" {
            return Err(Error::Model(format!("tokenizer.json: a {} model, not WordPiece", file.model.kind)));
        }
        let id = |token: &str| {
            file.model
                .vocab
                .get(token)
                .copied()
                .ok_or_else(|| Error::Model(format!("tokenizer.json: no {token} token")))
        };
        let lowercase = file.normalizer.as_ref().and_then(|n| n.lowercase).unwrap_or(true);
        Ok(Self {
            unk: id(&file.model.unk_token)?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            // BERT strips accents when it lowercases, unless told otherwise.
            strip_accents: file.normalizer.as_ref().and_then(|n| n.strip_accents).unwrap_or(lowercase),
            lowercase,
            max_chars_per_word: file.model.max_input_chars_per_word.unwrap_or(100),
            vocab: file.model.vocab,
        })
    }

    /// The token ids of `text` between `[CLS]` and `[SEP]`, at most `max_len` of them in all
    /// (the rest of a longer text is cut, as sentence-transformers does).
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let budget = max_len.saturating_sub(2);
        let mut ids = Vec::with_capacity(budget.min(text.len() / 3 + 2) + 2);
        ids.push(self.cls);
        let normalised = self.normalise(text);
        'words: for word in pre_tokenize(&normalised) {
            for id in self.word_pieces(word) {
                if ids.len() > budget {
                    break 'words;
                }
                ids.push(id);
            }
        }
        ids.push(self.sep);
        ids
    }

    fn normalise(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
                continue;
            }
            if c.is_whitespace() {
                out.push(' ');
            } else if is_cjk(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        if self.strip_accents {
            out = out.nfd().filter(|c| !is_combining_mark(*c)).collect();
        }
        if self.lowercase {
            out = out.to_lowercase();
        }
        out
    }

    fn word_pieces(&self, word: &str) -> Vec<u32> {
        if word.chars().count() > self.max_chars_per_word {
            return vec![self.unk];
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        let mut candidate = String::with_capacity(word.len() + 2);
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str("##");
                }
                candidate.push_str(word.get(start..end).unwrap_or_default());
                if let Some(id) = self.vocab.get(&candidate) {
                    found = Some(*id);
                    break;
                }
                end = previous_boundary(word, end);
            }
            match found {
                Some(id) => pieces.push(id),
                None => return vec![self.unk],
            }
            start = end;
        }
        pieces
    }
}

/// The char boundary before `end` in `word`.
fn previous_boundary(word: &str, end: usize) -> usize {
    let mut at = end.saturating_sub(1);
    while at > 0 && !word.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Words split on whitespace, each punctuation character a word of its own.
fn pre_tokenize(text: &str) -> impl Iterator<Item = &str> {
    text.split(' ').filter(|w| !w.is_empty()).flat_map(|word| {
        let mut parts = Vec::new();
        let mut start = 0;
        for (at, c) in word.char_indices() {
            if is_punctuation(c) {
                if start < at {
                    parts.push(word.get(start..at).unwrap_or_default());
                }
                parts.push(word.get(at..at + c.len_utf8()).unwrap_or_default());
                start = at + c.len_utf8();
            }
        }
        if start < word.len() {
            parts.push(word.get(start..).unwrap_or_default());
        }
        parts
    })
}

/// ASCII punctuation and symbols, and the Unicode punctuation blocks (general punctuation, CJK
/// and full-width punctuation, Latin-1 punctuation).
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32,
            0x00A1 | 0x00A7 | 0x00AB | 0x00B6 | 0x00B7 | 0x00BB | 0x00BF
            | 0x2010..=0x2027 | 0x2030..=0x205E | 0x3001..=0x3003 | 0x3008..=0x3011
            | 0x3014..=0x301F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Tokenizer {
        let vocab: Vec<&str> =
            vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "!", "un", "##aff", "##able", "cafe", "中"];
        let vocab: serde_json::Map<String, serde_json::Value> =
            vocab.iter().enumerate().map(|(i, t)| ((*t).to_owned(), serde_json::json!(i))).collect();
        let doc = serde_json::json!({
            "normalizer": {"type": "BertNormalizer", "lowercase": true, "strip_accents": null},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": vocab, "max_input_chars_per_word": 100}
        });
        Tokenizer::from_json(doc.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn bert_normalisation_and_word_pieces() {
        let t = tiny();
        assert_eq!(t.encode("Hello, World!", 64), vec![2, 4, 1, 5, 6, 3], "the comma is unknown, `!` a word");
        assert_eq!(t.encode("unaffable  Café\t中", 64), vec![2, 7, 8, 9, 10, 11, 3]);
        assert_eq!(t.encode("unaffablex", 64), vec![2, 1, 3], "a word with a piece missing is [UNK]");
        assert_eq!(t.encode("hello hello hello", 4), vec![2, 4, 4, 3], "cut to the length");
        assert_eq!(t.encode("", 8), vec![2, 3]);
    }

    proptest::proptest! {
        #[test]
        fn any_text_encodes_within_the_limit(text in ".{0,200}", max in 2usize..40) {
            let ids = tiny().encode(&text, max);
            proptest::prop_assert!(ids.len() <= max);
            proptest::prop_assert_eq!(ids.first(), Some(&2));
            proptest::prop_assert_eq!(ids.last(), Some(&3));
        }
    }
}
