//! What a YAML config file is checked for before it is loaded, by reading the parser's events once
//! (no tree is built):
//!
//! - how deep it nests: a nesting thousands of levels deep would exhaust the stack of the recursive
//!   conversions after the parser;
//! - how many values it stands for once its aliases are resolved: the loader resolves an alias by
//!   copying what it names, so a few nested anchors (`b: &b [*a, *a, …]`, nine levels of nine)
//!   stand for hundreds of millions of values, and memory runs out instead of an error;
//! - numbers YAML spells in a way the loader cannot read (`.nan`, `.inf`): it would refuse the
//!   whole file without naming the field.
//!
//! The first two are refused naming the file, the third naming the field.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use super::ConfigError;

/// Deepest nesting of sequences and mappings accepted. A real configuration needs about six.
pub(super) const MAX_DEPTH: usize = 64;

/// Most values a file may stand for, aliases resolved. A real configuration has a few thousand.
pub(super) const MAX_NODES: u64 = 1_000_000;

/// Why a file was refused before loading.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The file as a whole.
    File(String),
    /// One field: its dotted path and what is wrong.
    Field(String, String),
}

impl Refusal {
    /// As the loader's error, for the file at `path`.
    pub(super) fn into_error(self, path: &std::path::Path) -> ConfigError {
        match self {
            Self::File(message) => ConfigError::File { path: path.to_path_buf(), message },
            Self::Field(field, message) => ConfigError::field(field, message),
        }
    }
}

/// Where an open collection is.
#[derive(Debug)]
enum Position {
    /// In a mapping: the key being read or whose value is being read.
    Mapping { key: Option<String>, value_next: bool },
    /// In a sequence: the index of the next item.
    Sequence { index: usize },
}

#[derive(Debug)]
struct Open {
    anchor: usize,
    /// Values inside so far (aliases resolved), the collection itself included.
    count: u64,
    position: Position,
}

/// A value that is complete: (anchor, values it stands for, a scalar's text and whether it is
/// plain, i.e. unquoted).
type Done = (usize, u64, Option<(String, bool)>);

/// The dotted path (`model_list[0].litellm_params.weight`) of the value being read.
fn path(open: &[Open]) -> String {
    let mut out = String::new();
    for frame in open {
        match &frame.position {
            Position::Mapping { key, .. } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key.as_deref().unwrap_or("?"));
            }
            Position::Sequence { index } => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// A scalar YAML reads as a number that the loader cannot convert (`.nan`, `.inf`, `-.Inf`, …).
fn unreadable_number(text: &str) -> bool {
    matches!(
        text,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN"
    )
}

/// Checks `text` (see the module). Syntax errors pass: the loader reports them, with their
/// position.
pub(super) fn check(text: &str) -> Result<(), Refusal> {
    let mut parser = Parser::new_from_str(text);
    // Values each anchor stands for.
    let mut anchored: HashMap<usize, u64> = HashMap::new();
    let mut open: Vec<Open> = Vec::new();
    let mut closed: u64 = 0;
    loop {
        let Ok((event, _)) = parser.next_token() else { return Ok(()) };
        let done: Option<Done> = match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(text, style, anchor, _) => Some((anchor, 1, Some((text, style == TScalarStyle::Plain)))),
            Event::Alias(id) => Some((0, anchored.get(&id).copied().unwrap_or(1), None)),
            Event::SequenceStart(anchor, _) => {
                open.push(Open { anchor, count: 1, position: Position::Sequence { index: 0 } });
                None
            }
            Event::MappingStart(anchor, _) => {
                open.push(Open { anchor, count: 1, position: Position::Mapping { key: None, value_next: false } });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => open.pop().map(|frame| (frame.anchor, frame.count, None)),
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => None,
        };
        if open.len() > MAX_DEPTH {
            return Err(Refusal::File(format!("nests deeper than {MAX_DEPTH} levels")));
        }
        let Some((anchor, size, scalar)) = done else { continue };
        if anchor > 0 {
            anchored.insert(anchor, size);
        }
        match open.last_mut() {
            Some(parent) => {
                parent.count = parent.count.saturating_add(size);
                match &mut parent.position {
                    Position::Mapping { key, value_next } if !*value_next => {
                        *key = Some(scalar.map_or_else(|| "?".to_owned(), |(text, _)| text));
                        *value_next = true;
                    }
                    Position::Mapping { value_next, .. } => {
                        if let Some((text, true)) = &scalar
                            && unreadable_number(text)
                        {
                            return Err(Refusal::Field(path(&open), number_message(text)));
                        }
                        *value_next = false;
                    }
                    Position::Sequence { index } => {
                        if let Some((text, true)) = &scalar
                            && unreadable_number(text)
                        {
                            return Err(Refusal::Field(path(&open), number_message(text)));
                        }
                        *index += 1;
                    }
                }
            }
            None => closed = closed.saturating_add(size),
        }
        let total = open.iter().fold(closed, |sum, frame| sum.saturating_add(frame.count));
        if total > MAX_NODES {
            return Err(Refusal::File(format!(
                "stands for more than {MAX_NODES} values once its aliases (*name) are resolved"
            )));
        }
    }
}

fn number_message(text: &str) -> String {
    format!("`{text}` cannot be read as a number here; write a finite number (quote it for text)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` levels, each of nine aliases to the level below: 9^levels scalars.
    fn laughs(levels: usize) -> String {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for level in 1..levels {
            let previous = format!("*a{}", level - 1);
            let items = [previous.as_str(); 9].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        text
    }

    #[test]
    fn ordinary_documents_and_ordinary_aliases_pass() {
        let plain =
            "proxy:\n  port: 7775\nmodel_list:\n  - {model_name: m, litellm_params: {model: mock/m, weight: 0.5}}\n";
        assert_eq!(check(plain), Ok(()));
        let anchors = "base: &base {model: mock/m, rpm: 5}\nmodel_list:\n  - {model_name: a, litellm_params: *base}\n  - {model_name: b, litellm_params: *base}\n";
        assert_eq!(check(anchors), Ok(()));
        assert_eq!(check(&laughs(4)), Ok(()), "9^4 values are fine");
        assert_eq!(check("not: [valid"), Ok(()), "syntax errors are the loader's to report");
        assert_eq!(check("a: '.nan'\nb: \".inf\"\n.nan: 1\n"), Ok(()), "quoted, or a key: text");
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_naming_the_file() {
        let Err(Refusal::File(error)) = check(&laughs(9)) else { panic!("not refused") };
        assert!(error.contains("aliases"), "{error}");
        let deep = format!("litellm_settings:\n  {}x\n", "- ".repeat(10_000));
        assert_eq!(check(&deep), Err(Refusal::File("nests deeper than 64 levels".to_owned())));
        let flow = format!("litellm_settings: {}{}\n", "[".repeat(65), "]".repeat(65));
        assert_eq!(check(&flow), Err(Refusal::File("nests deeper than 64 levels".to_owned())));
        assert_eq!(check(&format!("litellm_settings: {}{}\n", "[".repeat(60), "]".repeat(60))), Ok(()));
    }

    #[test]
    fn numbers_the_loader_cannot_read_are_refused_naming_the_field() {
        let field = |text: &str| match check(text) {
            Err(Refusal::Field(field, message)) => {
                assert!(message.contains('`'), "{message}");
                field
            }
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(field("cache:\n  semantic:\n    threshold: .nan\n"), "cache.semantic.threshold");
        assert_eq!(
            field("model_list:\n  - model_name: m\n    litellm_params: {model: mock/m, weight: -.Inf}\n"),
            "model_list[0].litellm_params.weight"
        );
        assert_eq!(field("proxy:\n  trusted_proxies: [a, b, .INF]\n"), "proxy.trusted_proxies[2]");
        assert_eq!(field("a: {b: [{}, {c: [1, .nan]}]}\n"), "a.b[1].c[1]");
    }
}
