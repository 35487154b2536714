//! The stream normalizer: pure logic over byte chunks, no I/O and no time.

use bytes::{Bytes, BytesMut};
use tollgate_core::sse::{EventSplitter, Frame, SseParser};

use crate::reshape::{Reshaped, reshape};

/// The room reshaped events are written into. Each chunk's output is split
/// off the front; once the frames handed out before have been dropped,
/// `BytesMut` reuses the same allocation, so a stream costs no allocation
/// per chunk.
const SCRATCH_CAPACITY: usize = 8 * 1024;

/// Normalizes an OpenRouter event stream chunk by chunk.
///
/// Chunks are cut at event boundaries only (with core's [`EventSplitter`]):
/// half an event is held back until its end arrives, and never forwarded.
/// Then, per event:
///
/// - a comment (`: OPENROUTER PROCESSING`) or an event without data is
///   dropped before the first data event — it would reach the client at the
///   same moment as that event, so it keeps nothing alive — and forwarded
///   unchanged after it, where it keeps an idle stream and the proxies on
///   its way alive;
/// - a data event whose JSON needs reshaping (see `reshape`) is written back
///   as one `data:` line; every other event — `[DONE]`, an OpenAI-shaped
///   chunk — is forwarded as the bytes it came in. When no event of a chunk
///   changes, the output is a slice of the input: no copy;
/// - an error event stops the stream: [`Step::Error`] hands back its data,
///   and the normalizer ignores whatever comes after.
#[derive(Debug)]
pub(crate) struct StreamNormalizer {
    splitter: EventSplitter,
    scratch: BytesMut,
    saw_data: bool,
    strip_lf: bool,
    stopped: bool,
}

/// What one chunk produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bytes to forward (possibly none).
    Forward(Bytes),
    /// A data event carried an error. `before` is the output of the events
    /// that preceded it in this chunk; `data` is the error event's data.
    Error { before: Bytes, data: Bytes },
    /// An event grew past the splitter's limit; the stream cannot be trusted
    /// from here on. `before` is the output of the events before it.
    Overflow { before: Bytes },
}

impl StreamNormalizer {
    pub(crate) fn new() -> Self {
        StreamNormalizer {
            splitter: EventSplitter::new(),
            scratch: BytesMut::with_capacity(SCRATCH_CAPACITY),
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
            return Step::Forward(Bytes::new());
        }
        let StreamNormalizer {
            splitter,
            scratch,
            saw_data,
            strip_lf,
            stopped,
        } = self;
        let mut events = splitter.push(chunk);
        // The output is `yielded[skip..]` of the input while no event has
        // changed, and lives in `scratch` from the first one that did.
        let mut skip = 0;
        let mut offset = 0;
        let mut copying = false;
        while let Some(event) = events.next() {
            let event_len = event.len();
            // A chunk that ended on the CR of a CRLF ended the event there;
            // its LF starts this one. When that event was rewritten with its
            // own line ending, the LF is left over: drop it.
            let event = if std::mem::take(strip_lf) && event.first() == Some(&b'\n') {
                if !copying {
                    skip += 1;
                }
                event.slice(1..)
            } else {
                event
            };
            let Some(data) = data_of(&event) else {
                if !*saw_data {
                    skip += event.len();
                } else if copying {
                    scratch.extend_from_slice(&event);
                }
                offset += event_len;
                continue;
            };
            if !is_json_object(data.bytes(&event)) {
                *saw_data = true;
                if copying {
                    scratch.extend_from_slice(&event);
                }
                offset += event_len;
                if stop_at_data {
                    break;
                }
                continue;
            }
            let start = scratch.len();
            if !copying && offset > skip {
                // Speculatively: the reshaped event must follow what came
                // before it in this chunk.
                scratch.extend_from_slice(&events.yielded()[skip..offset]);
            }
            let event_start = scratch.len();
            scratch.extend_from_slice(b"data: ");
            match reshape(data.bytes(&event), scratch) {
                Reshaped::Written => {
                    scratch.extend_from_slice(b"\n\n");
                    copying = true;
                    *strip_lf = event.ends_with(b"\r");
                }
                Reshaped::Unchanged if copying => {
                    scratch.truncate(event_start);
                    scratch.extend_from_slice(&event);
                }
                Reshaped::Unchanged => scratch.truncate(start),
                Reshaped::Error => {
                    scratch.truncate(event_start);
                    *stopped = true;
                    return Step::Error {
                        before: scratch.split().freeze(),
                        data: data.into_bytes(&event),
                    };
                }
            }
            *saw_data = true;
            offset += event_len;
            if stop_at_data {
                break;
            }
        }
        let out = if copying {
            scratch.split().freeze()
        } else {
            events.yielded().slice(skip..)
        };
        drop(events);
        if splitter.overflowed() {
            *stopped = true;
            return Step::Overflow { before: out };
        }
        Step::Forward(out)
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COMMENT: &str = ": OPENROUTER PROCESSING\n\n";
    const CHUNK: &str = "data: {\"id\":\"g\",\"provider\":\"P\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null,\"native_finish_reason\":null}]}\n\n";
    const CLEAN: &str = "data: {\"id\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
    const OPENAI: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn forward(step: Step) -> Bytes {
        match step {
            Step::Forward(bytes) => bytes,
            other => panic!("{other:?}"),
        }
    }

    fn run(chunks: &[&str]) -> String {
        let mut normalizer = StreamNormalizer::new();
        let mut out = String::new();
        for chunk in chunks {
            let bytes = forward(normalizer.push(Bytes::copy_from_slice(chunk.as_bytes())));
            out.push_str(std::str::from_utf8(&bytes).unwrap());
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
        assert_eq!(out, format!("{CLEAN}{COMMENT}{COMMENT}{DONE}"));
    }

    #[test]
    fn unchanged_events_are_not_copied() {
        let mut normalizer = StreamNormalizer::new();
        let input = Bytes::from(format!("{COMMENT}{OPENAI}{DONE}"));
        let out = forward(normalizer.push(input.clone()));
        assert_eq!(out, format!("{OPENAI}{DONE}"));
        assert_eq!(out.as_ptr(), input[COMMENT.len()..].as_ptr());
    }

    #[test]
    fn unchanged_events_around_a_reshaped_one_keep_their_place() {
        let out = run(&[&format!("{OPENAI}{COMMENT}{CHUNK}{OPENAI}{DONE}")]);
        assert_eq!(out, format!("{OPENAI}{COMMENT}{CLEAN}{OPENAI}{DONE}"));
    }

    #[test]
    fn priming_stops_after_the_first_data_event_and_the_rest_follows() {
        let error = "data: {\"error\":{\"code\":429,\"message\":\"x\"}}\n\n";
        let mut normalizer = StreamNormalizer::new();
        let first =
            forward(normalizer.push_first(Bytes::from(format!("{COMMENT}{CHUNK}{CHUNK}{error}"))));
        assert_eq!(first, CLEAN);
        assert!(normalizer.saw_data());
        match normalizer.push(Bytes::new()) {
            Step::Error { before, .. } => assert_eq!(before, CLEAN),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reshaped_chunks_reuse_one_allocation() {
        // Once the frames handed out are dropped (as a server does once it
        // has written them), every chunk's output is written into the same
        // buffer again: no allocation per chunk.
        let mut normalizer = StreamNormalizer::new();
        let first = forward(normalizer.push(Bytes::from_static(CHUNK.as_bytes())));
        let base = first.as_ptr() as usize;
        drop(first);
        for _ in 0..10_000 {
            let out = forward(normalizer.push(Bytes::from_static(CHUNK.as_bytes())));
            assert_eq!(out, CLEAN);
            let at = out.as_ptr() as usize;
            assert!((base..base + SCRATCH_CAPACITY).contains(&at));
        }
    }

    #[test]
    fn multi_line_events_are_parsed_and_rewritten_as_one_line() {
        let event = "event: message\r\ndata: {\"provider\":\"P\",\r\ndata: \"id\":\"g\"}\r\n\r\n";
        assert_eq!(run(&[event]), "data: {\"id\":\"g\"}\n\n");
    }

    #[test]
    fn an_error_event_stops_the_stream_and_hands_back_what_came_before() {
        let mut normalizer = StreamNormalizer::new();
        let error = "data: {\"error\":{\"code\":429,\"message\":\"x\"}}\n\n";
        let step = normalizer.push(Bytes::from(format!("{CHUNK}{error}{CHUNK}")));
        assert_eq!(
            step,
            Step::Error {
                before: Bytes::from_static(CLEAN.as_bytes()),
                data: Bytes::from_static(b"{\"error\":{\"code\":429,\"message\":\"x\"}}"),
            }
        );
        assert_eq!(
            forward(normalizer.push(Bytes::from_static(b"data: 1\n\n"))),
            ""
        );

        let mut normalizer = StreamNormalizer::new();
        match normalizer.push(Bytes::from(format!("{COMMENT}{error}"))) {
            Step::Error { before, .. } => assert!(before.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(!normalizer.saw_data());
    }

    #[test]
    fn an_oversized_event_stops_the_stream() {
        let mut normalizer = StreamNormalizer::new();
        let huge = Bytes::from(vec![b'x'; EventSplitter::DEFAULT_MAX_EVENT_LEN + 1]);
        let mut first = BytesMut::from(CLEAN);
        first.extend_from_slice(b"data: ");
        assert!(matches!(normalizer.push(first.freeze()), Step::Forward(_)));
        assert!(matches!(normalizer.push(huge), Step::Overflow { .. }));
    }

    fn stream() -> String {
        format!(
            "{COMMENT}{COMMENT}{CHUNK}{CHUNK}{COMMENT}{OPENAI}data: {{\"provider\":\"P\",\"id\":\"\u{e9}\\\"\"}}\r\n\r\n{DONE}"
        )
    }

    proptest! {
        /// However the network cuts the stream, the output is the same: the
        /// normalizer only ever acts on whole events.
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
                out.extend_from_slice(&forward(normalizer.push(chunk)));
                last = cut;
            }
            prop_assert_eq!(String::from_utf8(out).unwrap(), whole);
        }
    }
}
