//! [`MockBody`]: the mock provider's response body.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};
use tollgate_core::{BoxError, ErrorClass, Failure};

/// How a mock body ends once its chunks are out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Cleanly.
    Complete,
    /// It stops sending but never ends (a stalled upstream).
    Stall,
    /// With a transport error (a cut connection).
    Cut,
}

pin_project! {
    /// A body that yields prepared chunks, `delay` apart, then ends as told.
    pub struct MockBody {
        chunks: VecDeque<Bytes>,
        delay: Duration,
        #[pin]
        timer: Option<Sleep>,
        ending: Ending,
        first: bool,
    }
}

impl std::fmt::Debug for MockBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockBody")
            .field("chunks_left", &self.chunks.len())
            .field("delay", &self.delay)
            .field("ending", &self.ending)
            .finish_non_exhaustive()
    }
}

impl MockBody {
    pub(crate) fn new(chunks: VecDeque<Bytes>, delay: Duration, ending: Ending) -> Self {
        MockBody {
            chunks,
            delay,
            timer: None,
            ending,
            first: true,
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if this.chunks.is_empty() {
            return match this.ending {
                Ending::Complete => Poll::Ready(None),
                Ending::Stall => Poll::Pending,
                Ending::Cut => {
                    *this.ending = Ending::Complete;
                    Poll::Ready(Some(Err(Box::new(
                        Failure::new(
                            ErrorClass::UpstreamUnavailable,
                            "the upstream connection broke mid-response",
                        )
                        .with_subkind("body_error"),
                    ))))
                }
            };
        }
        // The first chunk goes at once; each later one waits `delay`.
        if !*this.first && !this.delay.is_zero() {
            if this.timer.is_none() {
                this.timer.set(Some(sleep(*this.delay)));
            }
            if let Some(timer) = this.timer.as_mut().as_pin_mut()
                && timer.poll(cx).is_pending()
            {
                return Poll::Pending;
            }
            this.timer.set(None);
        }
        *this.first = false;
        Poll::Ready(this.chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.ending == Ending::Complete
    }

    fn size_hint(&self) -> SizeHint {
        if self.ending == Ending::Complete && self.chunks.len() <= 1 {
            SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
        } else {
            SizeHint::default()
        }
    }
}
