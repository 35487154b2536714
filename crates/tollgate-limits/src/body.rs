//! [`ResponseBody`]: settles a request's limits when its body ends.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::check::Admission;

pin_project! {
    /// The body of a response that went through a
    /// [`RateLimit`](crate::RateLimit): the inner body, unchanged (same data
    /// and error types), holding the request's admission until it ends.
    ///
    /// The request is settled — its parallel permit released, its tpm
    /// reservation reconciled and its cost added to its budget, from the
    /// [`UsageReport`](tollgate_core::extensions::UsageReport) — when the body ends (its last
    /// frame, or a body that reports [`is_end_stream`](Body::is_end_stream)),
    /// fails, or is dropped (the client went away). On drop the inner body
    /// is dropped first, so an inner layer's end-of-body hook (one that
    /// fills the report) runs before the settlement reads it.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Option<B>,
        admission: Option<Admission>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            this.inner.set(None);
            drop(this.admission.take());
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, admission: Option<Admission>) -> Self {
        ResponseBody {
            inner: Some(inner),
            admission,
        }
    }

    /// The inner body (`None` only while this one is being dropped).
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let Some(mut inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let polled = inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Pending => false,
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
        };
        if ended {
            drop(this.admission.take());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("settled", &self.admission.is_none())
            .finish()
    }
}
