//! The stream transform contract, and the chain that joins two formats through the hub.

use bytes::Bytes;

use crate::sse::{SseEvent, SseParser};
use crate::wire::Usage;

/// Turns upstream events into the bytes the client receives, and keeps what the gateway needs
/// to know about the stream (usage, whether it finished).
pub(crate) trait StreamTransform: Send {
    /// Handles one upstream event; returns the bytes to send (possibly none).
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes>;
    /// Called once the upstream ends; returns any closing bytes.
    fn finish(&mut self) -> Vec<Bytes>;
    /// Token usage seen so far.
    fn usage(&self) -> Usage;
    /// Whether the upstream signalled a normal end (`[DONE]`, `message_stop`).
    fn completed(&self) -> bool;
}

/// Two transforms in a row (format A → hub → format B): the first one's output is parsed back into
/// events for the second. Usage and completion are read from the first, which sees the upstream.
pub(crate) struct Chain {
    first: Box<dyn StreamTransform>,
    second: Box<dyn StreamTransform>,
    parser: SseParser,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chain")
    }
}

impl Chain {
    /// `first`, then `second`.
    pub(crate) fn new(first: Box<dyn StreamTransform>, second: Box<dyn StreamTransform>) -> Self {
        Self { first, second, parser: SseParser::default() }
    }

    fn relay(&mut self, chunks: Vec<Bytes>) -> Vec<Bytes> {
        let mut out = Vec::new();
        for chunk in chunks {
            // Our own transforms write whole events, far below the size limit.
            for event in self.parser.push(&chunk).unwrap_or_default() {
                out.extend(self.second.on_event(&event));
            }
        }
        out
    }
}

impl StreamTransform for Chain {
    fn on_event(&mut self, event: &SseEvent) -> Vec<Bytes> {
        let chunks = self.first.on_event(event);
        self.relay(chunks)
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let chunks = self.first.finish();
        let mut out = self.relay(chunks);
        if let Some(event) = self.parser.finish() {
            out.extend(self.second.on_event(&event));
        }
        out.extend(self.second.finish());
        out
    }

    fn usage(&self) -> Usage {
        self.first.usage()
    }

    fn completed(&self) -> bool {
        self.first.completed()
    }
}
