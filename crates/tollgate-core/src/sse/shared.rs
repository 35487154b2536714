//! [`SharedEvents`] and [`EventReader`]: a stream's events split once for
//! every layer that watches it.

use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{EventSplitter, Events};

/// The whole SSE event a layer last handed out as one frame of a response's
/// body, shared by the layers that watch that body: a response extension.
///
/// Several layers watch the same stream (a circuit breaker, cost
/// accounting, a fallback cascade), and each needs its events whole. The
/// first of them to read the body — the innermost — splits the upstream's
/// chunks into events and hands each out as a frame of its own,
/// [publishing](Self::publish) it here; a layer above that receives a frame
/// which [is the event published](Self::is_published) takes it as one whole
/// event without splitting it again ([`EventReader`] does both).
///
/// Nothing is trusted that is not checked: a frame counts as published only
/// if it is the very buffer published (same address and length; the cell
/// keeps that buffer alive, so no other can take its place). A frame that a
/// layer in between rewrote, held back or cut differently is split by the
/// layer above as usual, so any layer, of Tollgate or not, may sit between
/// two watchers.
#[derive(Clone, Default)]
pub struct SharedEvents(Arc<Mutex<Bytes>>);

impl SharedEvents {
    /// A cell of its own, published to nobody else.
    pub fn new() -> Self {
        SharedEvents::default()
    }

    /// The cell of the response with these extensions, put there if no
    /// layer below did.
    pub fn of(extensions: &mut http::Extensions) -> Self {
        if let Some(shared) = extensions.get::<SharedEvents>() {
            return shared.clone();
        }
        let shared = SharedEvents::new();
        extensions.insert(shared.clone());
        shared
    }

    /// `event`, one whole event (its blank line included), is handed out
    /// now as a frame of its own.
    pub fn publish(&self, event: &Bytes) {
        // Nothing panics while the lock is held: a poisoned cell is only
        // ever stale, and a stale cell matches nothing new.
        if let Ok(mut last) = self.0.lock()
            && !same(&last, event)
        {
            *last = event.clone();
        }
    }

    /// Whether `frame` is the event last published.
    pub fn is_published(&self, frame: &Bytes) -> bool {
        !frame.is_empty() && self.0.lock().is_ok_and(|last| same(&last, frame))
    }
}

/// The same bytes of the same buffer.
fn same(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

impl fmt::Debug for SharedEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedEvents").finish_non_exhaustive()
    }
}

/// Finds the events in a body's frames: a frame that a layer below
/// published as one whole event is taken as it is; anything else goes
/// through an [`EventSplitter`].
///
/// ```
/// use bytes::Bytes;
/// use tollgate_core::sse::{EventReader, SharedEvents};
///
/// let shared = SharedEvents::new();
/// // The layer below split the upstream's chunk and hands out its first
/// // event as a frame.
/// let chunk = Bytes::from_static(b"data: 1\n\ndata: 2\n\n");
/// let first = chunk.slice(..9);
/// shared.publish(&first);
///
/// let mut reader = EventReader::new(Some(shared));
/// let events = reader.push(first.clone());
/// assert!(events.published());
/// assert_eq!(events.collect::<Vec<_>>(), [first]);
/// // A frame nobody published is split.
/// let events = reader.push(Bytes::from_static(b"data: 3\n\ndata: 4\n\n"));
/// assert!(!events.published());
/// assert_eq!(events.count(), 2);
/// ```
#[derive(Debug, Default)]
pub struct EventReader {
    splitter: EventSplitter,
    below: Option<SharedEvents>,
}

impl EventReader {
    /// A reader at the start of a stream, taking whole the events `below`
    /// publishes (the response's [`SharedEvents`]).
    pub fn new(below: Option<SharedEvents>) -> Self {
        EventReader {
            splitter: EventSplitter::new(),
            below,
        }
    }

    /// Reads a data frame; the returned iterator yields the events it
    /// completes, as [`EventSplitter::push`] does.
    pub fn push(&mut self, frame: Bytes) -> ReadEvents<'_> {
        if self.splitter.pending() == 0
            && self
                .below
                .as_ref()
                .is_some_and(|below| below.is_published(&frame))
        {
            self.splitter.after_event(frame.ends_with(b"\r"));
            return ReadEvents {
                kind: ReadKind::Published {
                    event: Some(frame.clone()),
                    frame,
                },
            };
        }
        ReadEvents {
            kind: ReadKind::Split(self.splitter.push(frame)),
        }
    }

    /// Bytes held back: the start of an event not yet complete.
    pub fn pending(&self) -> usize {
        self.splitter.pending()
    }

    /// Whether an incomplete event grew past the splitter's limit (see
    /// [`EventSplitter::overflowed`]).
    pub fn overflowed(&self) -> bool {
        self.splitter.overflowed()
    }

    /// The incomplete event the stream ended in, as it came (no blank line
    /// added), if there is one. The reader is back at the start of a
    /// stream.
    pub fn take_tail(&mut self) -> Option<Bytes> {
        let pending = self.splitter.pending();
        if pending == 0 {
            return None;
        }
        // Complete it with a blank line, and cut that off again.
        let tail = self
            .splitter
            .push(Bytes::from_static(b"\n\n"))
            .next()
            .map(|event| event.slice(..pending.min(event.len())));
        self.splitter = EventSplitter::new();
        tail
    }
}

/// The events one [`EventReader::push`] completes, in order, each with its
/// own blank line.
#[derive(Debug)]
pub struct ReadEvents<'a> {
    kind: ReadKind<'a>,
}

#[derive(Debug)]
enum ReadKind<'a> {
    Published { frame: Bytes, event: Option<Bytes> },
    Split(Events<'a>),
}

impl ReadEvents<'_> {
    /// Whether the frame was one whole event published below: it is
    /// yielded as it came, and forwarding it unchanged needs no publishing.
    pub fn published(&self) -> bool {
        matches!(self.kind, ReadKind::Published { .. })
    }

    /// Every event yielded so far, as one contiguous slice of the input.
    pub fn yielded(&self) -> Bytes {
        match &self.kind {
            ReadKind::Published { frame, event: None } => frame.clone(),
            ReadKind::Published { .. } => Bytes::new(),
            ReadKind::Split(events) => events.yielded(),
        }
    }
}

impl Iterator for ReadEvents<'_> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        match &mut self.kind {
            ReadKind::Published { event, .. } => event.take(),
            ReadKind::Split(events) => events.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_published_buffer_counts() {
        let shared = SharedEvents::new();
        let event = Bytes::from(b"data: 1\n\n".to_vec());
        shared.publish(&event);
        assert!(shared.is_published(&event));
        assert!(shared.is_published(&event.clone()));
        // Equal bytes elsewhere, or a part of the event, are not it.
        assert!(!shared.is_published(&Bytes::from(b"data: 1\n\n".to_vec())));
        assert!(!shared.is_published(&event.slice(..4)));
        assert!(!shared.is_published(&Bytes::new()));
    }

    #[test]
    fn a_published_frame_after_a_partial_one_is_split() {
        let shared = SharedEvents::new();
        let mut reader = EventReader::new(Some(shared.clone()));
        assert_eq!(reader.push(Bytes::from_static(b"data: a")).count(), 0);
        let event = Bytes::from_static(b"\n\n");
        shared.publish(&event);
        let events = reader.push(event);
        assert!(!events.published());
        assert_eq!(events.collect::<Vec<_>>(), ["data: a\n\n"]);
    }

    #[test]
    fn a_published_event_ending_in_cr_keeps_the_crlf_rule() {
        // The splitter cut "data: a\r\n\r" at its last CR; the LF after it
        // is the end of that CR LF, and starts the next event.
        let shared = SharedEvents::new();
        let mut reader = EventReader::new(Some(shared.clone()));
        let first = Bytes::from_static(b"data: a\r\n\r");
        shared.publish(&first);
        assert!(reader.push(first).published());
        let events: Vec<Bytes> = reader
            .push(Bytes::from_static(b"\ndata: b\r\n\r\n"))
            .collect();
        assert_eq!(events, ["\ndata: b\r\n\r\n"]);
    }

    #[test]
    fn a_tail_is_taken_as_it_came() {
        for tail in ["data: x", "data: x\r", "data: x\n", "da"] {
            let mut reader = EventReader::new(None);
            assert_eq!(
                reader
                    .push(Bytes::from(format!("data: 1\n\n{tail}")))
                    .count(),
                1
            );
            assert_eq!(reader.take_tail(), Some(Bytes::from(tail)), "{tail:?}");
            assert_eq!(reader.pending(), 0);
        }
        let mut reader = EventReader::new(None);
        assert_eq!(reader.take_tail(), None);
    }
}
