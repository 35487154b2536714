//! A response body with a stream-idle and a total deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tollgate_core::{BoxError, Failure, TimeoutKind};

use crate::learned::{Phase, StreamTimings};

pin_project! {
    /// Wraps an upstream body: a gap longer than `stream_idle` between two
    /// frames fails it with a [`TimeoutKind::StreamIdle`] timeout, passing the
    /// total deadline with a [`TimeoutKind::Total`] one, and — for a stream
    /// given a first-data deadline — no `data:` line by then with a
    /// [`TimeoutKind::FirstByte`] one (keep-alive comments such as
    /// OpenRouter's `: OPENROUTER PROCESSING` do not count as the first
    /// token). Transport errors come out classified, as [`Failure`]s.
    ///
    /// A stream given its deployment's timings records in them the time
    /// to its first token and the gaps after it — the phases that timed
    /// out too, at the time they waited.
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: Option<Sleep>,
        // The timer's next deadline, set when a frame comes and given to
        // the timer only once the body has to wait: a body whose frames are
        // all ready at once (a JSON answer read with its head, a short
        // stream in one read) never puts its timer in the runtime's wheel.
        // Inserting it there wakes the runtime's driver (an `eventfd`
        // write) whenever it becomes the earliest timer — most requests,
        // under load (BENCHMARKS.md, "Memory under the shared bench").
        rearm: Option<Instant>,
        idle: Option<Duration>,
        total_deadline: Option<Instant>,
        first_data_deadline: Option<Instant>,
        done: bool,
        timings: Option<Arc<StreamTimings>>,
        // When the attempt started (for the first token), then when the
        // last frame came after it (for the gaps): `None` until the first token.
        start: Instant,
        last_frame: Option<Instant>,
    }
}

impl<B> TimedBody<B> {
    /// Watches `inner` with the given idle gap and total deadline.
    pub fn new(inner: B, idle: Option<Duration>, total_deadline: Option<Instant>) -> Self {
        let timer = next_deadline(idle, total_deadline, None).map(sleep_until);
        TimedBody {
            inner,
            timer,
            rearm: None,
            idle,
            total_deadline,
            first_data_deadline: None,
            done: false,
            timings: None,
            start: Instant::now(),
            last_frame: None,
        }
    }

    /// Records the stream's first token (from `start`) and the gaps
    /// after it in `timings`.
    pub(crate) fn with_timings(
        mut self,
        timings: Option<Arc<StreamTimings>>,
        start: Instant,
    ) -> Self {
        self.timings = timings;
        self.start = start;
        self
    }

    /// Fails the stream unless a `data:` line arrives by `deadline` (the
    /// first-token deadline, `stream_timeout`).
    pub fn with_first_data_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.first_data_deadline = deadline;
        self.timer = next_deadline(self.idle, self.total_deadline, deadline).map(sleep_until);
        self
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for TimedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedBody")
            .field("inner", &self.inner)
            .field("idle", &self.idle)
            .field("total_deadline", &self.total_deadline)
            .field("first_data_deadline", &self.first_data_deadline)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

fn next_deadline(
    idle: Option<Duration>,
    total: Option<Instant>,
    first_data: Option<Instant>,
) -> Option<Instant> {
    [idle.map(|gap| Instant::now() + gap), total, first_data]
        .into_iter()
        .flatten()
        .min()
}

/// Whether a chunk carries an SSE `data:` line (at its start or after a line
/// break): the first token has come.
fn has_data_line(chunk: &[u8]) -> bool {
    chunk.starts_with(b"data:")
        || chunk
            .windows(6)
            .any(|w| (w[0] == b'\n' || w[0] == b'\r') && &w[1..] == b"data:")
}

impl<B> Body for TimedBody<B>
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
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(timings) = this.timings.as_deref() {
                    let now = Instant::now();
                    match *this.last_frame {
                        Some(last) => {
                            timings.record(Phase::Gap, now - last);
                            *this.last_frame = Some(now);
                        }
                        None if frame.data_ref().is_some_and(|data| has_data_line(data)) => {
                            timings.record(Phase::FirstToken, now - *this.start);
                            *this.last_frame = Some(now);
                        }
                        None => {}
                    }
                }
                if this.first_data_deadline.is_some()
                    && frame.data_ref().is_some_and(|data| has_data_line(data))
                {
                    *this.first_data_deadline = None;
                }
                if this.timer.is_some() {
                    *this.rearm =
                        next_deadline(*this.idle, *this.total_deadline, *this.first_data_deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                *this.done = true;
                let error: BoxError = error.into();
                Poll::Ready(Some(Err(Box::new(classify_body_error(&*error)))))
            }
            Poll::Ready(None) => {
                *this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(mut timer) = this.timer.as_pin_mut() {
                    if let Some(deadline) = this.rearm.take() {
                        timer.as_mut().reset(deadline);
                    }
                    ready!(timer.poll(cx));
                    *this.done = true;
                    let now = Instant::now();
                    let kind = match (*this.total_deadline, *this.first_data_deadline) {
                        (Some(total), _) if now >= total => TimeoutKind::Total,
                        (_, Some(first)) if now >= first => TimeoutKind::FirstByte,
                        _ => TimeoutKind::StreamIdle,
                    };
                    // A phase that timed out waited at least this long.
                    if let Some(timings) = this.timings.as_deref() {
                        match (kind, *this.last_frame) {
                            (TimeoutKind::FirstByte, None) => {
                                timings.record(Phase::FirstToken, now - *this.start);
                            }
                            (TimeoutKind::StreamIdle, Some(last)) => {
                                timings.record(Phase::Gap, now - last);
                            }
                            _ => {}
                        }
                    }
                    return Poll::Ready(Some(Err(Box::new(Failure::timeout(kind)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that broke mid-way lost its connection, unless it says otherwise.
fn classify_body_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> Failure {
    let failure = Failure::from_error(error);
    if failure.class() == tollgate_core::ErrorClass::Internal {
        Failure::new(
            tollgate_core::ErrorClass::UpstreamUnavailable,
            "the upstream connection broke mid-response",
        )
        .with_subkind("body_error")
    } else {
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;
    use tollgate_core::ErrorClass;

    /// A body fed by the test, frame by frame.
    struct ReceiverStream(mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

    impl http_body::Body for ReceiverStream {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.get_mut().0.poll_recv(cx)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_gap_fails_with_stream_idle() {
        let (tx, rx) = mpsc::channel(4);
        let body = TimedBody::new(ReceiverStream(rx), Some(Duration::from_secs(5)), None);
        tokio::pin!(body);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        // Nothing more arrives: after 5 s of silence the body fails.
        let err = body.frame().await.unwrap().unwrap_err();
        let failure = err.downcast_ref::<Failure>().unwrap();
        assert_eq!(failure.timeout_kind(), Some(TimeoutKind::StreamIdle));
        assert!(body.frame().await.is_none());
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_reset_the_idle_timer_but_not_the_total() {
        let (tx, rx) = mpsc::channel(4);
        let deadline = Instant::now() + Duration::from_secs(10);
        let body = TimedBody::new(
            ReceiverStream(rx),
            Some(Duration::from_secs(4)),
            Some(deadline),
        );
        tokio::pin!(body);
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            assert!(body.frame().await.unwrap().is_ok());
        }
        // 9 s in: the idle timer (4 s) would fire at 13 s, the total at 10 s.
        let err = body.frame().await.unwrap().unwrap_err();
        let failure = err.downcast_ref::<Failure>().unwrap();
        assert_eq!(failure.timeout_kind(), Some(TimeoutKind::Total));
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_gap_counts_from_the_frame_not_from_the_next_wait() {
        // The timer is re-armed only when the body waits; the deadline it
        // gets is still the frame's arrival plus the gap.
        let (tx, rx) = mpsc::channel(4);
        let body = TimedBody::new(ReceiverStream(rx), Some(Duration::from_secs(4)), None);
        tokio::pin!(body);
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        let start = Instant::now();
        assert!(body.frame().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let err = body.frame().await.unwrap().unwrap_err();
        let failure = err.downcast_ref::<Failure>().unwrap();
        assert_eq!(failure.timeout_kind(), Some(TimeoutKind::StreamIdle));
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_comments_are_not_the_first_token() {
        let (tx, rx) = mpsc::channel(4);
        let start = Instant::now();
        let body = TimedBody::new(ReceiverStream(rx), Some(Duration::from_secs(30)), None)
            .with_first_data_deadline(Some(start + Duration::from_secs(5)));
        tokio::pin!(body);
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(
                b": OPENROUTER PROCESSING\n\n",
            ))))
            .await
            .unwrap();
            assert!(body.frame().await.unwrap().is_ok());
        }
        let err = body.frame().await.unwrap().unwrap_err();
        let failure = err.downcast_ref::<Failure>().unwrap();
        assert_eq!(failure.timeout_kind(), Some(TimeoutKind::FirstByte));
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        // Once data has come, only the idle gap counts.
        let (tx, rx) = mpsc::channel(4);
        let start = Instant::now();
        let body = TimedBody::new(ReceiverStream(rx), Some(Duration::from_secs(30)), None)
            .with_first_data_deadline(Some(start + Duration::from_secs(5)));
        tokio::pin!(body);
        tx.send(Ok(Frame::data(Bytes::from_static(
            b": ping\n\ndata: {}\n\n",
        ))))
        .await
        .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        let failure = err.downcast_ref::<Failure>().unwrap();
        assert_eq!(failure.timeout_kind(), Some(TimeoutKind::StreamIdle));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_stream_records_its_first_token_and_gaps_and_its_timeouts() {
        let timings = Arc::new(StreamTimings::default());
        let (tx, rx) = mpsc::channel(4);
        let start = Instant::now();
        let body = TimedBody::new(ReceiverStream(rx), Some(Duration::from_secs(5)), None)
            .with_first_data_deadline(Some(start + Duration::from_secs(10)))
            .with_timings(Some(timings.clone()), start);
        tokio::pin!(body);
        for (wait, chunk) in [(1, ": ping\n\n"), (2, "data: {}\n\n"), (3, "data: {}\n\n")] {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
                .await
                .unwrap();
            assert!(body.frame().await.unwrap().is_ok());
        }
        // The first token at 3 s (the comment does not count), a 3 s gap,
        // then a 5 s silence that times out and is recorded as waited.
        assert!(body.frame().await.unwrap().is_err());
        let samples = |phase| timings.sketch(phase).samples();
        assert_eq!(samples(Phase::FirstToken), 1);
        assert_eq!(samples(Phase::Gap), 2);
        for _ in 1..crate::learned::MIN_SAMPLES {
            timings.record(Phase::Gap, Duration::from_secs(5));
        }
        let p99 = timings.sketch(Phase::Gap).quantile(0.99).unwrap();
        assert!(p99 >= Duration::from_secs(5), "{p99:?}");

        // A first token that never comes is recorded at its deadline.
        let (_tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let start = Instant::now();
        let body = TimedBody::new(ReceiverStream(rx), Some(Duration::from_secs(30)), None)
            .with_first_data_deadline(Some(start + Duration::from_secs(2)))
            .with_timings(Some(timings.clone()), start);
        tokio::pin!(body);
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(samples(Phase::FirstToken), 2);
    }

    #[tokio::test]
    async fn transport_errors_come_out_classified() {
        let (tx, rx) = mpsc::channel(1);
        let body = TimedBody::new(ReceiverStream(rx), None, None);
        tokio::pin!(body);
        let reset: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        tx.send(Err(reset)).await.unwrap();
        let err = body.frame().await.unwrap().unwrap_err();
        let failure = err.downcast_ref::<Failure>().unwrap();
        assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    }
}
