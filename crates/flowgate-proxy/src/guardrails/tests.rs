use flowgate_proto::compliance::Finding;

use super::SEPARATOR;
use super::stream::StreamText;
use super::verdict::{self, redact, split_findings};

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

#[test]
fn stream_text_holds_back_until_a_value_is_whole() {
    let mut text = StreamText::default();
    assert_eq!(text.push("Write to jane.do"), "Write to ");
    assert_eq!(text.push("e@example.com now"), "jane.doe@example.com ");
    assert_eq!(text.push(" <EMAIL"), "now ");
    assert_eq!(text.push("_1> ok"), "<EMAIL_1> ");
    assert_eq!(text.finish(), "ok");
    let mut long = StreamText::default();
    assert_eq!(long.push(&"x".repeat(300)).len(), 300, "a run without spaces is not held forever");
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
