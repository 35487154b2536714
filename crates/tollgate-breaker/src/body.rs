//! [`ResponseBody`]: settles a call's outcome when its body ends.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tollgate_core::BoxError;
use tollgate_core::classify::{ClassifyEos, OnEnd, StreamEnd, WatchBody};
use tollgate_core::sse::SharedEvents;

use crate::breakers::Permit;

pin_project! {
    /// The body of a response that went through a
    /// [`CircuitBreaker`](crate::CircuitBreaker): the inner body's bytes,
    /// unchanged, watched to its end by core's [`WatchBody`] (a stream goes
    /// out one whole event per frame, its events shared with the other
    /// layers that watch it).
    ///
    /// A success is only a success once its body is complete: the call is
    /// settled when the body ends (success, or what the stream classifier
    /// `E` says of a stream's events and its end), fails (a transport
    /// error, an error event) or is dropped first — a cancelled call, which
    /// counts as neither and frees a probe slot. It settles as soon as the
    /// inner body reports [`is_end_stream`](Body::is_end_stream): servers
    /// stop polling a body that says it has ended.
    pub struct ResponseBody<B, E> {
        #[pin]
        inner: WatchBody<B, E, Settle>,
    }
}

/// Hands a body's end to the breaker's permit (none for an unguarded call,
/// or one settled at the head).
pub(crate) struct Settle(Option<Permit>);

impl OnEnd for Settle {
    fn on_end(self, end: StreamEnd) {
        if let Some(permit) = self.0 {
            permit.end(end);
        }
    }
}

impl<B, E> ResponseBody<B, E>
where
    B: Body,
    E: ClassifyEos,
{
    /// A body nobody watches: unguarded calls, and failures already settled
    /// at the head.
    pub(crate) fn unwatched(inner: B) -> Self {
        ResponseBody {
            inner: WatchBody::complete(inner, Settle(None)),
        }
    }

    /// A complete body; settles success at its end.
    pub(crate) fn complete(inner: B, permit: Permit) -> Self {
        ResponseBody {
            inner: WatchBody::complete(inner, Settle(Some(permit))),
        }
    }

    /// A stream; `eos` gives the verdict, and its events are `shared`
    /// with the other layers that watch it.
    pub(crate) fn stream(inner: B, eos: E, permit: Permit, shared: SharedEvents) -> Self {
        ResponseBody {
            inner: WatchBody::stream(inner, eos, Settle(Some(permit))).sharing(shared),
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
        self.project().inner.poll_frame(cx)
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
            .finish()
    }
}
