//! Incremental Server-Sent Events parsing and writing.
//!
//! Upstream bodies arrive in arbitrary chunks: an event can be split anywhere, including inside a
//! UTF-8 character or between `\r` and `\n`. [`SseParser`] buffers only the unfinished tail, so
//! memory stays bounded by the largest single event.

use bytes::{Bytes, BytesMut};

/// One event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; `None` for unnamed events (OpenAI's).
    pub event: Option<String>,
    /// The `data:` payload.
    pub data: String,
}

/// Largest event accepted from an upstream (16 MiB); beyond it the stream is treated as broken.
pub(crate) const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buffer: BytesMut,
    /// How much of `buffer` has been searched for a boundary: a large event arriving in small
    /// chunks is searched once, not once per chunk.
    scanned: usize,
}

/// The longest boundary (`\r\n\r\n`) less one: a boundary that starts this close to the end of
/// what was searched may have been cut by the chunk's end.
const BOUNDARY_OVERLAP: usize = 3;

/// The upstream sent an event larger than [`MAX_EVENT_BYTES`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("upstream event exceeds {MAX_EVENT_BYTES} bytes")]
pub(crate) struct EventTooLarge;

fn find_boundary(buffer: &[u8]) -> Option<(usize, usize)> {
    // An event ends at a blank line: "\n\n", "\r\n\r\n" or "\r\r" (and "\n\r\n"). Line
    // ends are found with a vectorised search; only they are looked at closely.
    let mut from = 0;
    while let Some(at) = buffer.get(from..).and_then(|rest| memchr::memchr2(b'\n', b'\r', rest)) {
        let i = from + at;
        match buffer.get(i..).unwrap_or_default() {
            [b'\n', b'\n', ..] | [b'\r', b'\r', ..] => return Some((i, i + 2)),
            [b'\n', b'\r', b'\n', ..] => return Some((i, i + 3)),
            [b'\r', b'\n', b'\r', b'\n', ..] => return Some((i, i + 4)),
            _ => from = i + 1,
        }
    }
    None
}

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            // No boundary starts before `from`: it would have been found by an earlier search.
            let from = self.scanned.saturating_sub(BOUNDARY_OVERLAP);
            let Some((end, next)) = find_boundary(self.buffer.get(from..).unwrap_or_default()) else {
                self.scanned = self.buffer.len();
                break;
            };
            let block = self.buffer.split_to(from + next);
            self.scanned = 0;
            if let Some(event) = parse_block(block.get(..from + end).unwrap_or_default()) {
                events.push(event);
            }
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(events)
    }

    /// Flushes a final event that was not followed by a blank line.
    pub(crate) fn finish(&mut self) -> Option<SseEvent> {
        let block = std::mem::take(&mut self.buffer);
        self.scanned = 0;
        parse_block(&block)
    }
}

fn parse_block(block: &[u8]) -> Option<SseEvent> {
    // Valid UTF-8 (the usual case) is borrowed as it is; anything else is repaired.
    let text = match std::str::from_utf8(block) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(block),
    };
    let mut event = None;
    let mut data: Option<String> = None;
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let end = memchr::memchr2(b'\n', b'\r', rest.as_bytes()).unwrap_or(rest.len());
        // Line ends are ASCII, so both sides are on character boundaries.
        let line = rest.get(..end).unwrap_or_default();
        rest = rest.get(end + 1..).unwrap_or_default();
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => match &mut data {
                Some(existing) => {
                    existing.push('\n');
                    existing.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    data.map(|data| SseEvent { event, data })
}

/// Writes an event in wire format.
pub(crate) fn encode(event: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(name) = event {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// One event whose data is `value` as JSON (compact JSON is one line), written straight into the
/// event's bytes.
pub(crate) fn encode_json(event: Option<&str>, value: &serde_json::Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Writing a `Value` into a `Vec` cannot fail.
    if serde_json::to_writer(&mut out, value).is_err() {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_at_every_byte_are_reassembled() {
        let wire = b"event: message_start\ndata: {\"a\":1}\n\ndata: x\r\n\r\n: comment\ndata: line1\ndata: line2\n\n";
        for split in 0..wire.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&wire[..split]).unwrap();
            events.extend(parser.push(&wire[split..]).unwrap());
            assert_eq!(
                events,
                vec![
                    SseEvent { event: Some("message_start".into()), data: "{\"a\":1}".into() },
                    SseEvent { event: None, data: "x".into() },
                    SseEvent { event: None, data: "line1\nline2".into() },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn unterminated_final_event_is_flushed() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: [DONE]").unwrap().is_empty());
        assert_eq!(parser.finish(), Some(SseEvent { event: None, data: "[DONE]".into() }));
    }

    #[test]
    fn encode_round_trips() {
        let mut parser = SseParser::default();
        let events = parser.push(&encode(Some("ping"), "a\nb")).unwrap();
        assert_eq!(events, vec![SseEvent { event: Some("ping".into()), data: "a\nb".into() }]);
    }

    #[test]
    fn a_large_event_in_small_chunks_is_searched_once() {
        // Searching the whole buffer again for every chunk would take minutes here.
        let started = std::time::Instant::now();
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: ").unwrap().is_empty());
        for chunk in vec![b'x'; 8 << 20].chunks(1024) {
            assert!(parser.push(chunk).unwrap().is_empty());
        }
        let events = parser.push(b"\r\n\r\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.len(), 8 << 20);
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[test]
    fn oversized_events_are_rejected() {
        let mut parser = SseParser::default();
        assert!(parser.push(&vec![b'x'; MAX_EVENT_BYTES + 1]).is_err());
    }
}
