//! The stream normalizer: pure logic over byte chunks, no I/O and no time.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use tollgate_core::sse::{EventSplitter, Frame, SseParser};

use crate::reshape::{Reshaped, reshape};

/// The room of each buffer reshaped events are written into (see
/// [`Scratch`]).
const SCRATCH_CAPACITY: usize = 8 * 1024;

/// Normalizes an OpenRouter event stream chunk by chunk, into whole events.
///
/// Chunks are cut at event boundaries (with core's [`EventSplitter`]): half
/// an event is held back until its end arrives, and never forwarded. Every
/// event that goes on comes out of [`next_event`](Self::next_event) on its
/// own — the body hands each out as a frame and publishes it in the
/// response's `SharedEvents`, so that the layers above take it whole instead
/// of splitting the stream again. Per event:
///
/// - a comment (`: OPENROUTER PROCESSING`) or an event without data is
///   dropped before the first data event — it would reach the client at the
///   same moment as that event, so it keeps nothing alive — and forwarded
///   unchanged after it, where it keeps an idle stream and the proxies on
///   its way alive;
/// - a data event whose JSON needs reshaping (see `reshape`) is written back
///   as one `data:` line, into a reused buffer; every other event — `[DONE]`,
///   an OpenAI-shaped chunk — is forwarded as the bytes it came in, a slice
///   of the chunk: no copy;
/// - an error event stops the stream: [`Step::Error`] hands back its data
///   (the events before it still come out of `next_event`), and the
///   normalizer ignores whatever comes after.
#[derive(Debug)]
pub(crate) struct StreamNormalizer {
    splitter: EventSplitter,
    scratch: Scratch,
    /// The events pushed and not yet taken. The body takes them all before
    /// it pushes the next chunk, so this holds at most one chunk's events,
    /// and keeps its room from chunk to chunk.
    ready: VecDeque<Bytes>,
    saw_data: bool,
    strip_lf: bool,
    stopped: bool,
}

/// What one chunk did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Its events, if it completed any, wait in
    /// [`next_event`](StreamNormalizer::next_event).
    Events,
    /// A data event carried an error; `data` is its data. The events before
    /// it wait in `next_event`.
    Error { data: Bytes },
    /// An event grew past the splitter's limit; the stream cannot be trusted
    /// from here on. The events before it wait in `next_event`.
    Overflow,
}

impl StreamNormalizer {
    pub(crate) fn new() -> Self {
        StreamNormalizer {
            splitter: EventSplitter::new(),
            scratch: Scratch::new(),
            ready: VecDeque::new(),
            saw_data: false,
            strip_lf: false,
            stopped: false,
        }
    }

    /// Whether a data event other than an error has gone by: from then on
    /// the stream has content.
    pub(crate) fn saw_data(&self) -> bool {
        self.saw_data
    }

    /// The next whole event to forward, in order.
    pub(crate) fn next_event(&mut self) -> Option<Bytes> {
        self.ready.pop_front()
    }

    /// Whether events wait in [`next_event`](Self::next_event).
    pub(crate) fn has_events(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Normalizes one chunk.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Step {
        self.push_inner(chunk, false)
    }

    /// Normalizes one chunk up to the first data event (other than an
    /// error) and stops there; the events after it wait, and come out of the
    /// next [`push`](Self::push) — of an empty chunk if need be.
    ///
    /// This is where a stream is committed: an error event before that
    /// point becomes an HTTP error, one after it an error event in the
    /// stream. Stopping there, rather than at the end of the chunk the data
    /// event came in, makes the outcome depend on the order of events only,
    /// never on how the network cut them into chunks.
    pub(crate) fn push_first(&mut self, chunk: Bytes) -> Step {
        self.push_inner(chunk, true)
    }

    fn push_inner(&mut self, chunk: Bytes, stop_at_data: bool) -> Step {
        if self.stopped {
            return Step::Events;
        }
        let StreamNormalizer {
            splitter,
            scratch,
            ready,
            saw_data,
            strip_lf,
            stopped,
        } = self;
        let mut events = splitter.push(chunk);
        for mut event in events.by_ref() {
            // A chunk that ended on the CR of a CRLF ended the event there;
            // its LF starts this one. When that event was rewritten with its
            // own line ending, the LF is left over: drop it.
            if std::mem::take(strip_lf) && event.first() == Some(&b'\n') {
                event.advance(1);
            }
            let Some(data) = data_of(&event) else {
                if *saw_data {
                    ready.push_back(event);
                }
                continue;
            };
            if !is_json_object(data.bytes(&event)) {
                ready.push_back(event);
            } else {
                match scratch.reshape_event(data.bytes(&event), event.len()) {
                    Reshaped::Written => {
                        *strip_lf = event.ends_with(b"\r");
                        ready.push_back(scratch.take());
                    }
                    Reshaped::Unchanged => ready.push_back(event),
                    Reshaped::Error => {
                        *stopped = true;
                        return Step::Error {
                            data: data.into_bytes(&event),
                        };
                    }
                }
            }
            *saw_data = true;
            if stop_at_data {
                break;
            }
        }
        drop(events);
        if splitter.overflowed() {
            *stopped = true;
            return Step::Overflow;
        }
        Step::Events
    }
}

/// Where reshaped events are written: two buffers, taken in turn.
///
/// Each reshaped event is split off the front of the current buffer and
/// handed out as a frame; once every frame of a buffer has been dropped,
/// `BytesMut` writes into the same allocation again. One buffer would not
/// do: the response's `SharedEvents` keeps the last event published alive
/// until the next one is, and that event is often in the current buffer,
/// which could then never be taken back when it fills up — a new one would
/// be allocated every few kilobytes. So when the current buffer is full, the
/// other one, whose frames are gone by then, takes its place.
#[derive(Debug)]
struct Scratch {
    current: BytesMut,
    /// Empty until the current buffer first fills up.
    spare: BytesMut,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            current: BytesMut::with_capacity(SCRATCH_CAPACITY),
            spare: BytesMut::new(),
        }
    }

    /// Writes the event with data `data`, reshaped, when it needs it
    /// ([`Reshaped::Written`]: [`take`](Self::take) it). `len` is the
    /// event's length, about that of its rewrite (which drops fields, and
    /// seldom adds any).
    fn reshape_event(&mut self, data: &[u8], len: usize) -> Reshaped {
        self.make_room(len);
        let out = &mut self.current;
        out.extend_from_slice(b"data: ");
        let reshaped = reshape(data, out);
        if reshaped == Reshaped::Written {
            out.extend_from_slice(b"\n\n");
        } else {
            out.clear();
        }
        reshaped
    }

    /// The event last written.
    fn take(&mut self) -> Bytes {
        self.current.split().freeze()
    }

    fn make_room(&mut self, len: usize) {
        // Nothing is left in the buffer between events: its capacity is
        // the room left.
        if self.current.capacity() - self.current.len() >= len {
            return;
        }
        let room = SCRATCH_CAPACITY.max(len);
        if !self.spare.try_reclaim(room) {
            // Its frames are still out (a writer that holds them longer):
            // a new buffer rather than wait; the old one goes with them.
            self.spare = BytesMut::with_capacity(room);
        }
        std::mem::swap(&mut self.current, &mut self.spare);
    }
}
/// The data of an event: where it lies in the event, or (for an event of
/// another form) a copy.
enum Data {
    In(std::ops::Range<usize>),
    Joined(Bytes),
}

impl Data {
    fn bytes<'a>(&'a self, event: &'a [u8]) -> &'a [u8] {
        match self {
            Data::In(range) => &event[range.clone()],
            Data::Joined(data) => data,
        }
    }

    fn into_bytes(self, event: &Bytes) -> Bytes {
        match self {
            Data::In(range) => event.slice(range),
            Data::Joined(data) => data,
        }
    }
}

/// The data of an event, or `None` for a comment or an event without data.
///
/// The usual `data: {...}\n\n` is read in place; anything else with a
/// `data` line (several of them, other fields, comment lines inside the
/// event) goes through core's parser.
fn data_of(event: &[u8]) -> Option<Data> {
    if let Some(rest) = event.strip_prefix(b"data:") {
        let start = 5 + usize::from(rest.first() == Some(&b' '));
        // The event ends with its line's ending and the blank line; with no
        // other line break before those, it is a single line. (`contains`
        // on bytes is a word-at-a-time `memchr`: this is the hot path.)
        let trailing = event
            .iter()
            .rev()
            .take_while(|b| **b == b'\n' || **b == b'\r')
            .count();
        let end = event.len() - trailing;
        if let Some(line) = event.get(start..end)
            && !line.contains(&b'\n')
            && !line.contains(&b'\r')
        {
            return Some(Data::In(start..end));
        }
    } else if !has_data_line(event) {
        // Comments (the keep-alive case) or fields without data: no event.
        return None;
    }
    let mut parser = SseParser::new();
    parser.push(Bytes::copy_from_slice(event));
    while let Ok(Some(frame)) = parser.next_frame() {
        if let Frame::Event(event) = frame {
            return Some(Data::Joined(event.data));
        }
    }
    None
}

fn has_data_line(event: &[u8]) -> bool {
    event.starts_with(b"data")
        || event
            .windows(5)
            .any(|w| (w[0] == b'\n' || w[0] == b'\r') && w[1..] == *b"data")
}

fn is_json_object(data: &[u8]) -> bool {
    data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COMMENT: &str = ": OPENROUTER PROCESSING\n\n";
    const CHUNK: &str = "data: {\"id\":\"g\",\"provider\":\"P\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null,\"native_finish_reason\":null}]}\n\n";
    const CLEAN: &str = "data: {\"id\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
    const OPENAI: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";
    const ERROR: &str = "data: {\"error\":{\"code\":429,\"message\":\"x\"}}\n\n";

    /// The events waiting after a push.
    fn taken(normalizer: &mut StreamNormalizer) -> Vec<Bytes> {
        std::iter::from_fn(|| normalizer.next_event()).collect()
    }

    /// The events of a chunk that ended no stream.
    fn forward(normalizer: &mut StreamNormalizer, chunk: Bytes) -> Vec<Bytes> {
        assert_eq!(normalizer.push(chunk), Step::Events);
        taken(normalizer)
    }

    fn run(chunks: &[&str]) -> Vec<Bytes> {
        let mut normalizer = StreamNormalizer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(forward(
                &mut normalizer,
                Bytes::copy_from_slice(chunk.as_bytes()),
            ));
        }
        out
    }

    #[test]
    fn comments_are_dropped_before_the_first_data_event_and_kept_after() {
        let out = run(&[
            COMMENT,
            &format!("{COMMENT}{CHUNK}{COMMENT}"),
            COMMENT,
            DONE,
        ]);
        assert_eq!(out, [CLEAN, COMMENT, COMMENT, DONE]);
    }

    #[test]
    fn unchanged_events_are_not_copied() {
        let mut normalizer = StreamNormalizer::new();
        let input = Bytes::from(format!("{COMMENT}{OPENAI}{DONE}"));
        let out = forward(&mut normalizer, input.clone());
        assert_eq!(out, [OPENAI, DONE]);
        assert_eq!(out[0].as_ptr(), input[COMMENT.len()..].as_ptr());
        assert_eq!(
            out[1].as_ptr(),
            input[COMMENT.len() + OPENAI.len()..].as_ptr()
        );
    }

    #[test]
    fn unchanged_events_around_a_reshaped_one_keep_their_place() {
        let input = Bytes::from(format!("{OPENAI}{COMMENT}{CHUNK}{OPENAI}{DONE}"));
        let out = forward(&mut StreamNormalizer::new(), input.clone());
        assert_eq!(out, [OPENAI, COMMENT, CLEAN, OPENAI, DONE]);
        // Only the reshaped event is a copy.
        let at = |part: &Bytes| part.as_ptr() as usize - input.as_ptr() as usize;
        assert_eq!(at(&out[1]), OPENAI.len());
        assert_eq!(at(&out[3]), OPENAI.len() + COMMENT.len() + CHUNK.len());
    }

    #[test]
    fn priming_stops_after_the_first_data_event_and_the_rest_follows() {
        let mut normalizer = StreamNormalizer::new();
        let step = normalizer.push_first(Bytes::from(format!("{COMMENT}{CHUNK}{CHUNK}{ERROR}")));
        assert_eq!(step, Step::Events);
        assert_eq!(taken(&mut normalizer), [CLEAN]);
        assert!(normalizer.saw_data());
        assert!(matches!(normalizer.push(Bytes::new()), Step::Error { .. }));
        assert_eq!(taken(&mut normalizer), [CLEAN]);
    }

    #[test]
    fn reshaped_events_take_turns_in_two_allocations_while_the_last_is_kept() {
        // The body publishes every event it hands out, and the published
        // event stays alive until the next is: `last` stands for it. The
        // others are dropped, as a server does once it has written them.
        // Every reshaped event is then written into one of the same two
        // buffers: no allocation per event or per chunk.
        let mut normalizer = StreamNormalizer::new();
        let mut buffers: Vec<usize> = Vec::new();
        let mut last = Bytes::new();
        let two = Bytes::from(format!("{CHUNK}{CHUNK}"));
        for _ in 0..5_000 {
            for event in forward(&mut normalizer, two.clone()) {
                assert_eq!(event, CLEAN);
                let at = event.as_ptr() as usize;
                if !buffers
                    .iter()
                    .any(|b| (*b..b + SCRATCH_CAPACITY).contains(&at))
                {
                    buffers.push(at);
                }
                last = event;
            }
        }
        assert_eq!(last, CLEAN);
        assert_eq!(buffers.len(), 2, "{buffers:?}");
    }

    #[test]
    fn multi_line_events_are_parsed_and_rewritten_as_one_line() {
        let event = "event: message\r\ndata: {\"provider\":\"P\",\r\ndata: \"id\":\"g\"}\r\n\r\n";
        assert_eq!(run(&[event]), ["data: {\"id\":\"g\"}\n\n"]);
    }

    #[test]
    fn an_error_event_stops_the_stream_after_the_events_before_it() {
        let mut normalizer = StreamNormalizer::new();
        let step = normalizer.push(Bytes::from(format!("{CHUNK}{ERROR}{CHUNK}")));
        assert_eq!(
            step,
            Step::Error {
                data: Bytes::from_static(b"{\"error\":{\"code\":429,\"message\":\"x\"}}"),
            }
        );
        assert_eq!(taken(&mut normalizer), [CLEAN]);
        assert!(forward(&mut normalizer, Bytes::from_static(b"data: 1\n\n")).is_empty());

        let mut normalizer = StreamNormalizer::new();
        let step = normalizer.push(Bytes::from(format!("{COMMENT}{ERROR}")));
        assert!(matches!(step, Step::Error { .. }));
        assert!(!normalizer.has_events());
        assert!(!normalizer.saw_data());
    }

    #[test]
    fn an_oversized_event_stops_the_stream() {
        let mut normalizer = StreamNormalizer::new();
        let huge = Bytes::from(vec![b'x'; EventSplitter::DEFAULT_MAX_EVENT_LEN + 1]);
        let mut first = BytesMut::from(CLEAN);
        first.extend_from_slice(b"data: ");
        assert_eq!(forward(&mut normalizer, first.freeze()), [CLEAN]);
        assert_eq!(normalizer.push(huge), Step::Overflow);
        assert!(!normalizer.has_events());
        assert!(forward(&mut normalizer, Bytes::from_static(DONE.as_bytes())).is_empty());
    }

    fn stream() -> String {
        format!(
            "{COMMENT}{COMMENT}{CHUNK}{CHUNK}{COMMENT}{OPENAI}data: {{\"provider\":\"P\",\"id\":\"\u{e9}\\\"\"}}\r\n\r\ndata: {{\"provider\":\"P\",\"id\":\"r\"}}\r\r{OPENAI}{DONE}"
        )
    }

    proptest! {
        /// However the network cuts the stream, the events out are the
        /// same: the normalizer only ever acts on whole events.
        #[test]
        fn output_does_not_depend_on_chunking(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
            let input = stream();
            let whole = run(&[&input]);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
            at.sort_unstable();
            at.dedup();
            let bytes = input.as_bytes();
            let mut normalizer = StreamNormalizer::new();
            let mut out = Vec::new();
            let mut last = 0;
            for cut in at.into_iter().chain([input.len()]) {
                let chunk = Bytes::copy_from_slice(&bytes[last..cut]);
                out.extend(forward(&mut normalizer, chunk));
                last = cut;
            }
            prop_assert_eq!(out.concat(), whole.concat());
        }
    }
}
