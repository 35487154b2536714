//! [`ResponseBody`]: the normalized body the layer hands on.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tollgate_core::sse::{SharedEvents, write_data};
use tollgate_core::{BoxError, ErrorClass, Failure, Redactor};

use crate::classify::{OpenRouterClassifier, StreamFailure, after_content};
use crate::state::{Step, StreamNormalizer};

/// The body of a response from [`OpenRouter`](crate::OpenRouter): a
/// complete JSON body, reshaped into OpenAI's shape, or an event stream
/// reshaped event by event as it arrives.
///
/// A stream goes out one whole event a frame, each published in the
/// response's [`SharedEvents`] as it is handed out: the layers that watch
/// the stream above (cost, breaker, fallback) read it with an
/// [`EventReader`](tollgate_core::sse::EventReader), which takes such a
/// frame whole, so the stream is split once, here.
///
/// A stream that fails after it started (an error event from upstream, an
/// event over the size limit) ends — cleanly, for the client — with one
/// OpenAI-style `data: {"error": {...}}` event; the failure is in the
/// response's [`StreamFailure`], and [`OpenRouterEos`](crate::OpenRouterEos)
/// reports it to whoever watches the stream. With a
/// [`Redactor`](tollgate_core::Redactor) in the request's extensions, the
/// event is redacted with it. A transport error, or an end without
/// `data: [DONE]`, is passed on as it is.
pub struct ResponseBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    Complete(Option<Bytes>),
    // Boxed: a stream's state is a few hundred bytes, which every layer
    // above would otherwise move with the body.
    Stream(Box<Stream<B>>),
}

struct Stream<B> {
    // Boxed so that the body, polled in place while the response head was
    // held back, can move into the response afterwards.
    body: Pin<Box<B>>,
    normalizer: StreamNormalizer,
    /// The response's cell, where each event handed out is published.
    shared: SharedEvents,
    classifier: OpenRouterClassifier,
    failure: StreamFailure,
    /// The request's [`Redactor`] extension, for the error event.
    redactor: Option<Redactor>,
    /// The OpenAI error event that ends a failed stream, after the events
    /// before the failure.
    last: Option<Bytes>,
    // The events after the first data event of the chunk that committed the
    // stream are still in the normalizer.
    resume: bool,
    ended: bool,
}

impl<B> ResponseBody<B> {
    pub(crate) fn complete(bytes: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Complete((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// The rest of a stream whose first data event waits in `normalizer`;
    /// each event is published in `shared`, the response's cell.
    pub(crate) fn stream(
        body: Pin<Box<B>>,
        normalizer: StreamNormalizer,
        shared: SharedEvents,
        classifier: OpenRouterClassifier,
        failure: StreamFailure,
        redactor: Option<Redactor>,
    ) -> Self {
        ResponseBody {
            kind: Kind::Stream(Box::new(Stream {
                body,
                normalizer,
                shared,
                classifier,
                failure,
                redactor,
                last: None,
                resume: true,
                ended: false,
            })),
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Complete(data) => f
                .debug_struct("ResponseBody")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream(stream) => f
                .debug_struct("ResponseBody")
                .field("stream", &true)
                .field("ended", &stream.ended)
                .finish_non_exhaustive(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every field is `Unpin` (the inner body is boxed).
        match &mut self.get_mut().kind {
            Kind::Complete(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Stream(stream) => stream.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Complete(data) => data.is_none(),
            Kind::Stream(stream) => {
                stream.ended && !stream.normalizer.has_events() && stream.last.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Complete(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

impl<B> Stream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            // One whole event a frame, published: the layers above take it
            // as it is, without splitting the stream again.
            if let Some(event) = self.normalizer.next_event().or_else(|| self.last.take()) {
                self.shared.publish(&event);
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            let step = if std::mem::take(&mut self.resume) {
                self.normalizer.push(Bytes::new())
            } else {
                match ready!(self.poll_chunk(cx)) {
                    Chunk::Data(data) => self.normalizer.push(data),
                    Chunk::Pass(frame) => return Poll::Ready(Some(Ok(frame))),
                    // A transport error is passed on as it is.
                    Chunk::Error(error) => return Poll::Ready(Some(Err(error))),
                    Chunk::End => return Poll::Ready(None),
                }
            };
            match step {
                Step::Events => {}
                Step::Error { data } => {
                    let failure = self.classifier.classify_event_data(
                        StatusCode::OK,
                        &HeaderMap::new(),
                        &data,
                    );
                    self.end_with(failure);
                }
                Step::Overflow => self.end_with(overflow()),
            }
        }
    }

    /// The next chunk of the inner body.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Chunk> {
        Poll::Ready(match ready!(self.body.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Chunk::Data(data),
                // Trailers: nothing to normalize.
                Err(frame) => Chunk::Pass(frame),
            },
            Some(Err(error)) => {
                self.ended = true;
                Chunk::Error(error.into())
            }
            None => {
                // An incomplete last event is dropped, never forwarded; the
                // missing `[DONE]` tells the watchers the stream was cut.
                self.ended = true;
                Chunk::End
            }
        })
    }
}

enum Chunk {
    Data(Bytes),
    Pass(Frame<Bytes>),
    Error(BoxError),
    End,
}

impl<B> Stream<B> {
    /// Ends the stream after content went out: the events before the
    /// failure, then the failure as an OpenAI-style error event (which the
    /// OpenAI SDKs raise as `APIError`), recorded for the watchers first.
    fn end_with(&mut self, failure: Failure) {
        self.ended = true;
        let mut failure = after_content(failure);
        if let Some(redactor) = &self.redactor {
            failure = redactor.redact_failure(&failure);
        }
        let body = failure.to_openai_body();
        let mut event = BytesMut::with_capacity(body.len() + 8);
        write_data(&mut event, &body);
        self.failure.set(failure);
        self.last = Some(event.freeze());
    }
}

pub(crate) fn overflow() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "an upstream stream event exceeded the size limit",
    )
    .with_subkind("event_too_large")
}
