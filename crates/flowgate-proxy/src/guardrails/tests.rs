use flowgate_proto::compliance::Finding;

use super::SEPARATOR;
use super::verdict::{self, redact, split_findings};
use super::window::{Reach, Window};

fn finding(kind: &str, start: u32, end: u32) -> Finding {
    Finding { kind: kind.to_owned(), start, end, score: 0.99 }
}

#[test]
fn placeholders_are_numbered_across_the_request_and_reused_for_equal_values() {
    let mut restore = Vec::new();
    let a = "mail a@x.io";
    let b = "also b@y.io and a@x.io";
    let first = redact(a, &[&finding("email", 5, 11)], &mut restore);
    let second = redact(b, &[&finding("email", 5, 11), &finding("email", 16, 22)], &mut restore);
    assert_eq!(first, "mail <EMAIL_1>");
    assert_eq!(second, "also <EMAIL_2> and <EMAIL_1>");
    assert_eq!(verdict::restore("hi <EMAIL_2>, <EMAIL_1>", &restore), "hi b@y.io, a@x.io");
}

fn pii_reach(restoring: bool) -> Reach {
    let detectors: Vec<String> = flowgate_contracts::PII_ENTITIES.iter().map(|d| (*d).to_owned()).collect();
    Reach::new(&detectors, restoring)
}

/// A stand-in for the compliance scan: finds `value` wherever it is whole.
fn literal_scan(text: &str, kind: &str, value: &str) -> Vec<Finding> {
    text.match_indices(value)
        .map(|(start, _)| finding(kind, u32::try_from(start).unwrap(), u32::try_from(start + value.len()).unwrap()))
        .collect()
}

/// Streams `pieces` through a window the way the stream guard does; returns each released piece
/// with the values found in it (as released, after the cut and the clipping).
fn stream(pieces: &[&str], reach: &Reach, kind: &str, value: &str) -> Vec<(String, Vec<String>)> {
    let mut window = Window::default();
    let mut out = Vec::new();
    let mut release = |window: &mut Window, all: bool| {
        let cut = if all { window.held() } else { window.releasable(reach) };
        if cut > 0 {
            let findings = literal_scan(&window.scan_text(), kind, value);
            let (piece, local) = window.release(cut, &findings);
            let found = local.iter().map(|f| piece[f.start as usize..f.end as usize].to_owned()).collect();
            out.push((piece, found));
        }
    };
    for piece in pieces {
        window.push(piece);
        release(&mut window, false);
    }
    release(&mut window, true);
    out
}

const VALUES: [(&str, &str); 7] = [
    ("email", "jane.doe@example.com"),
    ("phone", "+1 415 555 0100"),
    ("payment_card", "4111 1111 1111 1111"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("ssn", "123-45-6789"),
    ("ip_address", "10.1.2.3"),
    ("ip_address", "fe80::1ff:fe23:4567:890a"),
];

#[test]
fn the_window_never_releases_part_of_a_value_whatever_the_split() {
    let reach = pii_reach(false);
    for (kind, value) in VALUES {
        let text = format!("Details: {value} and more text");
        let one_byte: Vec<String> = text.chars().map(String::from).collect();
        let one_byte: Vec<&str> = one_byte.iter().map(String::as_str).collect();
        let mut splits = vec![one_byte];
        for at in 1..text.len() {
            splits.push(vec![&text[..at], &text[at..]]);
        }
        for pieces in splits {
            let released = stream(&pieces, &reach, kind, value);
            let whole: String = released.iter().map(|(piece, _)| piece.as_str()).collect();
            assert_eq!(whole, text, "{kind} in {pieces:?}");
            let found: Vec<&String> = released.iter().flat_map(|(_, found)| found).collect();
            assert_eq!(found, vec![value], "{kind} split as {pieces:?}: released {released:?}");
        }
    }
}

#[test]
fn the_window_holds_only_what_a_finding_can_reach() {
    let reach = pii_reach(false);
    let mut prose = Window::default();
    prose.push("Hello there, how are you doing");
    assert_eq!(prose.releasable(&reach), "Hello there, how are you ".len(), "prose streams on");
    let mut digits = Window::default();
    digits.push(&"7".repeat(10_000));
    assert!(digits.held() - digits.releasable(&reach) <= 254, "a long run is not held forever");
    let mut placeholder = Window::default();
    placeholder.push("write to <EMAIL");
    assert_eq!(placeholder.releasable(&pii_reach(true)), "write to ".len());
    let secrets = Reach::new(&["secret".to_owned()], false);
    let mut key = Window::default();
    key.push("key sk-proj-abc");
    assert_eq!(key.releasable(&secrets), "key ".len());
    let terms = Reach::new(&["blocked_terms:project falcon".to_owned()], false);
    let mut term = Window::default();
    term.push("about the project");
    assert_eq!(term.releasable(&terms), 0, "a term's first word is held until the term can be seen");
}

#[test]
fn a_placeholder_is_never_cut() {
    let mut window = Window::default();
    window.push("see <EMAIL_1> now");
    let (piece, _) = window.release("see <EMA".len(), &[]);
    assert_eq!(piece, "see ");
    let (piece, _) = window.release(window.held(), &[]);
    assert_eq!(piece, "<EMAIL_1> now");
}

#[test]
fn split_findings_maps_offsets_back_to_segments() {
    let segments = vec!["ab x@y.io".to_owned(), "z@w.io".to_owned()];
    let pointers = vec!["/a".to_owned(), "/b".to_owned()];
    let second_start = u32::try_from(segments[0].len() + SEPARATOR.len()).unwrap();
    let findings = [finding("email", 3, 9), finding("email", second_start, second_start + 6)];
    let split = split_findings(&pointers, &segments, &findings);
    assert_eq!((split[0].2[0].start, split[0].2[0].end), (3, 9));
    assert_eq!((split[1].2[0].start, split[1].2[0].end), (0, 6));
}
