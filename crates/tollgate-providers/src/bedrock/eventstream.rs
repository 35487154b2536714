//! AWS's binary event stream (`application/vnd.amazon.eventstream`),
//! decoded incrementally.
//!
//! From AWS's "Event stream encoding" (Amazon Transcribe developer guide,
//! <https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream>,
//! and the AWS SDKs' `aws-smithy-eventstream`): each message is a prelude
//! (total length and headers length, big-endian `u32`s, then the CRC32 of
//! those 8 bytes), the headers (a 1-byte name length, the name, a 1-byte
//! value type, the value), the payload, and the CRC32 of everything before
//! it. Lengths count the whole message, prelude and trailing CRC included.

use bytes::{Buf, Bytes, BytesMut};

/// The prelude (8 bytes of lengths, 4 of CRC) and the trailing CRC.
const OVERHEAD: usize = 16;

/// The largest message accepted: AWS caps a payload at 16 MiB, which
/// Bedrock's events (a text delta, a usage report) never approach.
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// One decoded message: the headers the translation reads, and the payload.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// `:message-type`: `event`, `exception` or `error`.
    pub(crate) message_type: Option<String>,
    /// `:event-type` of an event (`contentBlockDelta`...).
    pub(crate) event_type: Option<String>,
    /// `:exception-type` of an exception (`throttlingException`...).
    pub(crate) exception_type: Option<String>,
    /// `:error-code` of an error message.
    pub(crate) error_code: Option<String>,
    /// `:error-message` of an error message.
    pub(crate) error_message: Option<String>,
    pub(crate) payload: Bytes,
}

/// Why the stream cannot be decoded: a broken upstream, never skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The prelude's CRC does not match its lengths.
    PreludeCrc,
    /// The message's CRC does not match its bytes.
    MessageCrc,
    /// The lengths are impossible (shorter than the framing, headers past
    /// the payload) or over [`MAX_MESSAGE_BYTES`].
    Length,
    /// A header is cut short or has an unknown value type.
    Header,
}

/// Cuts the bytes of a stream, however they are split, into messages.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buffer: BytesMut,
}

impl Decoder {
    /// Adds bytes read from the stream.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete message, `None` until one is complete.
    ///
    /// # Errors
    ///
    /// When the bytes cannot be a message: the stream is broken and the
    /// decoder is of no further use.
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if self.buffer.len() < 12 {
            return Ok(None);
        }
        let total = be_u32(&self.buffer[0..4]) as usize;
        let headers_len = be_u32(&self.buffer[4..8]) as usize;
        if crc32(&self.buffer[0..8]) != be_u32(&self.buffer[8..12]) {
            return Err(DecodeError::PreludeCrc);
        }
        if !(OVERHEAD..=MAX_MESSAGE_BYTES).contains(&total) || headers_len > total - OVERHEAD {
            return Err(DecodeError::Length);
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(total).freeze();
        if crc32(&frame[..total - 4]) != be_u32(&frame[total - 4..]) {
            return Err(DecodeError::MessageCrc);
        }
        frame.truncate(total - 4);
        frame.advance(12);
        let headers = frame.split_to(headers_len);
        let mut message = read_headers(&headers)?;
        message.payload = frame;
        Ok(Some(message))
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Reads the headers, keeping the string ones the translation uses.
fn read_headers(mut bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut message = Message::default();
    while !bytes.is_empty() {
        let name_len = usize::from(bytes[0]);
        let name = bytes.get(1..=name_len).ok_or(DecodeError::Header)?;
        let kind = *bytes.get(1 + name_len).ok_or(DecodeError::Header)?;
        bytes = &bytes[2 + name_len..];
        // Fixed sizes by type: bool true/false, byte, short, int, long,
        // (bytes, string: u16 length), timestamp, uuid.
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
        let value = match fixed {
            Some(size) => bytes.get(..size).ok_or(DecodeError::Header)?,
            None => {
                let len = bytes.get(..2).ok_or(DecodeError::Header)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                bytes = &bytes[2..];
                bytes.get(..len).ok_or(DecodeError::Header)?
            }
        };
        bytes = &bytes[value.len()..];
        if kind != 7 {
            continue;
        }
        let value = || Some(String::from_utf8_lossy(value).into_owned());
        match name {
            b":message-type" => message.message_type = value(),
            b":event-type" => message.event_type = value(),
            b":exception-type" => message.exception_type = value(),
            b":error-code" => message.error_code = value(),
            b":error-message" => message.error_message = value(),
            _ => {}
        }
    }
    Ok(message)
}

/// CRC-32 (IEEE 802.3, the polynomial the event stream uses), one table
/// lookup per byte: event messages are small, and the table is built at
/// compile time.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = CRC_TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}
