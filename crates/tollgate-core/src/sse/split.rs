//! [`EventSplitter`]: finds where events end in a byte stream, without
//! parsing them.

use bytes::{Bytes, BytesMut};

/// Splits a stream of chunks into raw events — each a run of lines ended by a
/// blank line, as the bytes came — across chunk boundaries and for every line
/// ending the spec allows (`\n`, `\r`, `\r\n`).
///
/// Layers that forward a stream use it to cut only at event boundaries, and
/// layers that watch one use it to find the few events they must parse: an
/// event inside one chunk is a zero-copy slice of that chunk; only the
/// incomplete end of a chunk is copied, to be completed by the next.
///
/// ```
/// use bytes::Bytes;
/// use tollgate_core::sse::EventSplitter;
///
/// let mut splitter = EventSplitter::new();
/// let events: Vec<Bytes> = splitter.push(Bytes::from_static(b"data: 1\n\ndata: 2\r\n")).collect();
/// assert_eq!(events, ["data: 1\n\n"]);
/// let events: Vec<Bytes> = splitter.push(Bytes::from_static(b"\r\n")).collect();
/// assert_eq!(events, ["data: 2\r\n\r\n"]);
/// assert_eq!(splitter.pending(), 0);
/// ```
#[derive(Debug)]
pub struct EventSplitter {
    at_line_start: bool,
    last_cr: bool,
    tail: BytesMut,
    scan_from: usize,
    max_event_len: usize,
    overflowed: bool,
}

impl Default for EventSplitter {
    fn default() -> Self {
        EventSplitter::new()
    }
}

impl EventSplitter {
    /// The default bound on an incomplete event held back, in bytes (8 MiB,
    /// the parser's line limit: image outputs send one large data line).
    pub const DEFAULT_MAX_EVENT_LEN: usize = 8 * 1024 * 1024;

    /// A splitter at the start of a stream.
    pub fn new() -> Self {
        EventSplitter::with_max_event_len(Self::DEFAULT_MAX_EVENT_LEN)
    }

    /// A splitter that gives up on an event longer than `max` bytes (see
    /// [`overflowed`](Self::overflowed)).
    pub fn with_max_event_len(max: usize) -> Self {
        EventSplitter {
            at_line_start: true,
            last_cr: false,
            tail: BytesMut::new(),
            scan_from: 0,
            max_event_len: max,
            overflowed: false,
        }
    }

    /// Adds a chunk; the returned iterator yields the events it completes.
    ///
    /// Whatever the iterator has not yielded when it is dropped — an
    /// incomplete event, or events after an early stop — is held back and
    /// comes first in the next push.
    pub fn push(&mut self, chunk: Bytes) -> Events<'_> {
        let buf = if self.tail.is_empty() {
            chunk
        } else {
            self.tail.extend_from_slice(&chunk);
            self.tail.split().freeze()
        };
        let pos = std::mem::take(&mut self.scan_from);
        Events {
            splitter: self,
            buf,
            pos,
            event_start: 0,
        }
    }

    /// Takes up after a whole event that reached the reader another way (a
    /// layer below split it): the next byte starts an event, and is the LF
    /// of a CR LF when that event ended with `ended_cr`.
    pub(crate) fn after_event(&mut self, ended_cr: bool) {
        self.at_line_start = true;
        self.last_cr = ended_cr;
    }

    /// Bytes held back: the start of an event not yet complete.
    pub fn pending(&self) -> usize {
        self.tail.len()
    }

    /// Whether an incomplete event grew past the limit. Its bytes were
    /// dropped; the stream cannot be trusted from there on.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The offset just past the next event boundary at or after `*pos`, or
    /// `None` when `buf` has none left; `*pos` advances past what was read.
    fn next_boundary(&mut self, buf: &[u8], pos: &mut usize) -> Option<usize> {
        while *pos < buf.len() {
            // Skip to the next line ending at once (SIMD): every byte in
            // between is an ordinary one, which ends any CR-LF pair and
            // means the line is not empty.
            match memchr::memchr2(b'\n', b'\r', &buf[*pos..]) {
                Some(0) => {}
                Some(skipped) => {
                    *pos += skipped;
                    self.last_cr = false;
                    self.at_line_start = false;
                }
                None => {
                    self.last_cr = false;
                    self.at_line_start = false;
                    *pos = buf.len();
                    return None;
                }
            }
            let byte = buf[*pos];
            *pos += 1;
            if byte == b'\n' && self.last_cr {
                self.last_cr = false;
                continue;
            }
            self.last_cr = byte == b'\r';
            if self.at_line_start {
                if byte == b'\r' && buf.get(*pos) == Some(&b'\n') {
                    *pos += 1;
                    self.last_cr = false;
                }
                return Some(*pos);
            }
            self.at_line_start = true;
        }
        None
    }
}

/// The events one [`EventSplitter::push`] completes, in order, each with its
/// own blank line.
#[derive(Debug)]
pub struct Events<'a> {
    splitter: &'a mut EventSplitter,
    buf: Bytes,
    pos: usize,
    event_start: usize,
}

impl Events<'_> {
    /// Every event yielded so far, as one contiguous slice of the input.
    pub fn yielded(&self) -> Bytes {
        self.buf.slice(..self.event_start)
    }
}

impl Iterator for Events<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let end = self.splitter.next_boundary(&self.buf, &mut self.pos)?;
        let event = self.buf.slice(self.event_start..end);
        self.event_start = end;
        Some(event)
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        let rest = &self.buf[self.event_start..];
        if rest.len() > self.splitter.max_event_len {
            self.splitter.overflowed = true;
            self.splitter.at_line_start = true;
            self.splitter.last_cr = false;
            return;
        }
        self.splitter.tail.extend_from_slice(rest);
        self.splitter.scan_from = self.pos - self.event_start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&'static [u8]]) -> (Vec<Bytes>, usize) {
        let mut splitter = EventSplitter::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(splitter.push(Bytes::from_static(chunk)));
        }
        (events, splitter.pending())
    }

    #[test]
    fn every_line_ending_ends_events() {
        assert_eq!(
            split(&[b"data: a\n\ndata: b\n\n"]).0,
            ["data: a\n\n", "data: b\n\n"]
        );
        assert_eq!(
            split(&[b"data: a\r\rdata: b\r\r"]).0,
            ["data: a\r\r", "data: b\r\r"]
        );
        assert_eq!(
            split(&[b"data: a\r\n\r\ndata: b\r\n\r\n"]).0,
            ["data: a\r\n\r\n", "data: b\r\n\r\n"]
        );
        assert_eq!(
            split(&[b"data: a\ndata: b\n\n"]).0,
            ["data: a\ndata: b\n\n"]
        );
        assert_eq!(split(&[b": ping\n\n"]).0, [": ping\n\n"]);
    }

    #[test]
    fn events_complete_across_chunks() {
        assert_eq!(split(&[b"data: a\r", b"\n\r\n"]).0, ["data: a\r\n\r\n"]);
        assert_eq!(split(&[b"data: a\n", b"\n"]).0, ["data: a\n\n"]);
        // A CR ending a chunk ends the event at once; the LF after it is the
        // rest of that CRLF, held back as the start of the next event.
        assert_eq!(
            split(&[b"data: a\r\n\r", b"\n"]),
            (vec![Bytes::from_static(b"data: a\r\n\r")], 1)
        );
        let (events, pending) = split(&[b"da", b"ta: a", b"\n", b"\ndata: b\n\nda"]);
        assert_eq!(events, ["data: a\n\n", "data: b\n\n"]);
        assert_eq!(pending, 2);
    }

    #[test]
    fn an_early_stop_keeps_the_rest_for_the_next_push() {
        let mut splitter = EventSplitter::new();
        let mut events = splitter.push(Bytes::from_static(b"data: 1\n\ndata: 2\n\ndata: 3"));
        assert_eq!(events.next().unwrap(), "data: 1\n\n");
        assert_eq!(events.yielded(), "data: 1\n\n");
        drop(events);
        let rest: Vec<Bytes> = splitter.push(Bytes::from_static(b"\n\n")).collect();
        assert_eq!(rest, ["data: 2\n\n", "data: 3\n\n"]);
    }

    #[test]
    fn an_oversized_event_is_dropped_and_reported() {
        let mut splitter = EventSplitter::with_max_event_len(8);
        assert_eq!(splitter.push(Bytes::from_static(b"data: 12345")).count(), 0);
        assert!(splitter.overflowed());
        assert_eq!(splitter.pending(), 0);
    }

    #[test]
    fn whole_events_in_a_chunk_are_not_copied() {
        let chunk = Bytes::from_static(b"data: 1\n\ndata: 2\n\n");
        let mut splitter = EventSplitter::new();
        let events: Vec<Bytes> = splitter.push(chunk.clone()).collect();
        assert_eq!(events[1].as_ptr(), chunk[9..].as_ptr());
    }
}
