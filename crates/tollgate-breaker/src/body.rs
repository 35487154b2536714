//! [`ResponseBody`]: settles a call's outcome when its body ends.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_core::classify::{ClassifyEos, StreamEnd, classify_raw_event};
use tollgate_core::sse::EventSplitter;
use tollgate_core::{BoxError, Failure};

use crate::breakers::Permit;

pin_project! {
    /// The body of a response that went through a
    /// [`CircuitBreaker`](crate::CircuitBreaker): the inner body, unchanged,
    /// watched to its end.
    ///
    /// A success is only a success once its body is complete: the call is
    /// settled when the body ends (success, or what the stream classifier
    /// `E` says of a stream's events and its end), fails (a transport
    /// error, an error event) or is dropped first — a cancelled call, which
    /// counts as neither and frees a probe slot.
    ///
    /// It settles as soon as the inner body reports
    /// [`is_end_stream`](Body::is_end_stream): servers (hyper's among them)
    /// stop polling a body that says it has ended, and a success that is
    /// dropped unread must not look like a cancellation.
    pub struct ResponseBody<B, E> {
        #[pin]
        inner: B,
        watch: Option<Watch<E>>,
    }
}

/// What an unsettled body still has to decide.
struct Watch<E> {
    permit: Permit,
    /// The stream classifier, with the splitter that feeds it events; `None`
    /// for a complete (non-streaming) body, which only a transport error can
    /// fail.
    stream: Option<(E, EventSplitter)>,
}

impl<B, E> ResponseBody<B, E>
where
    B: Body,
    E: ClassifyEos,
{
    /// A body nobody watches: unguarded calls, and failures already settled
    /// at the head.
    pub(crate) fn unwatched(inner: B) -> Self {
        ResponseBody { inner, watch: None }
    }

    /// A complete body; settles success at its end.
    pub(crate) fn complete(inner: B, permit: Permit) -> Self {
        ResponseBody::watched(
            inner,
            Watch {
                permit,
                stream: None,
            },
        )
    }

    /// A stream; `eos` gives the verdict.
    pub(crate) fn stream(inner: B, eos: E, permit: Permit) -> Self {
        ResponseBody::watched(
            inner,
            Watch {
                permit,
                stream: Some((eos, EventSplitter::new())),
            },
        )
    }

    fn watched(inner: B, watch: Watch<E>) -> Self {
        let mut body = ResponseBody {
            inner,
            watch: Some(watch),
        };
        // An empty body may never be polled.
        if body.inner.is_end_stream() {
            end(&mut body.watch);
        }
        body
    }
}

/// Settles at a clean end of the body.
fn end<E: ClassifyEos>(watch: &mut Option<Watch<E>>) {
    if let Some(Watch { permit, stream }) = watch.take() {
        match stream.map(|(eos, _)| eos.classify_eos()) {
            Some(Err(failure)) => permit.end(StreamEnd::Failed(failure)),
            _ => permit.end(StreamEnd::Complete),
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
        let mut this = self.project();
        let polled = match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(polled) => polled,
        };
        match polled {
            Some(Ok(frame)) => {
                if let Some(Watch {
                    stream: Some((eos, splitter)),
                    ..
                }) = this.watch.as_mut()
                    && let Some(data) = frame.data_ref()
                {
                    let failure = splitter.push(data.clone()).find_map(|event| {
                        eos.wants(&event)
                            .then(|| classify_raw_event(eos, event))
                            .flatten()
                    });
                    if let Some(failure) = failure {
                        // Settled now; the bytes still flow: watching never
                        // changes the stream.
                        if let Some(watch) = this.watch.take() {
                            watch.permit.end(StreamEnd::Failed(failure));
                        }
                    }
                }
                if this.inner.is_end_stream() {
                    end(this.watch);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                let error: BoxError = error.into();
                if let Some(Watch { permit, stream }) = this.watch.take() {
                    let failure = match stream {
                        Some((eos, _)) => eos.classify_error(&*error),
                        None => Failure::from_error(&*error),
                    };
                    permit.error(failure, &*error);
                }
                Poll::Ready(Some(Err(error)))
            }
            None => {
                end(this.watch);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug, E> fmt::Debug for ResponseBody<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("watching", &self.watch.is_some())
            .finish()
    }
}
