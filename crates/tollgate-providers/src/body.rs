//! [`ResponseBody`]: the translated body the layer hands on.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tollgate_core::sse::write_data;
use tollgate_core::{BoxError, Failure, Redactor};

use crate::protocol::TranslateStream;

/// The body of a response from [`Provider`](crate::Provider): a complete
/// OpenAI `chat.completion`, or an OpenAI event stream translated from the
/// provider's event by event as it arrives.
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
    pending: Option<Bytes>,
    out: BytesMut,
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
        first: Bytes,
        redactor: Option<Redactor>,
    ) -> Self {
        ResponseBody {
            kind: Kind::Stream(Box::new(Stream {
                body,
                state,
                redactor,
                pending: (!first.is_empty()).then_some(first),
                out: BytesMut::new(),
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
            Kind::Stream(stream) => stream.ended && stream.pending.is_none(),
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
        if let Some(bytes) = self.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        while !self.ended {
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
            let result = self.state.push(data, &mut self.out);
            if let Err(failure) = result {
                let bytes = self.end_with(failure);
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            // After `[DONE]`, whatever the upstream still sends is ignored.
            self.ended = self.state.finished();
            if !self.out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(self.out.split().freeze()))));
            }
        }
        Poll::Ready(None)
    }

    /// Ends the stream after content went out: what was translated before
    /// the failure, then the failure as an OpenAI-style error event (which
    /// the OpenAI SDKs raise as `APIError`).
    fn end_with(&mut self, failure: Failure) -> Bytes {
        self.ended = true;
        let mut failure = failure.with_retryable(false).with_fallback_eligible(false);
        if let Some(redactor) = &self.redactor {
            failure = redactor.redact_failure(&failure);
        }
        write_data(&mut self.out, &failure.to_openai_body());
        self.out.split().freeze()
    }
}
