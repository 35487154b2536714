//! Reading an OpenAI chat-completions stream event by event: where it
//! commits (its first content), where it breaks, what text it has sent, and
//! how a continuation's events are spliced in. No I/O and no time: the
//! response future and the body feed it chunks and act on what it finds.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tollgate_core::classify::{ClassifyEos, classify_raw_event, stream_cut};
use tollgate_core::sse::{self, EventReader, SharedEvents, SseParser, single_line_data};
use tollgate_core::{ChunkReader, ErrorClass, Failure};

/// The longest text kept for a continuation's prefill, in bytes. A longer
/// answer is not continued.
pub(crate) const MAX_PREFILL: usize = 1024 * 1024;

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the first content: events are held back, and a failure is
    /// still invisible to the client.
    Committing,
    /// Content has gone out (or is queued to): events are forwarded.
    Streaming,
    /// A continuation before its first content: its events (a role-only
    /// chunk, keep-alives) are dropped, and a failure tries the next group.
    Resuming,
}

/// A failure of the stream.
#[derive(Debug)]
pub(crate) enum Break {
    /// Before the first content of the stream (or of a continuation).
    BeforeContent(Failure),
    /// After content went to the client, and before the answer was complete.
    AfterContent(Failure),
}

/// What happens to one event.
enum Action {
    Forward,
    Drop,
    Replace(Bytes),
    Break(Failure),
}

/// The rewriting of a continuation's chunks, so that the client sees one
/// completion.
#[derive(Debug)]
struct Rewrite {
    /// The original stream's `id` and `created`.
    id: Option<Value>,
    created: Option<Value>,
    /// Whitespace the sent text ended with, left out of the prefill
    /// (Anthropic models reject a prefill ending in whitespace): dropped from
    /// the start of the continuation when it repeats it.
    strip: String,
}

/// An OpenAI chat-completions stream, taken apart event by event.
///
/// Chunks go in with [`push`](Self::push); the bytes for the client come out
/// of [`pop`](Self::pop), cut at event boundaries and, where nothing is
/// rewritten, as slices of the chunks that came in (no copy). Every data
/// event is parsed once, which is what proves its JSON whole before it is
/// forwarded.
pub(crate) struct Splicer<E> {
    reader: EventReader,
    /// The response's events, as the layers above read them: each piece
    /// handed out is one whole event, published there.
    shared: SharedEvents,
    // Apart from the reader, so that events borrowed from it can be
    // handled and queued at once.
    tracker: Tracker<E>,
}

struct Tracker<E> {
    eos: Option<E>,
    phase: Phase,
    out: VecDeque<Bytes>,
    /// Bytes queued before the first content.
    held: usize,
    text: String,
    /// One choice of plain text so far, and the text is being kept.
    continuable: bool,
    finished: bool,
    done: bool,
    ended: bool,
    /// The first chunk forwarded (the raw event): the completion's `id` and
    /// `created`.
    first: Option<Bytes>,
    rewrite: Option<Rewrite>,
    broken: Option<Failure>,
    /// Reads every data event, skipping what it shares with the last.
    chunks: ChunkReader,
}

impl<E> fmt::Debug for Splicer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tracker;
        f.debug_struct("Splicer")
            .field("phase", &t.phase)
            .field("sent_bytes", &t.text.len())
            .field("finished", &t.finished)
            .field("done", &t.done)
            .finish_non_exhaustive()
    }
}

impl<E: ClassifyEos> Splicer<E> {
    /// A splicer at the start of a stream whose events are `shared` (the
    /// response's [`SharedEvents`]); `track` keeps the text sent, for a
    /// continuation's prefill.
    pub(crate) fn new(eos: E, track: bool, shared: SharedEvents) -> Self {
        Splicer {
            reader: EventReader::new(Some(shared.clone())),
            shared,
            tracker: Tracker {
                eos: Some(eos),
                phase: Phase::Committing,
                out: VecDeque::new(),
                held: 0,
                text: String::new(),
                continuable: track,
                finished: false,
                done: false,
                ended: false,
                first: None,
                rewrite: None,
                broken: None,
                chunks: ChunkReader::default(),
            },
        }
    }

    /// Takes in a chunk of the upstream body.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        let t = &mut self.tracker;
        if t.broken.is_some() || t.done || t.ended {
            return;
        }
        // Each event goes out as a piece of its own: the layers above take
        // it whole, without splitting the stream again.
        for event in self.reader.push(chunk) {
            match t.on_event(&event) {
                Action::Forward => t.emit(event),
                Action::Replace(bytes) => t.emit(bytes),
                Action::Drop => {}
                Action::Break(failure) => {
                    t.broken = Some(failure);
                    return;
                }
            }
        }
        if self.reader.overflowed() {
            t.broken = Some(
                Failure::new(
                    ErrorClass::UpstreamUnavailable,
                    "the upstream sent an event larger than the gateway accepts",
                )
                .with_subkind("oversized_event"),
            );
        }
    }

    /// The upstream body ended. A half event still held back is dropped;
    /// a stream whose last chunk finished the answer is complete without
    /// `[DONE]`, and gets one.
    pub(crate) fn end(&mut self) {
        let t = &mut self.tracker;
        if t.broken.is_some() || t.done || t.ended {
            return;
        }
        if t.finished {
            t.finish();
            return;
        }
        let failure = t
            .eos
            .take()
            .and_then(|eos| eos.classify_eos().err())
            .unwrap_or_else(stream_cut);
        t.broken = Some(failure);
    }

    /// The upstream body failed.
    pub(crate) fn error(&mut self, error: &(dyn std::error::Error + 'static)) {
        let t = &mut self.tracker;
        if t.broken.is_some() || t.done || t.ended {
            return;
        }
        let failure = match t.eos.take() {
            Some(eos) => eos.classify_error(error),
            None => Failure::from_error(error),
        };
        t.broken = Some(failure);
    }

    /// The failure found, if the stream broke. A break after the answer
    /// finished (a `finish_reason` went out) is no break: the stream is
    /// completed with `[DONE]` instead.
    pub(crate) fn take_break(&mut self) -> Option<Break> {
        let t = &mut self.tracker;
        let failure = t.broken.take()?;
        match t.phase {
            Phase::Streaming if t.finished => {
                t.finish();
                None
            }
            Phase::Streaming => Some(Break::AfterContent(failure)),
            Phase::Committing | Phase::Resuming => Some(Break::BeforeContent(failure)),
        }
    }

    /// Commits before the first content, when too much was held back.
    pub(crate) fn force_commit(&mut self) {
        if self.tracker.phase == Phase::Committing {
            self.tracker.phase = Phase::Streaming;
        }
    }

    /// Whether content has gone out (or is queued to).
    pub(crate) fn committed(&self) -> bool {
        self.tracker.phase == Phase::Streaming
    }

    /// Bytes held back before the first content.
    pub(crate) fn held(&self) -> usize {
        self.tracker.held
    }

    /// Whether the stream is complete (`[DONE]` went out).
    #[cfg(test)]
    pub(crate) fn done(&self) -> bool {
        self.tracker.done
    }

    /// Whether a continuation could take over: one choice of plain text,
    /// kept.
    pub(crate) fn continuable(&self) -> bool {
        self.tracker.continuable
    }

    /// The text sent so far, as a prefill: without the whitespace it ends
    /// with.
    pub(crate) fn prefill(&self) -> &str {
        self.tracker.text.trim_end()
    }

    /// The next bytes for the client: one whole event.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let piece = self.tracker.out.pop_front()?;
        self.shared.publish(&piece);
        Some(piece)
    }

    /// Whether bytes wait for the client.
    pub(crate) fn has_output(&self) -> bool {
        !self.tracker.out.is_empty()
    }

    /// Prepares for a continuation's stream, watched by `eos`, whose events
    /// are `below` (its response's [`SharedEvents`]): its events before its
    /// first content are dropped, the rest rewritten to read as the rest of
    /// this completion.
    pub(crate) fn resume(&mut self, eos: E, below: SharedEvents) {
        let t = &mut self.tracker;
        let (id, created) = t
            .first
            .as_ref()
            .and_then(full_data)
            .and_then(|data| serde_json::from_slice::<Value>(&data).ok())
            .map_or((None, None), |mut first| {
                (
                    first.get_mut("id").map(Value::take),
                    first.get_mut("created").map(Value::take),
                )
            });
        let strip = t.text[t.text.trim_end().len()..].to_owned();
        t.rewrite = Some(Rewrite { id, created, strip });
        t.eos = Some(eos);
        t.broken = None;
        t.phase = Phase::Resuming;
        self.reader = EventReader::new(Some(below));
    }

    /// Ends the stream with an OpenAI-style error event: `failure` as the
    /// client sees it.
    pub(crate) fn fail(&mut self, failure: &Failure) {
        let mut event = BytesMut::new();
        sse::write_data(&mut event, &failure.to_openai_body());
        self.tracker.out.push_back(event.freeze());
        self.tracker.ended = true;
    }
}

impl<E: ClassifyEos> Tracker<E> {
    fn finish(&mut self) {
        self.out.push_back(Bytes::from_static(sse::DONE));
        self.done = true;
    }

    fn emit(&mut self, bytes: Bytes) {
        if self.phase == Phase::Committing {
            self.held += bytes.len();
        }
        self.out.push_back(bytes);
    }

    fn on_event(&mut self, raw: &Bytes) -> Action {
        if self.done {
            return Action::Drop;
        }
        let full: Option<Bytes>;
        let data = match single_line_data(raw) {
            Some(data) => data,
            None => {
                full = full_data(raw);
                match &full {
                    Some(data) => &data[..],
                    None => return self.without_data(),
                }
            }
        };
        if let Some(eos) = self.eos.as_mut()
            && eos.wants(raw)
            && let Some(failure) = classify_raw_event(eos, raw.clone())
        {
            return Action::Break(failure);
        }
        if data == b"[DONE]" {
            self.phase = Phase::Streaming;
            self.done = true;
            return Action::Forward;
        }
        let Ok(chunk) = self.chunks.read(data) else {
            return malformed();
        };
        if chunk.finish_error {
            return Action::Break(
                Failure::new(
                    ErrorClass::UpstreamUnavailable,
                    "the upstream ended the answer with an error",
                )
                .with_subkind("finish_reason_error"),
            );
        }
        if chunk.not_continuable {
            self.continuable = false;
        }
        if chunk.end && self.rewrite.is_none() {
            // A Responses stream's own end: complete as it is.
            self.phase = Phase::Streaming;
            self.finished = true;
            self.done = true;
            return Action::Forward;
        }
        match self.phase {
            Phase::Committing | Phase::Streaming if self.rewrite.is_none() => {
                if chunk.content {
                    self.phase = Phase::Streaming;
                }
                self.finished |= chunk.finish;
                if let Some(text) = chunk.text {
                    self.keep(&text);
                }
                if self.first.is_none() {
                    self.first = Some(raw.clone());
                }
                Action::Forward
            }
            Phase::Resuming if !chunk.content => Action::Drop,
            Phase::Committing | Phase::Streaming | Phase::Resuming => {
                self.phase = Phase::Streaming;
                self.finished |= chunk.finish;
                let rewritten = self.rewrite.as_mut().and_then(|r| r.apply(data));
                match rewritten {
                    Some((bytes, text)) => {
                        self.keep(&text);
                        Action::Replace(bytes)
                    }
                    // The chunk parsed above: this does not happen.
                    None => Action::Forward,
                }
            }
        }
    }
}

impl<E> Tracker<E> {
    /// Keeps the text sent, for a prefill, up to [`MAX_PREFILL`].
    fn keep(&mut self, text: &str) {
        if !self.continuable {
            return;
        }
        if self.text.len() + text.len() > MAX_PREFILL {
            // An answer this long is not worth resending: a break ends it.
            self.continuable = false;
            self.text = String::new();
            return;
        }
        self.text.push_str(text);
    }

    /// A comment (a keep-alive) or an event without data.
    fn without_data(&self) -> Action {
        match self.phase {
            Phase::Resuming => Action::Drop,
            Phase::Committing | Phase::Streaming => Action::Forward,
        }
    }
}

fn malformed() -> Action {
    Action::Break(
        Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the upstream sent a malformed event",
        )
        .with_subkind("malformed_event"),
    )
}

impl Rewrite {
    /// The continuation's chunk as the client gets it: the original `id` and
    /// `created`, no `role`, the repeated whitespace dropped. Returns the
    /// event and the text it carries. The continuation is the cold path: a
    /// whole parse and print per chunk is fine there.
    fn apply(&mut self, data: &[u8]) -> Option<(Bytes, String)> {
        let mut value: Value = serde_json::from_slice(data).ok()?;
        let object = value.as_object_mut()?;
        if let Some(id) = &self.id {
            object.insert("id".to_owned(), id.clone());
        }
        if let Some(created) = &self.created {
            object.insert("created".to_owned(), created.clone());
        }
        let mut text = String::new();
        if let Some(choices) = object.get_mut("choices").and_then(Value::as_array_mut) {
            for choice in choices {
                let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
                    continue;
                };
                delta.remove("role");
                if let Some(Value::String(content)) = delta.get_mut("content") {
                    if !self.strip.is_empty() && !content.is_empty() {
                        let repeated = common_prefix(content, &self.strip);
                        content.drain(..repeated);
                        self.strip.clear();
                    }
                    text.push_str(content);
                }
            }
        }
        let json = serde_json::to_vec(&value).ok()?;
        let mut event = BytesMut::with_capacity(json.len() + 8);
        sse::write_data(&mut event, &json);
        Some((event.freeze(), text))
    }
}

/// The length of the longest common prefix of `a` and `b`, in bytes of `a`.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or_else(|| a.len().min(b.len()), |((at, _), _)| at)
}

/// The data of a raw event, by the full SSE parser, or `None` for an event
/// without a data field (a comment).
fn full_data(raw: &Bytes) -> Option<Bytes> {
    let mut parser = SseParser::new();
    parser.push(raw.clone());
    match parser.finish() {
        Ok(Some(sse::Frame::Event(event))) => Some(event.data),
        _ => None,
    }
}

#[cfg(test)]
#[path = "splice_tests.rs"]
mod tests;
