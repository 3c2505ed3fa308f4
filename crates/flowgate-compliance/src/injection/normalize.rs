//! Undoing obfuscation before patterns and the model see a text: case, zero-width characters, a
//! few Cyrillic homoglyphs, leetspeak inside words, letter-spacing and hyphenation inside words,
//! keeping the original byte offset of every normalised byte so findings point into the
//! original text.

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
            original.get(last..).and_then(|rest| rest.chars().next()).map_or(original.len(), |c| last + c.len_utf8())
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

/// Separators of letter-spaced words (`i g n o r e`, `I.g.n.o.r.e`).
const SPACING: &[char] = &[' ', '.', '-', '_', '*', '/'];

/// A character with the original byte offset it came from.
type Mapped = (char, u32);

/// Normalises `text`: lower case, no zero-width characters, homoglyphs and leetspeak inside words
/// mapped to letters, letter-spaced words and hyphenated words joined.
pub fn normalize(text: &str) -> Normalized {
    let original_len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let mut chars = fold_case(text);
    unleet(&mut chars);
    let joined = join_spaced(&chars);
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

/// Step 1: lower case, drop invisible characters, map homoglyphs.
fn fold_case(text: &str) -> Vec<Mapped> {
    let offset = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
    let mut chars: Vec<Mapped> = Vec::with_capacity(text.len());
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
    chars
}

/// Step 2, leetspeak: inside a word that has letters, map digits and `@`/`$` to letters.
fn unleet(chars: &mut [Mapped]) {
    let word = |c: char| c.is_alphanumeric() || c == '@' || c == '$';
    let is_word_at = |chars: &[Mapped], i: usize| chars.get(i).is_some_and(|&(c, _)| word(c));
    let mut i = 0;
    while i < chars.len() {
        if !is_word_at(chars, i) {
            i += 1;
            continue;
        }
        let mut j = i;
        let (mut letters, mut leets) = (0, 0);
        while let Some(&(c, _)) = chars.get(j).filter(|&&(c, _)| word(c)) {
            if c.is_alphabetic() {
                letters += 1;
            } else if leet(c) != c {
                leets += 1;
            }
            j += 1;
        }
        if letters >= 2
            && leets > 0
            && j - i >= 3
            && let Some(run) = chars.get_mut(i..j)
        {
            for entry in run {
                entry.0 = leet(entry.0);
            }
        }
        i = j;
    }
}

/// Step 3: letter-spacing ("i g n o r e", "I.g.n.o.r.e") and hyphens inside words ("ign-ore").
fn join_spaced(chars: &[Mapped]) -> Vec<Mapped> {
    let alnum = |i: usize| chars.get(i).is_some_and(|(c, _)| c.is_alphanumeric());
    let alpha = |i: usize| chars.get(i).is_some_and(|(c, _)| c.is_alphabetic());
    let mut joined: Vec<Mapped> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while let Some(&entry) = chars.get(i) {
        let c = entry.0;
        // A single letter, then (separator, single letter) at least twice.
        if c.is_alphabetic()
            && (i == 0 || !alnum(i - 1))
            && let Some(&(sep, _)) = chars.get(i + 1)
            && SPACING.contains(&sep)
        {
            let mut j = i;
            let mut letters = 1;
            while chars.get(j + 1).is_some_and(|(s, _)| *s == sep) && alpha(j + 2) && !alnum(j + 3) {
                j += 2;
                letters += 1;
            }
            if letters >= 3 {
                joined.extend(chars.iter().skip(i).take(j + 1 - i).step_by(2));
                i = j + 1;
                continue;
            }
        }
        if c == '-' && i > 0 && alpha(i - 1) && alpha(i + 1) {
            i += 1;
            continue;
        }
        joined.push(entry);
        i += 1;
    }
    joined
}
