use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::{Event, Frame, SseError};

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// An incremental parser for `text/event-stream` bodies.
///
/// Feed it body chunks with [`push`](Self::push) as they arrive and drain
/// frames with [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
/// When the body ends, drain with [`finish`](Self::finish) instead, which
/// reports a stream cut in the middle of an event.
///
/// Parsing follows the WHATWG [event stream interpretation] on bytes: lines
/// end in `\r\n`, `\n` or `\r` (a `\r\n` split across two chunks is still one
/// line ending), a leading byte-order mark is dropped, and field values are
/// not decoded as UTF-8 (see [`Event`]).
///
/// # Copies
///
/// A line that lies within one chunk is handed out as a [`Bytes::slice`] of
/// that chunk, so the usual `data: {...}\n\n` event costs no copy of its
/// payload. Only the start of a line that spans chunks is copied, into a
/// buffer that never holds more than one line, and an event with several
/// `data` lines is joined into a fresh buffer.
///
/// # Errors
///
/// Errors are sticky: once [`next_frame`](Self::next_frame) has returned
/// [`SseError::LineTooLong`], the parser drops its buffers, ignores further
/// input and keeps returning that error.
///
/// [event stream interpretation]: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
pub struct SseParser {
    /// Input not yet scanned. The front chunk may be partly consumed.
    chunks: VecDeque<Bytes>,
    /// The start of a line whose end has not arrived yet.
    line: BytesMut,
    max_line_len: usize,
    /// Bytes of a leading BOM matched so far; `None` once past the start.
    bom: Option<usize>,
    /// The last line ended in `\r` at the very end of the input seen so far,
    /// so a `\n` starting the next chunk belongs to that line ending.
    skip_lf: bool,
    /// A field line has been seen since the last blank line.
    in_event: bool,
    event: Option<Bytes>,
    data: Data,
    id: Option<Bytes>,
    retry: Option<u64>,
    last_event_id: Option<Bytes>,
    reconnection_time: Option<u64>,
    failed: bool,
}

/// The data buffer of the event being built.
///
/// Most events have one `data` line; keeping it as the slice it arrived in
/// is what makes them zero-copy.
#[derive(Default)]
enum Data {
    #[default]
    None,
    One(Bytes),
    Many(BytesMut),
}

impl SseParser {
    /// The line length limit of [`SseParser::new`]: 8 MiB.
    ///
    /// Text deltas are a few hundred bytes, but image outputs arrive as one
    /// base64 `data` line of several megabytes. The limit is a guard against
    /// a runaway upstream, not a protocol rule; text-only deployments can
    /// choose a tighter one with [`with_max_line_len`](Self::with_max_line_len).
    pub const DEFAULT_MAX_LINE_LEN: usize = 8 * 1024 * 1024;

    /// A parser with the [default line length limit](Self::DEFAULT_MAX_LINE_LEN).
    pub fn new() -> Self {
        Self::with_max_line_len(Self::DEFAULT_MAX_LINE_LEN)
    }

    /// A parser that fails with [`SseError::LineTooLong`] on any line longer
    /// than `max` bytes, not counting its line ending.
    pub fn with_max_line_len(max: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            line: BytesMut::new(),
            max_line_len: max,
            bom: Some(0),
            skip_lf: false,
            in_event: false,
            event: None,
            data: Data::None,
            id: None,
            retry: None,
            last_event_id: None,
            reconnection_time: None,
            failed: false,
        }
    }

    /// The line length limit, in bytes.
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    /// Queues a chunk of input.
    ///
    /// This only stores the chunk; scanning happens in
    /// [`next_frame`](Self::next_frame), so callers should drain frames after
    /// each push rather than push a whole body first.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() && !self.failed {
            self.chunks.push_back(chunk);
        }
    }

    /// The next complete frame, or `Ok(None)` when more input is needed.
    ///
    /// # Errors
    ///
    /// [`SseError::LineTooLong`] when a line, complete or not, exceeds the
    /// limit.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SseError> {
        if self.failed {
            return Err(self.too_long());
        }
        while let Some(line) = self.next_line()? {
            if let Some(frame) = self.process_line(&line) {
                return Ok(Some(frame));
            }
        }
        Ok(None)
    }

    /// Drains the remaining frames once the input has ended.
    ///
    /// Call it in a loop like [`next_frame`](Self::next_frame): it yields the
    /// frames still buffered, then `Ok(None)` if the stream ended cleanly.
    ///
    /// # Errors
    ///
    /// [`SseError::Truncated`] if the input stopped inside an event (fields
    /// seen but no blank line yet) or inside a line. As the spec requires,
    /// that partial event is discarded, so a following call returns
    /// `Ok(None)`. Also [`SseError::LineTooLong`], as for `next_frame`.
    pub fn finish(&mut self) -> Result<Option<Frame>, SseError> {
        if let Some(frame) = self.next_frame()? {
            return Ok(Some(frame));
        }
        let mid_bom = matches!(self.bom, Some(n) if n > 0);
        if self.in_event || !self.line.is_empty() || mid_bom {
            self.line.clear();
            self.bom = None;
            self.reset_event();
            return Err(SseError::Truncated);
        }
        Ok(None)
    }

    /// The spec's last event ID: the value of the most recent valid `id`
    /// field, kept across events. A reconnecting client sends it back in the
    /// `Last-Event-ID` header.
    pub fn last_event_id(&self) -> Option<&Bytes> {
        self.last_event_id.as_ref()
    }

    /// The spec's reconnection time: the most recent valid `retry` value,
    /// including one in a block that was never dispatched for lack of data.
    pub fn reconnection_time(&self) -> Option<Duration> {
        self.reconnection_time.map(Duration::from_millis)
    }

    /// The next complete line, without its line ending.
    fn next_line(&mut self) -> Result<Option<Bytes>, SseError> {
        if self.bom.is_some() && !self.skip_bom() {
            return Ok(None);
        }
        while let Some(chunk) = self.chunks.front_mut() {
            if self.skip_lf {
                self.skip_lf = false;
                if chunk[0] == b'\n' {
                    chunk.advance(1);
                    if chunk.is_empty() {
                        self.chunks.pop_front();
                        continue;
                    }
                }
            }

            let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') else {
                // No line end in this chunk: keep its tail, but never more
                // than one line's worth.
                if self.line.len() + chunk.len() > self.max_line_len {
                    return Err(self.fail());
                }
                self.line.extend_from_slice(chunk);
                self.chunks.pop_front();
                continue;
            };

            if self.line.len() + end > self.max_line_len {
                return Err(self.fail());
            }
            let line = if self.line.is_empty() {
                chunk.split_to(end)
            } else {
                self.line.extend_from_slice(&chunk[..end]);
                chunk.advance(end);
                self.line.split().freeze()
            };
            let cr = chunk[0] == b'\r';
            chunk.advance(1);
            if cr {
                match chunk.first() {
                    Some(b'\n') => chunk.advance(1),
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if chunk.is_empty() {
                self.chunks.pop_front();
            }
            return Ok(Some(line));
        }
        Ok(None)
    }

    /// Consumes a leading BOM, byte by byte since it may be split across
    /// chunks. Returns `false` if more input is needed to decide.
    fn skip_bom(&mut self) -> bool {
        while let Some(matched) = self.bom {
            if matched == BOM.len() {
                self.bom = None;
                break;
            }
            let Some(chunk) = self.chunks.front_mut() else {
                return false;
            };
            if chunk[0] == BOM[matched] {
                chunk.advance(1);
                if chunk.is_empty() {
                    self.chunks.pop_front();
                }
                self.bom = Some(matched + 1);
            } else {
                // Not a BOM after all: the bytes taken so far start the first line.
                self.line.extend_from_slice(&BOM[..matched]);
                self.bom = None;
            }
        }
        true
    }

    fn process_line(&mut self, line: &Bytes) -> Option<Frame> {
        if line.is_empty() {
            return self.dispatch();
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return Some(Frame::Comment(strip_space(line.slice(1..)))),
            Some(colon) => (&line[..colon], strip_space(line.slice(colon + 1..))),
            None => (&line[..], Bytes::new()),
        };
        self.in_event = true;
        match name {
            b"data" => {
                self.data = match std::mem::take(&mut self.data) {
                    Data::None => Data::One(value),
                    Data::One(first) => {
                        let mut joined = BytesMut::with_capacity(first.len() + 1 + value.len());
                        joined.extend_from_slice(&first);
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&value);
                        Data::Many(joined)
                    }
                    Data::Many(mut joined) => {
                        joined.extend_from_slice(b"\n");
                        joined.extend_from_slice(&value);
                        Data::Many(joined)
                    }
                }
            }
            b"event" => self.event = Some(value),
            // An id containing NUL is ignored, as the spec requires.
            b"id" if !value.contains(&0) => {
                self.last_event_id = Some(value.clone());
                self.id = Some(value);
            }
            b"retry" => {
                if let Some(ms) = parse_retry(&value) {
                    self.retry = Some(ms);
                    self.reconnection_time = Some(ms);
                }
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Frame> {
        self.in_event = false;
        let event = self.event.take();
        let id = self.id.take();
        let retry = self.retry.take();
        let data = match std::mem::take(&mut self.data) {
            // No `data` field: the spec ends the block without an event.
            Data::None => return None,
            Data::One(data) => data,
            Data::Many(data) => data.freeze(),
        };
        Some(Frame::Event(Event {
            event,
            data,
            id,
            retry,
        }))
    }

    fn reset_event(&mut self) {
        self.in_event = false;
        self.event = None;
        self.data = Data::None;
        self.id = None;
        self.retry = None;
    }

    fn fail(&mut self) -> SseError {
        self.failed = true;
        self.chunks = VecDeque::new();
        self.line = BytesMut::new();
        self.reset_event();
        self.too_long()
    }

    fn too_long(&self) -> SseError {
        SseError::LineTooLong {
            max: self.max_line_len,
        }
    }
}

/// A `retry` value: ASCII digits only, as the spec requires (`str::parse`
/// would also take a leading `+`). Values past `u64` are ignored.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |ms, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        ms.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Drops the one optional space after a field's colon.
fn strip_space(mut value: Bytes) -> Bytes {
    if value.first() == Some(&b' ') {
        value.advance(1);
    }
    value
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SseParser {
    // Derived output would print every buffered byte.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseParser")
            .field(
                "buffered",
                &self.chunks.iter().map(Bytes::len).sum::<usize>(),
            )
            .field("partial_line", &self.line.len())
            .field("in_event", &self.in_event)
            .field("max_line_len", &self.max_line_len)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
