//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`), as Bedrock's
//! `ConverseStream` sends it, decoded incrementally: bytes are buffered only up to the end of the
//! message they belong to.
//!
//! A message: total length (u32, big-endian), headers length (u32), CRC-32 of those 8 bytes, the
//! headers, the payload, and a CRC-32 of everything before it. A header: name length (u8), name,
//! value type (u8), value. Both checksums are checked.
//!
//! Public so a fake Bedrock in the tests writes frames with [`encode`].

use bytes::{Buf, Bytes, BytesMut};

/// Largest message accepted (16 MiB); beyond it the stream is treated as broken.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Prelude (12 bytes) plus the message CRC (4).
const OVERHEAD: usize = 16;

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Headers whose values are strings (`:event-type`, `:message-type`, `:content-type`,
    /// `:exception-type`); headers of other types are skipped.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// The value of the string header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A length outside what the format allows.
    #[error("event-stream message length {0} is invalid")]
    Length(usize),
    /// A checksum did not match.
    #[error("event-stream {0} checksum mismatch")]
    Checksum(&'static str),
    /// A header could not be read.
    #[error("event-stream header is malformed")]
    Header,
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0, bytes)
}

fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Splits a byte stream into messages.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: BytesMut,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([*slice.first()?, *slice.get(1)?, *slice.get(2)?, *slice.get(3)?]))
}

impl Decoder {
    /// Feeds a chunk; returns the messages it completed. After an error the stream is broken.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Message>, DecodeError> {
        self.buffer.extend_from_slice(chunk);
        let mut messages = Vec::new();
        while let Some(total) = read_u32(&self.buffer, 0) {
            let total = usize::try_from(total).unwrap_or(usize::MAX);
            if !(OVERHEAD..=MAX_MESSAGE_BYTES).contains(&total) {
                return Err(DecodeError::Length(total));
            }
            if self.buffer.len() < 12 {
                break;
            }
            let prelude_crc = read_u32(&self.buffer, 8).ok_or(DecodeError::Length(total))?;
            if crc32(self.buffer.get(..8).unwrap_or_default()) != prelude_crc {
                return Err(DecodeError::Checksum("prelude"));
            }
            if self.buffer.len() < total {
                break;
            }
            let frame = self.buffer.split_to(total).freeze();
            messages.push(parse(&frame, total)?);
        }
        Ok(messages)
    }

    /// Bytes of an unfinished message left at the end of the stream (a cut stream), if any.
    pub fn remaining(&self) -> usize {
        self.buffer.len()
    }
}

fn parse(frame: &Bytes, total: usize) -> Result<Message, DecodeError> {
    let headers_len = usize::try_from(read_u32(frame, 4).ok_or(DecodeError::Length(total))?).unwrap_or(usize::MAX);
    if headers_len > total - OVERHEAD {
        return Err(DecodeError::Length(headers_len));
    }
    let message_crc = read_u32(frame, total - 4).ok_or(DecodeError::Length(total))?;
    if crc32(frame.get(..total - 4).unwrap_or_default()) != message_crc {
        return Err(DecodeError::Checksum("message"));
    }
    let mut headers_bytes = frame.slice(12..12 + headers_len);
    let payload = frame.slice(12 + headers_len..total - 4);
    let mut headers = Vec::new();
    while headers_bytes.has_remaining() {
        let name_len = usize::from(headers_bytes.try_get_u8().map_err(|_| DecodeError::Header)?);
        if headers_bytes.remaining() < name_len {
            return Err(DecodeError::Header);
        }
        let name = String::from_utf8_lossy(&headers_bytes.split_to(name_len)).into_owned();
        let kind = headers_bytes.try_get_u8().map_err(|_| DecodeError::Header)?;
        let fixed = match kind {
            0 | 1 => Some(0),
            2 => Some(1),
            3 => Some(2),
            4 => Some(4),
            5 | 8 => Some(8),
            9 => Some(16),
            6 | 7 => None,
            _ => return Err(DecodeError::Header),
        };
        match fixed {
            Some(len) => {
                if headers_bytes.remaining() < len {
                    return Err(DecodeError::Header);
                }
                headers_bytes.advance(len);
            }
            None => {
                let len = usize::from(headers_bytes.try_get_u16().map_err(|_| DecodeError::Header)?);
                if headers_bytes.remaining() < len {
                    return Err(DecodeError::Header);
                }
                let value = headers_bytes.split_to(len);
                if kind == 7 {
                    headers.push((name, String::from_utf8_lossy(&value).into_owned()));
                }
            }
        }
    }
    Ok(Message { headers, payload })
}

/// One message in wire form, with string headers.
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut header_bytes = Vec::new();
    for (name, value) in headers {
        header_bytes.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        header_bytes.extend_from_slice(name.as_bytes().get(..usize::from(u8::MAX)).unwrap_or(name.as_bytes()));
        header_bytes.push(7);
        let value = value.as_bytes().get(..usize::from(u16::MAX)).unwrap_or(value.as_bytes());
        header_bytes.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        header_bytes.extend_from_slice(value);
    }
    let total = OVERHEAD + header_bytes.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(header_bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(payload);
    let message_crc = crc32(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn messages_split_at_every_byte_are_reassembled() {
        let first = encode(
            &[(":event-type", "contentBlockDelta"), (":content-type", "application/json"), (":message-type", "event")],
            br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        );
        let second =
            encode(&[(":event-type", "messageStop"), (":message-type", "event")], br#"{"stopReason":"end_turn"}"#);
        let wire = [first.as_ref(), second.as_ref()].concat();
        for split in 0..wire.len() {
            let mut decoder = Decoder::default();
            let mut messages = decoder.push(&wire[..split]).unwrap();
            messages.extend(decoder.push(&wire[split..]).unwrap());
            assert_eq!(messages.len(), 2, "split at {split}");
            assert_eq!(messages[0].header(":event-type"), Some("contentBlockDelta"));
            assert_eq!(messages[1].payload.as_ref(), br#"{"stopReason":"end_turn"}"#);
            assert_eq!(decoder.remaining(), 0);
        }
    }

    #[test]
    fn a_corrupted_byte_is_caught_by_a_checksum() {
        let mut wire = encode(&[(":event-type", "messageStop")], b"{}").to_vec();
        let last = wire.len() - 6;
        wire[last] ^= 0x01;
        assert_eq!(Decoder::default().push(&wire), Err(DecodeError::Checksum("message")));
        let mut wire = encode(&[(":event-type", "messageStop")], b"{}").to_vec();
        wire[5] ^= 0x01;
        assert_eq!(Decoder::default().push(&wire), Err(DecodeError::Checksum("prelude")));
    }
}
