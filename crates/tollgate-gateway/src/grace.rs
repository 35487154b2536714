//! The end of a shutdown's grace period, as the requests still running see
//! it.
//!
//! When the grace period is over, [`serve`](crate::serve) ends it
//! ([`GracePeriod::end`]) before closing the connections: a request whose
//! answer has not started is answered 503 with `code: "shutdown"`, a stream
//! ends with one error event of that code — so that a client can tell the
//! cut from a complete answer — and what was cut is `shutdown` in the access
//! log and the spend ledger, never `client_gone` or `cancelled`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use http::StatusCode;
use tokio::sync::Notify;
use tokio::sync::futures::{Notified, OwnedNotified};
use tollgate_core::{ErrorClass, Failure};

/// The `error.code` of what the grace period's end cut.
pub(crate) const SHUTDOWN_CODE: &str = "shutdown";

/// Whether the grace period is over, shared by the server and every request.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct GracePeriod(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    over: AtomicBool,
    // In an `Arc` of its own: a watch's registration owns a reference.
    notify: Arc<Notify>,
}

impl GracePeriod {
    /// Ends the grace period: every [`GraceWatch`] is woken, and sees it
    /// over from now on.
    pub(crate) fn end(&self) {
        self.0.over.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// Whether [`end`](Self::end) was called.
    pub(crate) fn is_over(&self) -> bool {
        self.0.over.load(Ordering::Acquire)
    }

    /// A watch on the grace period's end; nothing is registered until it is
    /// polled.
    pub(crate) fn watch(&self) -> GraceWatch {
        GraceWatch {
            period: self.clone(),
            notified: None,
            waker: None,
        }
    }

    /// Runs `work` until it completes, or until the grace period ends
    /// (then `work` is dropped and the answer is `None`). An output ready
    /// when the period ends still wins; work done at its first poll
    /// registers nothing.
    pub(crate) fn run<F: Future>(&self, work: F) -> Run<'_, F> {
        Run {
            work,
            // Borrowed, in the future itself: no allocation, no count.
            notified: self.0.notify.notified(),
            registered: None,
            period: self,
        }
    }

    /// Whether the period is over; if not, `cx`'s task is woken when it
    /// ends. `notified` is one of `notify`'s, made before this call;
    /// `registered` is the waker it holds.
    fn poll_end<N: Future<Output = ()>>(
        &self,
        notified: Pin<&mut N>,
        registered: &mut Option<Waker>,
        cx: &mut Context<'_>,
    ) -> bool {
        // Read after `notified` exists: an `end` from then on completes it
        // even before it is registered.
        if self.is_over() {
            return true;
        }
        // Polling `notified` locks the list of waiters that every request
        // shares: a stream polled for each of its chunks does it only when
        // the task to wake is not the one registered (its first poll, or a
        // body moved to another task). `end` wakes the registered one.
        if registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return false;
        }
        if notified.poll(cx).is_ready() {
            return true;
        }
        *registered = Some(cx.waker().clone());
        false
    }
}

pin_project_lite::pin_project! {
    /// The future of [`GracePeriod::run`]. Written out rather than an
    /// `async fn`, whose state would hold `work` twice (as the argument and
    /// pinned): `work` is a request's whole handler, and every byte of this
    /// future is copied each time the futures above it move it.
    pub(crate) struct Run<'a, F> {
        #[pin]
        work: F,
        #[pin]
        notified: Notified<'a>,
        // The waker `notified` holds.
        registered: Option<Waker>,
        period: &'a GracePeriod,
    }
}

impl<F: Future> Future for Run<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.work.poll(cx) {
            return Poll::Ready(Some(output));
        }
        if this.period.poll_end(this.notified, this.registered, cx) {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// Watches for the end of a [`GracePeriod`] from one task.
pub(crate) struct GraceWatch {
    period: GracePeriod,
    /// Made at the first poll; registered with the task's waker.
    notified: Option<Pin<Box<OwnedNotified>>>,
    /// The waker `notified` holds.
    waker: Option<Waker>,
}

impl std::fmt::Debug for GraceWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraceWatch")
            .field("over", &self.period.is_over())
            .field("registered", &self.waker.is_some())
            .finish()
    }
}

impl GraceWatch {
    /// Whether the grace period is over; if it is not, `cx`'s task is woken
    /// when it ends.
    pub(crate) fn poll_over(&mut self, cx: &mut Context<'_>) -> bool {
        let notified = self
            .notified
            .get_or_insert_with(|| Box::pin(self.period.0.notify.clone().notified_owned()));
        self.period.poll_end(notified.as_mut(), &mut self.waker, cx)
    }
}

/// What a request still running at the grace period's end is told.
pub(crate) fn shutdown_failure() -> Failure {
    Failure::new(
        ErrorClass::Internal,
        "The gateway is shutting down and its grace period ended before this request \
         finished; send it again.",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
    .with_code(SHUTDOWN_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    /// The error event a chat stream cut at the grace period's end ends with,
    /// in OpenAI's stream error shape (as `stream_interrupted` is); the body
    /// writes it in each route's own shape (`GatewayBody`).
    fn shutdown_event() -> Bytes {
        let mut event = BytesMut::new();
        tollgate_core::sse::write_data(&mut event, &shutdown_failure().to_openai_body());
        event.freeze()
    }
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn woken(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    #[test]
    fn a_watch_is_woken_at_the_end_and_sees_it_over() {
        let period = GracePeriod::default();
        let mut watch = period.watch();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(!watch.poll_over(&mut cx));
        // Polled again by the same task: still running, nothing more woken.
        assert!(!watch.poll_over(&mut cx));
        assert_eq!(woken(&count), 0);
        period.end();
        assert_eq!(woken(&count), 1);
        assert!(watch.poll_over(&mut cx));
        assert!(period.is_over());
    }

    #[test]
    fn a_watch_moved_to_another_task_wakes_that_one() {
        let period = GracePeriod::default();
        let mut watch = period.watch();
        let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let first_waker = Waker::from(first.clone());
        let second_waker = Waker::from(second.clone());
        assert!(!watch.poll_over(&mut Context::from_waker(&first_waker)));
        assert!(!watch.poll_over(&mut Context::from_waker(&second_waker)));
        period.end();
        assert_eq!((woken(&first), woken(&second)), (0, 1));
    }

    #[test]
    fn a_watch_made_or_first_polled_after_the_end_sees_it() {
        let period = GracePeriod::default();
        let mut early = period.watch();
        period.end();
        let waker = Waker::noop();
        assert!(early.poll_over(&mut Context::from_waker(waker)));
        assert!(period.watch().poll_over(&mut Context::from_waker(waker)));
    }

    #[tokio::test(start_paused = true)]
    async fn run_gives_the_work_or_nothing_once_the_period_ends() {
        let period = GracePeriod::default();
        assert_eq!(period.run(async { 7 }).await, Some(7));
        let pending = period.run(std::future::pending::<()>());
        let ender = period.clone();
        let end = async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            ender.end();
        };
        let (ran, ()) = tokio::join!(pending, end);
        assert_eq!(ran, None);
        // Work that is ready still wins after the end.
        assert_eq!(period.run(async { 8 }).await, Some(8));
    }

    #[test]
    fn the_event_is_an_openai_error_with_the_shutdown_code() {
        let event = shutdown_event();
        let text = std::str::from_utf8(&event).unwrap();
        let json = text
            .strip_prefix("data: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["error"]["code"], SHUTDOWN_CODE);
        assert_eq!(value["error"]["type"], "server_error");
        assert!(value["error"]["message"].is_string());
        assert!(value["error"]["param"].is_null());
    }
}
