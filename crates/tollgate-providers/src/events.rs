//! [`TranslatedEvents`]: the OpenAI events a stream's translator wrote,
//! each kept apart from the next.

use std::collections::VecDeque;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tollgate_core::sse::DONE;

/// The buffer's first capacity. `BytesMut` remembers a buffer's size only
/// from 1 KiB up; a full buffer still shared with events handed out (the
/// one last published, at least) is replaced by one of that size, so a
/// buffer that started small would be replaced by one the size of the
/// next event, every event.
const FIRST_CAPACITY: usize = 4 * 1024;

/// The OpenAI events a stream's translator wrote and the layer has not yet
/// handed out, in order: one buffer, and the length of each event in it.
///
/// The layers above (cost, breaker, fallback) need a stream's events
/// whole. The translator knows where each event it writes ends, so it
/// records that here as it writes, and the layer's body hands out every
/// event as a frame of its own ([`pop`](Self::pop)) — published in the
/// response's [`SharedEvents`](tollgate_core::sse::SharedEvents) — without
/// searching the output for blank lines again.
///
/// Each event is split off the front of the buffer: once the frames
/// handed out are dropped the buffer's storage is reused, as is the queue
/// of lengths, so a stream in its steady state allocates nothing per
/// event.
pub struct TranslatedEvents {
    buffer: BytesMut,
    /// The length of each event in `buffer`, front first.
    lengths: VecDeque<usize>,
}

impl TranslatedEvents {
    /// No events.
    pub fn new() -> Self {
        TranslatedEvents {
            buffer: BytesMut::with_capacity(FIRST_CAPACITY),
            lengths: VecDeque::new(),
        }
    }

    /// Appends an event whose only field is `data` (see
    /// [`write_data`](tollgate_core::sse::write_data)).
    pub fn write_data(&mut self, data: &[u8]) {
        self.write_with(|buffer| tollgate_core::sse::write_data(buffer, data));
    }

    /// Appends `value` as one `data:` event. Compact JSON has no line
    /// breaks, so it goes out as written, with no copy in between.
    pub(crate) fn write_json(&mut self, value: &impl Serialize) {
        self.write_with(|buffer| {
            buffer.put_slice(b"data: ");
            // Serialising to memory fails only for maps with non-string
            // keys, which the OpenAI shapes do not have.
            let _ = serde_json::to_writer(buffer.writer(), value);
            buffer.put_slice(b"\n\n");
        });
    }

    /// Appends the end of an OpenAI stream, `data: [DONE]`.
    pub fn write_done(&mut self) {
        self.write_with(|buffer| buffer.put_slice(DONE));
    }

    /// Appends what `write` puts in the buffer, which must be exactly one
    /// whole event (its blank line included).
    fn write_with(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let start = self.buffer.len();
        write(&mut self.buffer);
        let length = self.buffer.len() - start;
        if length > 0 {
            self.lengths.push_back(length);
        }
    }

    /// Takes the first event, if there is one.
    pub fn pop(&mut self) -> Option<Bytes> {
        let length = self.lengths.pop_front()?;
        Some(self.buffer.split_to(length).freeze())
    }

    /// Whether there is no event.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// How many events there are.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Every event, back to back (what tests compare).
    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buffer
    }

    /// Takes every event, back to back (what tests compare).
    #[cfg(test)]
    pub(crate) fn take_all(&mut self) -> Bytes {
        self.lengths.clear();
        self.buffer.split().freeze()
    }
}

impl Default for TranslatedEvents {
    fn default() -> Self {
        TranslatedEvents::new()
    }
}

impl fmt::Debug for TranslatedEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TranslatedEvents")
            .field("events", &self.lengths.len())
            .field("bytes", &self.buffer.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_event_comes_out_whole_in_order() {
        let mut events = TranslatedEvents::new();
        events.write_json(&json!({"a": 1}));
        events.write_data(b"two\nlines");
        events.write_done();
        assert_eq!(events.len(), 3);
        assert_eq!(events.pop().unwrap(), "data: {\"a\":1}\n\n");
        assert_eq!(events.pop().unwrap(), "data: two\ndata: lines\n\n");
        assert_eq!(events.pop().unwrap(), "data: [DONE]\n\n");
        assert_eq!(events.pop(), None);
        assert!(events.is_empty());
    }

    #[test]
    fn the_buffer_is_reused_once_the_events_are_dropped() {
        let mut events = TranslatedEvents::new();
        let mut first = None;
        // 9,000 bytes: twice round the buffer.
        for _ in 0..1000 {
            events.write_data(b"x");
            let event = events.pop().unwrap();
            assert_eq!(event, "data: x\n\n");
            let start = *first.get_or_insert(event.as_ptr() as usize);
            let at = event.as_ptr() as usize;
            assert!((start..start + FIRST_CAPACITY).contains(&at));
        }
    }

    #[test]
    fn a_buffer_held_by_the_last_event_is_replaced_rarely() {
        // The event last published stays alive (the shared cell holds
        // it): a new buffer is needed only when one is full.
        let mut events = TranslatedEvents::new();
        let data = [b'x'; 92];
        let mut last = Bytes::new();
        let mut new_buffers = 0;
        for _ in 0..100 {
            events.write_data(&data);
            let event = events.pop().unwrap();
            assert_eq!(event.len(), 100);
            if last.as_ptr_range().end != event.as_ptr() {
                new_buffers += 1;
            }
            last = event;
        }
        // 10,000 bytes: the first buffer and two more.
        assert!(new_buffers <= 3, "{new_buffers} buffers");
    }
}
