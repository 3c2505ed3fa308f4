//! Tool-call arguments are JSON text (whole, or streamed in pieces). Guardrails scan that text as
//! it is and redact in a way that keeps it valid JSON: a finding inside a string literal is
//! replaced there by its placeholder (escape sequences kept whole), a finding outside strings (a
//! number such as `4111111111111111`) is replaced with the whole number by the placeholder as a
//! string, and restored originals are JSON-escaped.

use flowgate_proto::compliance::Finding;

use super::verdict::placeholder;

/// Where a piece of JSON text starts: inside a string literal or not, and how many bytes of an
/// escape sequence (`\n`, `\u00e9`) are still to come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JsonState {
    in_string: bool,
    escape_left: u8,
}

/// What one byte of JSON text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Byte {
    /// Outside string literals (structure, numbers, literals, whitespace).
    Outside,
    /// A string literal's quote.
    Quote,
    /// Inside a string literal, not part of an escape sequence.
    Inside,
    /// The `\` that starts an escape sequence.
    EscapeStart,
    /// The rest of an escape sequence (`n`, `u00e9`).
    EscapeRest,
}

/// `escape_left` right after a `\`: the next byte says how long the escape is.
const AFTER_BACKSLASH: u8 = u8::MAX;

impl JsonState {
    /// Classifies each byte of `text` and moves past it.
    fn walk(&mut self, text: &str) -> Vec<Byte> {
        let mut out = Vec::with_capacity(text.len());
        for &b in text.as_bytes() {
            let class = if self.escape_left == AFTER_BACKSLASH {
                self.escape_left = if b == b'u' { 4 } else { 0 };
                Byte::EscapeRest
            } else if self.escape_left > 0 {
                self.escape_left -= 1;
                Byte::EscapeRest
            } else if self.in_string {
                match b {
                    b'"' => {
                        self.in_string = false;
                        Byte::Quote
                    }
                    b'\\' => {
                        self.escape_left = AFTER_BACKSLASH;
                        Byte::EscapeStart
                    }
                    _ => Byte::Inside,
                }
            } else if b == b'"' {
                self.in_string = true;
                Byte::Quote
            } else {
                Byte::Outside
            };
            out.push(class);
        }
        out
    }

    /// Moves past `text`.
    pub(crate) fn advance(&mut self, text: &str) {
        self.walk(text);
    }
}

fn number_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
}

/// `text`, a piece of JSON text starting in `state`, with `findings` (offsets in `text`) replaced
/// by placeholders numbered in `restore`, still valid JSON where `text` was. Moves `state` past
/// `text`.
pub(crate) fn redact_json(
    text: &str,
    findings: &[&Finding],
    restore: &mut Vec<(String, String)>,
    state: &mut JsonState,
) -> String {
    let bytes = text.as_bytes();
    let classes = state.walk(text);
    let mut sorted: Vec<&&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| f.start);
    let mut out = String::with_capacity(text.len());
    let mut last = 0usize;
    for f in sorted {
        let (mut start, mut end) = (f.start as usize, (f.end as usize).min(text.len()));
        if start >= end || start < last {
            continue;
        }
        let class = |i: usize| classes.get(i).copied().unwrap_or(Byte::Outside);
        let inside = (start..end).all(|i| matches!(class(i), Byte::Inside | Byte::EscapeStart | Byte::EscapeRest));
        let outside = (start..end).all(|i| class(i) == Byte::Outside);
        let quoted = if inside {
            // Keep escape sequences whole: a span that starts inside one starts after it, one
            // that ends inside one ends after it.
            while start < end && class(start) == Byte::EscapeRest {
                start += 1;
            }
            while end < text.len() && class(end) == Byte::EscapeRest {
                end += 1;
            }
            false
        } else if outside {
            // A number: the placeholder replaces all of it, as a string.
            while start > last
                && bytes.get(start - 1).copied().is_some_and(number_byte)
                && class(start - 1) == Byte::Outside
            {
                start -= 1;
            }
            while end < text.len() && bytes.get(end).copied().is_some_and(number_byte) && class(end) == Byte::Outside {
                end += 1;
            }
            true
        } else {
            // Across string boundaries: no PII or secret pattern does this; redact in place.
            false
        };
        if start >= end || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(text.get(last..start).unwrap_or_default());
        let name = placeholder(restore, &f.kind, text.get(start..end).unwrap_or_default());
        if quoted {
            out.push('"');
            out.push_str(&name);
            out.push('"');
        } else {
            out.push_str(&name);
        }
        last = end;
    }
    out.push_str(text.get(last..).unwrap_or_default());
    out
}

/// Puts originals back in JSON text in place of placeholders, escaped for a string literal.
pub(crate) fn restore_json(text: &str, restore: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (placeholder, original) in restore {
        if out.contains(placeholder.as_str()) {
            let quoted = serde_json::Value::String(original.clone()).to_string();
            let escaped = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default();
            out = out.replace(placeholder.as_str(), escaped);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn finding(kind: &str, text: &str, value: &str) -> Finding {
        let start = text.find(value).unwrap();
        Finding { kind: kind.to_owned(), start: start as u32, end: (start + value.len()) as u32, score: 0.9 }
    }

    #[test]
    fn redaction_keeps_arguments_valid_json() {
        let text = r#"{"to": "jane@x.io", "card": 4111111111111111, "note": "call\u00a0415 555 0100\n", "n": -1}"#;
        let findings = [
            finding("email", text, "jane@x.io"),
            finding("payment_card", text, "4111111111111111"),
            // What a scan of the raw text finds: the phone starts on the escape's last digit.
            finding("phone", text, "0415 555 0100"),
        ];
        let refs: Vec<&Finding> = findings.iter().collect();
        let mut restore = Vec::new();
        let redacted = redact_json(text, &refs, &mut restore, &mut JsonState::default());
        let value: Value = serde_json::from_str(&redacted).unwrap_or_else(|e| panic!("{e}: {redacted}"));
        assert_eq!(value["to"], "<EMAIL_1>");
        assert_eq!(value["card"], "<PAYMENT_CARD_1>");
        assert_eq!(value["note"], "call\u{a0}<PHONE_1>\n");
        assert_eq!(value["n"], -1);
        let back: Value = serde_json::from_str(&restore_json(&redacted, &restore)).unwrap();
        assert_eq!(back["to"], "jane@x.io");
        assert_eq!(back["card"], "4111111111111111");
    }

    #[test]
    fn state_carries_across_pieces() {
        let pieces = [r#"{"a": "x\"#, r#"" jane@x.io", "b": 41111111"#, r#"11111111}"#];
        let mut state = JsonState::default();
        state.advance(pieces[0]);
        assert!(state.in_string && state.escape_left != 0);
        let f = finding("email", pieces[1], "jane@x.io");
        let out = redact_json(pieces[1], &[&f], &mut Vec::new(), &mut state);
        assert_eq!(out, r#"" <EMAIL_1>", "b": 41111111"#);
        assert!(!state.in_string);
    }

    #[test]
    fn restored_originals_are_escaped() {
        let restore = vec![("<SECRET_1>".to_owned(), "a\"b\\c".to_owned())];
        let text = restore_json(r#"{"k": "<SECRET_1>"}"#, &restore);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["k"], "a\"b\\c");
    }
}
