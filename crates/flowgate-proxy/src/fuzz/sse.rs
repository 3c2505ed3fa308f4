//! SSE framing of upstream bytes: any bytes, cut anywhere, give the events the same bytes give in
//! one piece; a valid stream gives back exactly the events written.

use proptest::prelude::*;

use super::{config, corpus, mutated_corpus};
use crate::sse::{SseEvent, SseParser, encode};

/// The events of `bytes` pushed in the pieces that `cuts` make (then the unterminated tail).
fn parse_in_pieces(bytes: &[u8], cuts: &[prop::sample::Index]) -> Vec<SseEvent> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for window in points.windows(2) {
        events.extend(parser.push(&bytes[window[0]..window[1]]).unwrap());
    }
    events.extend(parser.finish());
    events
}

/// What SSE is made of: field names, comments, line endings, blank lines, multi-byte characters
/// (and one cut in half).
const PIECES: &[&[u8]] = &[
    b"data: ",
    b"data:",
    b"event: ",
    b": comment",
    b"id: 1",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"[DONE]",
    "é€😀".as_bytes(),
    &[0xF0, 0x9F],
];

/// Bytes made mostly of SSE pieces, so that fields, boundaries and line endings meet.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => prop::sample::select(PIECES).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..6),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// An event as an upstream may write it: an optional name, data lines without `\r`.
fn event() -> impl Strategy<Value = SseEvent> {
    (prop::option::of("[a-z_.]{1,16}"), prop::collection::vec("[^\r\n]{0,16}", 1..4))
        .prop_map(|(event, lines)| SseEvent { event, data: lines.join("\n") })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_bytes_cut_anywhere_give_the_events_of_one_piece(
        bytes in sse_bytes(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = parse_in_pieces(&bytes, &[]);
        prop_assert_eq!(parse_in_pieces(&bytes, &cuts), whole);
    }

    #[test]
    fn random_bytes_cut_anywhere_give_the_events_of_one_piece(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        prop_assert_eq!(parse_in_pieces(&bytes, &cuts), parse_in_pieces(&bytes, &[]));
    }

    #[test]
    fn mutated_corpus_streams_cut_anywhere_give_the_events_of_one_piece(
        bytes in mutated_corpus("sse"),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        prop_assert_eq!(parse_in_pieces(&bytes, &cuts), parse_in_pieces(&bytes, &[]));
    }

    #[test]
    fn a_valid_stream_cut_anywhere_gives_back_its_events(
        events in prop::collection::vec(event(), 0..12),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut wire: Vec<u8> = events.iter().flat_map(|e| encode(e.event.as_deref(), &e.data).to_vec()).collect();
        if crlf {
            wire = String::from_utf8(wire).unwrap().replace('\n', "\r\n").into_bytes();
        }
        prop_assert_eq!(parse_in_pieces(&wire, &cuts), events);
    }
}

/// Every corpus stream, cut at every byte, gives the events it gives in one piece.
#[test]
fn the_sse_corpus_parses_the_same_cut_at_every_byte() {
    for (name, bytes) in corpus("sse") {
        let whole = parse_in_pieces(&bytes, &[]);
        assert!(!whole.is_empty(), "{name}");
        for at in 0..=bytes.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&bytes[..at]).unwrap();
            events.extend(parser.push(&bytes[at..]).unwrap());
            events.extend(parser.finish());
            assert_eq!(events, whole, "{name} cut at {at}");
        }
    }
}
