//! [`ResponseBody`]: the body of a response that went through the cost layer.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_core::classify::{ClassifyEos, classify_raw_event};
use tollgate_core::sse::{
    EventReader, EventSplitter, Frame as SseFrame, SharedEvents, SseParser, single_line_data,
};
use tollgate_core::{BoxError, ErrorClass, Failure};

use crate::meter::Meter;
use crate::scan::Scanner;
use crate::usage::Reported;

/// Bytes of an error body kept to classify it.
const ERROR_PREFIX: usize = 64 * 1024;

pin_project! {
    /// The body of a response from a [`Cost`](crate::Cost)
    /// service. `E` watches streams (the classifier's
    /// [`ClassifyEos`]).
    ///
    /// - A complete JSON answer was read by the layer: this body hands out
    ///   those bytes. Its record is already made.
    /// - A stream's events are looked at for usage and go out as they came,
    ///   one whole event per frame, each published in the response's
    ///   [`SharedEvents`] so that the layers above do not split the stream
    ///   again (those below did the splitting if they published first) —
    ///   without the usage chunk when the layer asked for it on the
    ///   client's behalf.
    /// - Anything else (an error response, a body too large to read) passes
    ///   through untouched.
    ///
    /// The record is made when the body ends, fails, or is dropped (the
    /// client went away), exactly once.
    pub struct ResponseBody<B, E> {
        #[pin]
        kind: Kind<B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, E> {
        Complete {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
            error: Option<BoxError>,
        },
        Watched {
            #[pin]
            inner: B,
            watch: Watch<E>,
        },
        Replay {
            prefix: Option<Bytes>,
            inner: Pin<Box<B>>,
            watch: Watch<E>,
        },
    }
}

impl<B, E> ResponseBody<B, E>
where
    B: Body,
    E: ClassifyEos,
{
    /// A body the layer has read: `data`, then `trailers`, then `error`
    /// (when reading it broke).
    pub(crate) fn complete(
        data: Bytes,
        trailers: Option<HeaderMap>,
        error: Option<BoxError>,
    ) -> Self {
        ResponseBody {
            kind: Kind::Complete {
                data: (!data.is_empty()).then_some(data),
                trailers,
                error,
            },
        }
    }

    /// `inner`, watched by `watch`.
    pub(crate) fn watched(inner: B, mut watch: Watch<E>) -> Self {
        if inner.is_end_stream() {
            // Never polled: servers check `is_end_stream` first.
            watch.on_end();
        }
        ResponseBody {
            kind: Kind::Watched { inner, watch },
        }
    }

    /// `prefix` (read already), then the rest of `inner`, watched.
    pub(crate) fn replay(prefix: Bytes, inner: Pin<Box<B>>, mut watch: Watch<E>) -> Self {
        if inner.is_end_stream() {
            watch.on_end();
        }
        ResponseBody {
            kind: Kind::Replay {
                prefix: (!prefix.is_empty()).then_some(prefix),
                inner,
                watch,
            },
        }
    }
}

impl<B, E> Body for ResponseBody<B, E>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    E: ClassifyEos,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Complete {
                data,
                trailers,
                error,
            } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(trailers) = trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Poll::Ready(error.take().map(Err))
            }
            KindProj::Watched { inner, watch } => watch.poll(inner, cx),
            KindProj::Replay {
                prefix,
                inner,
                watch,
            } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                watch.poll(inner.as_mut(), cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Complete {
                data,
                trailers,
                error,
            } => data.is_none() && trailers.is_none() && error.is_none(),
            Kind::Watched { watch, .. } => watch.is_end_stream(),
            Kind::Replay { prefix, watch, .. } => prefix.is_none() && watch.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Complete { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Watched { inner, watch } => watch.size_hint(inner.size_hint()),
            Kind::Replay {
                prefix,
                inner,
                watch,
            } => {
                let hint = watch.size_hint(inner.size_hint());
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let mut sum = SizeHint::new();
                sum.set_lower(hint.lower().saturating_add(extra));
                if let Some(upper) = hint.upper() {
                    sum.set_upper(upper.saturating_add(extra));
                }
                sum
            }
        }
    }
}

impl<B, E> fmt::Debug for ResponseBody<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Complete { .. } => "complete",
            Kind::Watched { .. } => "watched",
            Kind::Replay { .. } => "replay",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// Classifies an error response from the start of its body.
pub(crate) type Refine = Box<dyn FnOnce(&[u8]) -> ErrorClass + Send + Sync>;

/// What a watched body looks at.
pub(crate) enum Mode<E> {
    /// Nothing: the bytes pass, the record is made at the end.
    Pass,
    /// An error response: its start is kept, to classify it at the end.
    Error {
        refine: Option<Refine>,
        prefix: Vec<u8>,
    },
    /// A stream: events are looked at for usage, content and failures, and
    /// go out one whole event per frame, published for the layers above.
    Stream {
        eos: Option<E>,
        reader: EventReader,
        shared: SharedEvents,
        /// Whether the usage chunk is dropped (the layer asked for it).
        strip: bool,
        /// How the last event ended, for the LF of a CR LF that the
        /// splitter saw only after it had cut the event at the CR: that LF
        /// starts the next event, yet belongs to this one — it goes to the
        /// client or is dropped with it.
        last: LastEvent,
        /// Looks at each event for content and usage.
        scanner: Scanner,
    },
}

impl<E> Mode<E> {
    /// A stream watched by `eos`, its events shared with the other layers
    /// that watch the response with these `extensions`.
    pub(crate) fn stream(eos: Option<E>, strip: bool, extensions: &mut http::Extensions) -> Self {
        let shared = SharedEvents::of(extensions);
        Mode::Stream {
            eos,
            reader: EventReader::new(Some(shared.clone())),
            shared,
            strip,
            last: LastEvent::default(),
            scanner: Scanner::default(),
        }
    }
}

/// How the last event of a stripped stream ended.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LastEvent {
    /// With a CR (not CR LF).
    pub(crate) ended_cr: bool,
    /// It was dropped.
    pub(crate) dropped: bool,
}

/// Watches a body for its record, and (when stripping) holds the pieces of
/// the stream ready for the client.
pub(crate) struct Watch<E> {
    meter: Meter,
    mode: Mode<E>,
    /// Pieces of the stream ready for the client, in order, and whether
    /// each is one whole event to publish.
    out: VecDeque<(Bytes, bool)>,
    /// A stream's trailers, for after the pieces before them.
    trailers: Option<Frame<Bytes>>,
    /// A transport error, for after the pieces before it.
    error: Option<BoxError>,
    /// The inner body is done: the record is made.
    ended: bool,
}

impl<E: ClassifyEos> Watch<E> {
    pub(crate) fn new(meter: Meter, mode: Mode<E>) -> Self {
        Watch {
            meter,
            mode,
            out: VecDeque::new(),
            trailers: None,
            error: None,
            ended: false,
        }
    }

    fn poll<B>(
        &mut self,
        mut inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        loop {
            if let Some((piece, whole)) = self.out.pop_front() {
                if whole && let Mode::Stream { shared, .. } = &self.mode {
                    shared.publish(&piece);
                }
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if let Some(trailers) = self.trailers.take() {
                return Poll::Ready(Some(Ok(trailers)));
            }
            if let Some(error) = self.error.take() {
                return Poll::Ready(Some(Err(error)));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match ready!(inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let frame = match frame.into_data() {
                        Ok(data) => self.on_data(data).map(Frame::data),
                        // Trailers end a stream: after the incomplete event
                        // it ended in.
                        Err(frame) if matches!(self.mode, Mode::Stream { .. }) => {
                            self.on_end();
                            self.trailers = Some(frame);
                            continue;
                        }
                        Err(frame) => Some(frame),
                    };
                    // Servers stop polling a body that says it has ended,
                    // so its last frame is as good as its end.
                    if inner.is_end_stream() {
                        self.on_end();
                    }
                    if let Some(frame) = frame {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Some(Err(error)) => {
                    let error: BoxError = error.into();
                    self.on_error(&*error);
                    self.error = Some(error);
                }
                None => self.on_end(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty() && self.trailers.is_none() && self.error.is_none()
    }

    fn size_hint(&self, inner: SizeHint) -> SizeHint {
        match &self.mode {
            // Dropping an event makes the length unknown.
            Mode::Stream { strip: true, .. } => SizeHint::new(),
            // Bytes held back are counted by neither side.
            Mode::Stream { reader, .. } => {
                let held = self.out.iter().map(|(b, _)| b.len() as u64).sum::<u64>()
                    + reader.pending() as u64;
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(held));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(held));
                }
                hint
            }
            _ => inner,
        }
    }

    /// Looks at a data frame; returns what to forward now (nothing when
    /// the pieces went to `out`).
    fn on_data(&mut self, data: Bytes) -> Option<Bytes> {
        let Watch {
            meter, mode, out, ..
        } = self;
        match mode {
            Mode::Pass => Some(data),
            Mode::Error { prefix, .. } => {
                let room = ERROR_PREFIX.saturating_sub(prefix.len());
                prefix.extend_from_slice(&data[..room.min(data.len())]);
                Some(data)
            }
            Mode::Stream {
                eos,
                reader,
                strip,
                last,
                scanner,
                ..
            } => {
                if reader.pending() + data.len() > EventSplitter::DEFAULT_MAX_EVENT_LEN {
                    // An event too large to hold: its bytes pass as they
                    // come, unread (no usage chunk is that large).
                    if let Some(tail) = reader.take_tail() {
                        out.push_back((tail, false));
                    }
                    out.push_back((data, false));
                    *last = LastEvent::default();
                    return None;
                }
                let read = reader.push(data);
                // A frame published below goes out at once, as it is: still
                // the published one, nothing to publish.
                let publish = !read.published();
                for event in read {
                    if !*strip {
                        look_at_event(&event, eos, meter, scanner, false);
                        out.push_back((event, publish));
                        continue;
                    }
                    // A leading LF that is the end of the last event's
                    // CR LF: it goes with that event, out or dropped.
                    let lead = last.ended_cr && event.first() == Some(&b'\n');
                    let keep = look_at_event(&event, eos, meter, scanner, true);
                    let ended_cr = event.ends_with(b"\r");
                    match (keep, lead, last.dropped) {
                        (true, true, true) => out.push_back((event.slice(1..), true)),
                        (true, _, _) => out.push_back((event, publish)),
                        (false, true, false) => out.push_back((event.slice(..1), false)),
                        (false, _, _) => {}
                    }
                    *last = LastEvent {
                        ended_cr,
                        dropped: !keep,
                    };
                }
                None
            }
        }
    }

    /// The inner body ended cleanly: settle.
    fn on_end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        match &mut self.mode {
            Mode::Pass => {}
            Mode::Error { refine, prefix } => {
                if let Some(refine) = refine.take() {
                    self.meter.not_billed(refine(prefix));
                }
            }
            Mode::Stream {
                eos, reader, last, ..
            } => {
                flush_tail(reader, last, &mut self.out);
                if let Some(Err(failure)) = eos.take().map(ClassifyEos::classify_eos) {
                    self.meter.fail(failure.class());
                }
            }
        }
        self.meter.finish(false);
    }

    /// The inner body broke: settle.
    fn on_error(&mut self, error: &(dyn std::error::Error + 'static)) {
        if self.ended {
            return;
        }
        self.ended = true;
        match &mut self.mode {
            // The class of an error response was settled at its head.
            Mode::Error { .. } => {}
            Mode::Pass => self.meter.fail(body_failure(error)),
            Mode::Stream {
                eos, reader, last, ..
            } => {
                flush_tail(reader, last, &mut self.out);
                let class = match eos.take() {
                    Some(eos) => eos.classify_error(error).class(),
                    None => body_failure(error),
                };
                self.meter.fail(class);
            }
        }
        self.meter.finish(false);
    }
}

/// Looks at one raw event: a failure for the classifier, a content token
/// for the estimate, usage for the record. Returns whether to forward it —
/// false only for the usage chunk when stripping.
fn look_at_event<E: ClassifyEos>(
    event: &Bytes,
    eos: &mut Option<E>,
    meter: &mut Meter,
    scanner: &mut Scanner,
    strip: bool,
) -> bool {
    if let Some(eos) = eos.as_mut()
        && !meter.failed()
        && eos.wants(event)
        && let Some(failure) = classify_raw_event(eos, event.clone())
    {
        meter.fail(failure.class());
    }
    let found = scanner.scan(event);
    if found.content {
        meter.content_event();
    }
    if found.usage
        && let Some(reported) = read_event(event)
    {
        meter.reported(&reported);
        // The usage chunk: usage, no choices, no error.
        let usage_chunk =
            reported.usage.is_some() && reported.choices.unwrap_or(0) == 0 && !reported.error;
        return !(strip && usage_chunk);
    }
    true
}

/// Parses the data of one raw event that carries usage: a slice of it
/// when it is one `data:` line, as usage chunks are; else the parser's.
fn read_event(event: &Bytes) -> Option<Reported> {
    if let Some(data) = single_line_data(event) {
        return Reported::read(data);
    }
    let mut parser = SseParser::new();
    parser.push(event.clone());
    while let Ok(Some(frame)) = parser.next_frame() {
        if let SseFrame::Event(event) = frame {
            return Reported::read(&event.data);
        }
    }
    None
}

/// Hands the client the incomplete event a stream ended in, as it came
/// (the reader holds it back waiting for its blank line) — without its
/// first byte when that is the LF of a dropped event's CR LF.
fn flush_tail(reader: &mut EventReader, last: &LastEvent, out: &mut VecDeque<(Bytes, bool)>) {
    let Some(mut tail) = reader.take_tail() else {
        return;
    };
    if last.ended_cr && last.dropped && tail.first() == Some(&b'\n') {
        tail = tail.slice(1..);
    }
    if !tail.is_empty() {
        out.push_back((tail, false));
    }
}

/// The class of a complete body that broke: a classified error keeps its
/// class, anything else (a connection closed mid-body) is the upstream's.
pub(crate) fn body_failure(error: &(dyn std::error::Error + 'static)) -> ErrorClass {
    Failure::find(error).map_or(ErrorClass::UpstreamUnavailable, Failure::class)
}
