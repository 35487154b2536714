//! The response body that plays a reply's script.

use std::{
    error::Error,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::reply::Step;

type Waiting = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Plays a [`Reply`](crate::Reply)'s steps as body frames.
pub(crate) struct ReplyBody {
    steps: Arc<Vec<Step>>,
    next: usize,
    waiting: Option<Waiting>,
    /// Bytes left to send, when the whole body is known chunks.
    remaining: Option<u64>,
    /// A cut first yields once, so the server flushes what it buffered.
    cut_flushed: bool,
}

impl ReplyBody {
    pub(crate) fn new(steps: Arc<Vec<Step>>, sized: bool) -> Self {
        let remaining = sized
            .then(|| {
                steps.iter().try_fold(0, |len, step| match step {
                    Step::Chunk(chunk) => Some(len + chunk.len() as u64),
                    _ => None,
                })
            })
            .flatten();
        Self {
            steps,
            next: 0,
            waiting: None,
            remaining,
            cut_flushed: false,
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamCut>>> {
        let this = self.get_mut();
        loop {
            if let Some(waiting) = &mut this.waiting {
                ready!(waiting.as_mut().poll(cx));
                this.waiting = None;
            }
            let Some(step) = this.steps.get(this.next) else {
                return Poll::Ready(None);
            };
            match step {
                Step::Chunk(chunk) => {
                    this.next += 1;
                    if let Some(remaining) = &mut this.remaining {
                        *remaining -= chunk.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
                }
                Step::Delay(delay) => {
                    this.next += 1;
                    this.waiting = Some(Box::pin(tokio::time::sleep(*delay)));
                }
                Step::Wait(gate) => {
                    this.next += 1;
                    let gate = gate.clone();
                    this.waiting = Some(Box::pin(async move { gate.opened().await }));
                }
                // Never woken: the connection ends when the client or the server goes.
                Step::Stall => return Poll::Pending,
                // hyper buffers frames and only flushes when the body is pending; an
                // error returned right after a frame would drop that frame unsent.
                Step::Cut if !this.cut_flushed => {
                    this.cut_flushed = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Step::Cut => return Poll::Ready(Some(Err(StreamCut))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.next >= self.steps.len()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::new, SizeHint::with_exact)
    }
}

/// The error a body ends with at a [`Reply::cut`](crate::Reply::cut).
#[derive(Debug)]
pub(crate) struct StreamCut;

impl fmt::Display for StreamCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("testkit: scripted cut")
    }
}

impl Error for StreamCut {}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        task::{Context, Poll, Waker},
        time::Duration,
    };

    use bytes::Bytes;
    use http_body::{Body, Frame};
    use http_body_util::BodyExt;
    use tokio::time::Instant;

    use super::{ReplyBody, StreamCut};
    use crate::{Gate, Reply};

    type Next = Option<Result<Frame<Bytes>, StreamCut>>;

    fn body(reply: Reply) -> ReplyBody {
        reply.to_response().into_body()
    }

    fn text(next: Next) -> String {
        let frame = next.expect("a frame").expect("not an error");
        let data = frame.into_data().expect("a data frame");
        String::from_utf8(data.to_vec()).unwrap()
    }

    /// Polls once with a no-op waker: `None` while pending.
    fn poll_once(body: &mut ReplyBody) -> Option<Next> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(next) => Some(next),
            Poll::Pending => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delays_follow_tokio_time() {
        let mut body = body(Reply::sse().data("a").delay(Duration::from_secs(5)).done());
        let start = Instant::now();
        assert_eq!(text(body.frame().await), "data: a\n\n");
        assert_eq!(text(body.frame().await), "data: [DONE]\n\n");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn gate_holds_the_stream() {
        let gate = Gate::new();
        let mut body = body(Reply::sse().data("a").wait(&gate).data("b"));
        assert_eq!(text(body.frame().await), "data: a\n\n");
        assert!(poll_once(&mut body).is_none(), "held until the gate opens");
        gate.open();
        assert_eq!(text(body.frame().await), "data: b\n\n");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn stall_never_ends() {
        let mut body = body(Reply::sse().data("a").stall().data("b"));
        assert_eq!(text(body.frame().await), "data: a\n\n");
        assert!(poll_once(&mut body).is_none());
        assert!(poll_once(&mut body).is_none());
        assert!(!body.is_end_stream());
    }

    #[tokio::test]
    async fn cut_yields_once_then_fails() {
        let mut body = body(Reply::sse().data("a").cut().data("b"));
        assert_eq!(text(body.frame().await), "data: a\n\n");
        assert!(
            poll_once(&mut body).is_none(),
            "a cut first lets the server flush"
        );
        assert!(body.frame().await.expect("a frame").is_err());
    }

    #[test]
    fn multi_line_data_is_one_event() {
        let mut body = body(Reply::sse().data("a\nb"));
        let next = poll_once(&mut body).expect("ready");
        assert_eq!(text(next), "data: a\ndata: b\n\n");
    }

    #[test]
    fn sized_only_when_all_chunks() {
        let exact = |reply: Reply| body(reply).size_hint().exact();
        assert_eq!(
            exact(Reply::json(200, serde_json::json!({"a": 1}))),
            Some(7)
        );
        assert_eq!(exact(Reply::bytes(200, "text/plain", "{").cut()), None);
        assert_eq!(exact(Reply::sse().data("a")), None);
    }
}
