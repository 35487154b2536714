//! Reading an OpenAI chat-completions stream event by event: where it
//! commits (its first content), where it breaks, what text it has sent, and
//! how a continuation's events are spliced in. No I/O and no time: the
//! response future and the body feed it chunks and act on what it finds.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use tollgate_core::classify::{ClassifyEos, classify_raw_event};
use tollgate_core::sse::{self, EventSplitter, SseParser};
use tollgate_core::{ErrorClass, Failure};

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
    splitter: EventSplitter,
    // Apart from the splitter, so that events borrowed from it can be
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
    /// A splicer at the start of a stream; `track` keeps the text sent, for
    /// a continuation's prefill.
    pub(crate) fn new(eos: E, track: bool) -> Self {
        Splicer {
            splitter: EventSplitter::new(),
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
            },
        }
    }

    /// Takes in a chunk of the upstream body.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        let t = &mut self.tracker;
        if t.broken.is_some() || t.done || t.ended {
            return;
        }
        let mut events = self.splitter.push(chunk);
        // Bytes of `events.yielded()` already queued or dropped: a run of
        // events forwarded as they came goes out as one slice of the chunk.
        let mut queued = 0;
        while let Some(event) = events.next() {
            let action = t.on_event(&event);
            if matches!(action, Action::Forward) {
                continue;
            }
            let upto = events.yielded();
            let run_end = upto.len() - event.len();
            if run_end > queued {
                t.emit(upto.slice(queued..run_end));
            }
            queued = upto.len();
            match action {
                Action::Replace(bytes) => t.emit(bytes),
                Action::Break(failure) => {
                    t.broken = Some(failure);
                    return;
                }
                Action::Forward | Action::Drop => {}
            }
        }
        let upto = events.yielded();
        if upto.len() > queued {
            t.emit(upto.slice(queued..));
        }
        drop(events);
        if self.splitter.overflowed() {
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
            .unwrap_or_else(|| {
                Failure::new(
                    ErrorClass::UpstreamUnavailable,
                    "the upstream stream ended before it was complete",
                )
                .with_subkind("stream_cut")
            });
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

    /// The next bytes for the client.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        self.tracker.out.pop_front()
    }

    /// Whether bytes wait for the client.
    pub(crate) fn has_output(&self) -> bool {
        !self.tracker.out.is_empty()
    }

    /// Prepares for a continuation's stream, watched by `eos`: its events
    /// before its first content are dropped, the rest rewritten to read as
    /// the rest of this completion.
    pub(crate) fn resume(&mut self, eos: E) {
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
        self.splitter = EventSplitter::new();
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
        let Ok(chunk) = inspect(data) else {
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

/// The data of an event that is a single `data:` line (the common case), as
/// a slice of it; `None` for any other event.
fn single_line_data(raw: &[u8]) -> Option<&[u8]> {
    let rest = raw.strip_prefix(b"data:")?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let end = rest
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |last| last + 1);
    let value = &rest[..end];
    // No early exit: the compiler turns this into a vector scan.
    let breaks = value
        .iter()
        .fold(false, |found, &b| found | (b == b'\n') | (b == b'\r'));
    (!breaks).then_some(value)
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

/// What a chunk holds, as far as the cascade cares.
#[derive(Debug, Default)]
struct Chunk<'a> {
    /// `choices[0].delta.content`.
    text: Option<Cow<'a, str>>,
    /// Content, reasoning, a refusal, a tool call or a `finish_reason`.
    content: bool,
    /// A `finish_reason` other than `"error"`.
    finish: bool,
    /// `finish_reason: "error"` (OpenRouter's way of failing mid-stream).
    finish_error: bool,
    /// Tool calls, refusals, non-text content or several choices: a text
    /// prefill cannot continue those.
    not_continuable: bool,
}

/// Parses a chunk; an error means the event is not a JSON object.
fn inspect(data: &[u8]) -> Result<Chunk<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let chunk = de.deserialize_map(ChunkVisitor)?;
    de.end()?;
    Ok(chunk)
}

struct ChunkVisitor;

impl<'de> Visitor<'de> for ChunkVisitor {
    type Value = Chunk<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chat completion chunk")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Chunk<'de>, A::Error> {
        let mut chunk = Chunk::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "choices" {
                map.next_value_seed(ChoicesSeed(&mut chunk))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(chunk)
    }
}

/// An object key, borrowed from the input unless it was written with
/// escapes. (serde's own `Cow<str>` always copies: one allocation per key of
/// every event, most of a stream's allocations.)
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<Er: de::Error>(self, v: &'de str) -> Result<Key<'de>, Er> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<Er: de::Error>(self, v: &str) -> Result<Key<'de>, Er> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<Er: de::Error>(self, v: String) -> Result<Key<'de>, Er> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct ChoicesSeed<'c, 'de>(&'c mut Chunk<'de>);

impl<'de> de::DeserializeSeed<'de> for ChoicesSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ChoicesSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of choices")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(choice) = seq.next_element::<Choice<'de>>()? {
            let chunk = &mut *self.0;
            let index = match choice.index {
                Loose::Number(n) => n,
                _ => 0,
            };
            if index != 0 {
                chunk.not_continuable = true;
            }
            match choice.finish_reason {
                Loose::Null => {}
                Loose::Text(reason) if reason == "error" => chunk.finish_error = true,
                _ => {
                    chunk.finish = true;
                    chunk.content = true;
                }
            }
            let Some(delta) = choice.delta else { continue };
            match delta.content {
                Loose::Null => {}
                Loose::Text(text) => {
                    if !text.is_empty() {
                        chunk.content = true;
                        if index == 0 {
                            chunk.text = Some(match chunk.text.take() {
                                None => text,
                                Some(before) => Cow::Owned(before.into_owned() + &text),
                            });
                        }
                    }
                }
                other => {
                    chunk.content |= other.is_present();
                    chunk.not_continuable = true;
                }
            }
            for field in [delta.reasoning_content, delta.reasoning] {
                chunk.content |= field.is_present();
            }
            for field in [delta.refusal, delta.tool_calls, delta.function_call] {
                if field.is_present() {
                    chunk.content = true;
                    chunk.not_continuable = true;
                }
            }
        }
        Ok(())
    }

    // `choices: null`, or anything that is not a list: no choices.
    fn visit_unit<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Loose<'a>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Loose<'a>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Loose<'a>,
    #[serde(borrow, default)]
    reasoning_content: Loose<'a>,
    #[serde(borrow, default)]
    reasoning: Loose<'a>,
    #[serde(borrow, default)]
    refusal: Loose<'a>,
    #[serde(borrow, default)]
    tool_calls: Loose<'a>,
    #[serde(borrow, default)]
    function_call: Loose<'a>,
}

/// A field read without insisting on its type, so that a provider's
/// variation (content as a list of parts, reasoning as an object) is never
/// mistaken for a malformed event.
#[derive(Debug, Default)]
enum Loose<'a> {
    #[default]
    Null,
    Text(Cow<'a, str>),
    Number(u64),
    List(usize),
    Other,
}

impl Loose<'_> {
    /// Whether the field carries anything: a non-empty text or list, or any
    /// other value.
    fn is_present(&self) -> bool {
        match self {
            Loose::Null => false,
            Loose::Text(text) => !text.is_empty(),
            Loose::List(n) => *n > 0,
            Loose::Number(_) | Loose::Other => true,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LooseVisitor;
        impl<'de> Visitor<'de> for LooseVisitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<Er: de::Error>(self) -> Result<Loose<'de>, Er> {
                Ok(Loose::Null)
            }
            fn visit_none<Er: de::Error>(self) -> Result<Loose<'de>, Er> {
                Ok(Loose::Null)
            }
            fn visit_borrowed_str<Er: de::Error>(self, v: &'de str) -> Result<Loose<'de>, Er> {
                Ok(Loose::Text(Cow::Borrowed(v)))
            }
            fn visit_str<Er: de::Error>(self, v: &str) -> Result<Loose<'de>, Er> {
                Ok(Loose::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<Er: de::Error>(self, v: String) -> Result<Loose<'de>, Er> {
                Ok(Loose::Text(Cow::Owned(v)))
            }
            fn visit_u64<Er: de::Error>(self, v: u64) -> Result<Loose<'de>, Er> {
                Ok(Loose::Number(v))
            }
            fn visit_i64<Er: de::Error>(self, _: i64) -> Result<Loose<'de>, Er> {
                Ok(Loose::Other)
            }
            fn visit_f64<Er: de::Error>(self, _: f64) -> Result<Loose<'de>, Er> {
                Ok(Loose::Other)
            }
            fn visit_bool<Er: de::Error>(self, _: bool) -> Result<Loose<'de>, Er> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'de>, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Loose::List(n))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        deserializer.deserialize_any(LooseVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_borrowed_unless_escaped() {
        let Key(plain) = serde_json::from_str::<Key<'_>>(r#""choices""#).unwrap();
        assert!(matches!(plain, Cow::Borrowed("choices")));
        let Key(escaped) = serde_json::from_str::<Key<'_>>(r#""cho\u0069ces""#).unwrap();
        assert!(matches!(escaped, Cow::Owned(ref k) if k == "choices"));
    }
    use tollgate_core::classify::OpenAiEos;

    fn drain(splicer: &mut Splicer<OpenAiEos>) -> String {
        let mut out = Vec::new();
        while let Some(bytes) = splicer.pop() {
            out.extend_from_slice(&bytes);
        }
        String::from_utf8(out).unwrap()
    }

    fn chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c1\",\"created\":1,\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
            serde_json::to_string(content).unwrap()
        )
    }

    const ROLE: &str = "data: {\"id\":\"c1\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
    const FINISH: &str = "data: {\"id\":\"c1\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";

    #[test]
    fn inspects_what_the_cascade_cares_about() {
        let chunk = inspect(br#"{"choices":[{"index":0,"delta":{"content":"a\"b"}}]}"#).unwrap();
        assert!(chunk.content && !chunk.finish && !chunk.not_continuable);
        assert_eq!(chunk.text.as_deref(), Some("a\"b"));
        let role = inspect(
            br#"{"choices":[{"delta":{"role":"assistant","content":""}}],"x":[1,{"y":null}]}"#,
        )
        .unwrap();
        assert!(!role.content);
        let finish =
            inspect(br#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#).unwrap();
        assert!(finish.content && finish.finish);
        let tools = inspect(br#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#).unwrap();
        assert!(tools.content && tools.not_continuable);
        let reasoning = inspect(br#"{"choices":[{"delta":{"reasoning":{"text":"hm"}}}]}"#).unwrap();
        assert!(reasoning.content && !reasoning.not_continuable);
        let second = inspect(br#"{"choices":[{"index":1,"delta":{"content":"x"}}]}"#).unwrap();
        assert!(second.not_continuable && second.text.is_none());
        let error = inspect(br#"{"choices":[{"delta":{},"finish_reason":"error"}]}"#).unwrap();
        assert!(error.finish_error);
        let usage = inspect(br#"{"choices":[],"usage":{"total_tokens":3}}"#).unwrap();
        assert!(!usage.content);
        assert!(inspect(br#"{"choices":[{"delta":{"content":"x"}}]"#).is_err());
        assert!(inspect(b"[1]").is_err());
        assert!(inspect(br#"{"a":1} x"#).is_err());
    }

    #[test]
    fn finds_the_data_of_raw_events() {
        let guess = |raw: &'static str| single_line_data(raw.as_bytes());
        assert_eq!(guess("data: {}\n\n").unwrap(), b"{}");
        assert_eq!(guess("data:{}\r\n\r\n").unwrap(), b"{}");
        assert!(guess(": keep-alive\n\n").is_none());
        let full = |raw: &'static str| full_data(&Bytes::from_static(raw.as_bytes()));
        assert_eq!(full("data: a\ndata: b\n\n").unwrap(), "a\nb");
        assert_eq!(full("event: x\ndata: a\n\n").unwrap(), "a");
        assert!(full(": keep-alive\n\n").is_none());
        assert!(full("id: 1\n\n").is_none());

        assert!(guess("data: a\ndata: b\n\n").is_none());
        // JSON across two lines would parse; SSE says the second line is
        // not data.
        assert!(guess("data: {\"a\":\n1}\n\n").is_none());
        let mut splicer = Splicer::new(OpenAiEos::default(), true);
        splicer.push(Bytes::from_static(b"data: {\"a\":\n1}\n\n"));
        assert!(matches!(
            splicer.take_break(),
            Some(Break::BeforeContent(_))
        ));
        let mut splicer = Splicer::new(OpenAiEos::default(), true);
        splicer.push(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\nid: 7\n\n",
        ));
        assert_eq!(splicer.prefill(), "a");
    }

    #[test]
    fn commits_at_the_first_content_and_forwards_unchanged_bytes_as_slices() {
        let mut splicer = Splicer::new(OpenAiEos::default(), true);
        let input = Bytes::from(format!(": hi\n\n{ROLE}"));
        splicer.push(input.clone());
        assert!(!splicer.committed());
        assert_eq!(splicer.held(), input.len());
        let content = Bytes::from(chunk("Hel") + &chunk("lo") + "data: {\"partial");
        splicer.push(content.clone());
        assert!(splicer.committed());
        assert_eq!(splicer.pop().unwrap().as_ptr(), input.as_ptr());
        let out = splicer.pop().unwrap();
        assert_eq!(out.as_ptr(), content.as_ptr());
        assert_eq!(out, chunk("Hel") + &chunk("lo"));
        assert_eq!(splicer.prefill(), "Hello");
    }

    #[test]
    fn an_error_event_or_malformed_json_breaks_and_nothing_after_it_goes_out() {
        let mut splicer = Splicer::new(OpenAiEos::default(), true);
        splicer.push(Bytes::from(
            chunk("a") + "data: {\"error\":{\"message\":\"x\",\"code\":503}}\n\n" + &chunk("b"),
        ));
        assert_eq!(drain(&mut splicer), chunk("a"));
        match splicer.take_break() {
            Some(Break::AfterContent(failure)) => {
                assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable)
            }
            other => panic!("{other:?}"),
        }

        let mut splicer = Splicer::new(OpenAiEos::default(), true);
        splicer.push(Bytes::from(format!("{ROLE}data: {{\"choices\":\n\n")));
        assert_eq!(drain(&mut splicer), ROLE);
        match splicer.take_break() {
            Some(Break::BeforeContent(failure)) => {
                assert_eq!(failure.subkind(), Some("malformed_event"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_end_after_the_finish_is_completed_with_done() {
        let mut splicer = Splicer::new(OpenAiEos::default(), true);
        splicer.push(Bytes::from(chunk("a") + FINISH));
        splicer.end();
        assert!(splicer.take_break().is_none());
        assert!(splicer.done());
        assert_eq!(
            drain(&mut splicer),
            chunk("a") + FINISH + "data: [DONE]\n\n"
        );

        let mut splicer = Splicer::new(OpenAiEos::default(), true);
        splicer.push(Bytes::from(chunk("a")));
        splicer.end();
        assert!(matches!(splicer.take_break(), Some(Break::AfterContent(_))));
    }

    #[test]
    fn a_continuation_is_rewritten_into_the_original_completion() {
        let mut splicer = Splicer::new(OpenAiEos::default(), true);
        splicer.push(Bytes::from(ROLE.to_owned() + &chunk("Hello, ")));
        splicer.end();
        assert!(matches!(splicer.take_break(), Some(Break::AfterContent(_))));
        assert_eq!(splicer.prefill(), "Hello,");
        drain(&mut splicer);

        splicer.resume(OpenAiEos::default());
        let role = "data: {\"id\":\"c2\",\"created\":2,\"model\":\"m2\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n";
        let first = "data: {\"id\":\"c2\",\"created\":2,\"model\":\"m2\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\" world\"}}]}\n\n";
        splicer.push(Bytes::from(format!(": ping\n\n{role}")));
        assert!(!splicer.has_output());
        splicer.push(Bytes::from(format!("{first}data: [DONE]\n\n")));
        let out = drain(&mut splicer);
        let events: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{out}");
        let value: Value = serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(value["id"], "c1");
        assert_eq!(value["created"], 1);
        assert_eq!(value["model"], "m2");
        assert_eq!(value["choices"][0]["delta"]["content"], "world");
        assert!(value["choices"][0]["delta"].get("role").is_none());
        assert_eq!(events[1], "data: [DONE]");
        assert_eq!(splicer.prefill(), "Hello, world");
    }

    #[test]
    fn common_prefixes_are_counted_in_bytes() {
        assert_eq!(common_prefix(" world", " "), 1);
        assert_eq!(common_prefix("world", " "), 0);
        assert_eq!(common_prefix("\n\nB", "\n\n"), 2);
        assert_eq!(common_prefix("\n", "\n\n"), 1);
        assert_eq!(common_prefix("é", "e"), 0);
    }
}
