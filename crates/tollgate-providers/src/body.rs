//! [`ResponseBody`]: the translated body the layer hands on.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tollgate_core::sse::SharedEvents;
use tollgate_core::{BoxError, Failure, Redactor};

use crate::events::TranslatedEvents;
use crate::protocol::TranslateStream;

/// The body of a response from [`Provider`](crate::Provider): a complete
/// OpenAI `chat.completion`, or an OpenAI event stream translated from the
/// provider's event by event as it arrives.
///
/// A stream goes out one whole OpenAI event per frame, each published in
/// the response's [`SharedEvents`], so that the layers above (cost, breaker,
/// fallback) take the events whole instead of splitting the gateway's own
/// output again.
///
/// A stream that fails after its first content (an error event such as
/// Anthropic's `overloaded_error`, an unreadable event) ends — cleanly, for
/// the client — with one OpenAI-style `data: {"error": {...}}` event, the
/// failure marked neither retryable nor fallback-eligible (content went
/// out), and redacted with the request's
/// [`Redactor`](tollgate_core::Redactor) when it had one. A fallback layer
/// above reads that event, or a cut (an end without `data: [DONE]`, passed
/// on as it is), as a break to continue from.
pub struct ResponseBody<B, T> {
    kind: Kind<B, T>,
}

enum Kind<B, T> {
    Complete(Option<Bytes>),
    Stream(Box<Stream<B, T>>),
}

struct Stream<B, T> {
    // Boxed so that the body, polled in place while the response head was
    // held back, can move into the response afterwards.
    body: Pin<Box<B>>,
    state: T,
    redactor: Option<Redactor>,
    /// Translated events not yet handed out.
    out: TranslatedEvents,
    /// Where each event handed out is published.
    shared: SharedEvents,
    ended: bool,
}

impl<B, T> ResponseBody<B, T> {
    pub(crate) fn complete(bytes: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Complete((!bytes.is_empty()).then_some(bytes)),
        }
    }

    pub(crate) fn stream(
        body: Pin<Box<B>>,
        state: T,
        first: TranslatedEvents,
        redactor: Option<Redactor>,
        shared: SharedEvents,
    ) -> Self {
        ResponseBody {
            kind: Kind::Stream(Box::new(Stream {
                body,
                state,
                redactor,
                out: first,
                shared,
                ended: false,
            })),
        }
    }
}

impl<B, T> fmt::Debug for ResponseBody<B, T> {
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

impl<B, T> Body for ResponseBody<B, T>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    T: TranslateStream,
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
            Kind::Stream(stream) => stream.ended && stream.out.is_empty(),
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

impl<B, T> Stream<B, T>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    T: TranslateStream,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(event) = self.out.pop() {
                self.shared.publish(&event);
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            let data = match ready!(self.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    // Trailers: nothing to translate.
                    Err(_) => continue,
                },
                Some(Err(error)) => {
                    // A transport error is passed on as it is.
                    self.ended = true;
                    return Poll::Ready(Some(Err(error.into())));
                }
                None => {
                    // An incomplete last event is dropped; the missing
                    // `[DONE]` tells the watchers the stream was cut.
                    self.ended = true;
                    return Poll::Ready(None);
                }
            };
            match self.state.push(data, &mut self.out) {
                Err(failure) => self.end_with(failure),
                // After `[DONE]`, whatever the upstream still sends is
                // ignored.
                Ok(()) => self.ended = self.state.finished(),
            }
        }
    }

    /// Ends the stream after content went out: what was translated before
    /// the failure, then the failure as an OpenAI-style error event (which
    /// the OpenAI SDKs raise as `APIError`).
    fn end_with(&mut self, failure: Failure) {
        self.ended = true;
        let mut failure = failure.with_retryable(false).with_fallback_eligible(false);
        if let Some(redactor) = &self.redactor {
            failure = redactor.redact_failure(&failure);
        }
        self.out.write_data(&failure.to_openai_body());
    }
}
