//! Work a request leaves for after its answer has been written.
//!
//! hyper drops a response body as soon as it has *buffered* the body's last
//! bytes, before it flushes them to the socket; and the cost layer reports
//! an attempt before the response head goes out. What runs then — the
//! access-log line, the request's and the attempt's metrics, the providers'
//! health, the spend ledger's row — delays the very answer it is about: a
//! few thousand instructions on every request's critical path.
//!
//! The server polls each connection inside [`AfterWrite`]. While it does,
//! that work is queued ([`defer`]) and runs when the poll returns — after
//! hyper has flushed what it could, on the same thread, before the
//! connection reads its next request. Anywhere else (a gateway driven in
//! process by tests, a connection dropped at shutdown, an HTTP/2 stream —
//! hyper runs each in a task of its own) it runs at once.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tollgate_cost::{CostRecord, CostSink};

use crate::access_log::AccessLog;
use crate::spend::{AttemptEnd, GatewaySink};

/// The cost layer's sink: each record is taken by the [`GatewaySink`] once
/// the answer is written.
#[derive(Debug, Clone)]
pub(crate) struct AfterWriteSink(pub(crate) GatewaySink);

impl CostSink for AfterWriteSink {
    fn record(&self, record: CostRecord) {
        let end = self.0.attempt_end(&record);
        defer(Deferred::Spend(self.0.clone(), record, end));
    }
}

/// Work that can wait until the answer is written.
pub(crate) enum Deferred {
    /// The request's access-log line and metrics: written when it is
    /// dropped.
    AccessLog(AccessLog),
    /// An upstream attempt's record and how it ended, for the sink to
    /// take.
    Spend(GatewaySink, CostRecord, AttemptEnd),
}

impl Deferred {
    fn run(self) {
        match self {
            Deferred::AccessLog(log) => drop(log),
            Deferred::Spend(sink, record, end) => sink.take(record, end),
        }
    }
}

#[derive(Default)]
struct Queue {
    /// A connection is being polled on this thread.
    polling: bool,
    work: Vec<Deferred>,
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::default());
}

/// Runs `work` once the connection being polled on this thread has
/// flushed, or now when none is.
pub(crate) fn defer(work: Deferred) {
    let now = QUEUE.with_borrow_mut(|queue| {
        if queue.polling {
            queue.work.push(work);
            None
        } else {
            Some(work)
        }
    });
    // Run outside the borrow: the work may defer more.
    if let Some(work) = now {
        work.run();
    }
}

pin_project_lite::pin_project! {
    /// Polls a connection with [`defer`]red work queued, and runs that work
    /// after each poll.
    pub(crate) struct AfterWrite<F> {
        #[pin]
        inner: F,
        // The queue's other buffer: the two swap at each poll, so neither
        // allocates once grown.
        spare: Vec<Deferred>,
    }

    impl<F> PinnedDrop for AfterWrite<F> {
        fn drop(this: Pin<&mut Self>) {
            // What a poll that panicked queued (tokio drops the connection
            // after catching the panic).
            if !std::thread::panicking() {
                run_all(this.project().spare);
            }
        }
    }
}

/// Runs `work` in order. A job that panics leaves the rest in `work`, to
/// run when the connection is dropped, instead of dropping them while
/// unwinding.
fn run_all(work: &mut Vec<Deferred>) {
    while !work.is_empty() {
        // A handful of jobs a poll: removing from the front is cheap.
        work.remove(0).run();
    }
}

impl<F> AfterWrite<F> {
    pub(crate) fn new(inner: F) -> Self {
        AfterWrite {
            inner,
            spare: Vec::new(),
        }
    }
}

impl<F: Future> Future for AfterWrite<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let guard = Polling::start(this.spare);
        let output = this.inner.poll(cx);
        drop(guard);
        output
    }
}

/// Marks a connection as being polled; at its end (even by a panic), runs
/// what was deferred meanwhile.
struct Polling<'a> {
    spare: &'a mut Vec<Deferred>,
    was_polling: bool,
}

impl<'a> Polling<'a> {
    fn start(spare: &'a mut Vec<Deferred>) -> Self {
        let was_polling =
            QUEUE.with_borrow_mut(|queue| std::mem::replace(&mut queue.polling, true));
        Polling { spare, was_polling }
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        QUEUE.with_borrow_mut(|queue| {
            queue.polling = self.was_polling;
            // `spare` is empty here: the last poll ran all of it, or a
            // panicking one left it for the connection's drop (below).
            self.spare.append(&mut queue.work);
        });
        // Work must not run while a panic unwinds (a second panic would
        // abort): then it waits for the connection to be dropped.
        if !std::thread::panicking() {
            run_all(self.spare);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::Instant;

    /// An access log whose line counts into `metrics`' requests.
    fn access_log(metrics: &crate::metrics::Metrics) -> AccessLog {
        let mut log = AccessLog::new(Arc::from("tg-1"), "chat_completions", Instant::now());
        log.metrics = Some((metrics.clone(), "chat_completions"));
        log.finished = true;
        log.status = 200;
        log
    }

    fn requests_counted(metrics: &crate::metrics::Metrics) -> bool {
        metrics.render().contains("tollgate_requests_total{")
    }

    #[test]
    fn outside_a_connection_the_work_runs_at_once() {
        let metrics = crate::metrics::Metrics::new();
        defer(Deferred::AccessLog(access_log(&metrics)));
        assert!(requests_counted(&metrics));
    }

    #[test]
    fn inside_one_it_runs_when_the_poll_returns() {
        let metrics = crate::metrics::Metrics::new();
        let seen_during_poll = std::cell::Cell::new(None);
        let future = AfterWrite::new(std::future::poll_fn(|_| {
            defer(Deferred::AccessLog(access_log(&metrics)));
            seen_during_poll.set(Some(requests_counted(&metrics)));
            Poll::Ready(())
        }));
        let waker = std::task::Waker::noop();
        let mut future = std::pin::pin!(future);
        assert!(
            future
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_ready()
        );
        assert_eq!(seen_during_poll.get(), Some(false));
        assert!(requests_counted(&metrics));
        // And the thread is back to running work at once.
        let later = crate::metrics::Metrics::new();
        defer(Deferred::AccessLog(access_log(&later)));
        assert!(requests_counted(&later));
    }

    #[test]
    fn work_left_by_a_panicking_poll_runs_when_the_connection_is_dropped() {
        let metrics = crate::metrics::Metrics::new();
        let mut future = Box::pin(AfterWrite::new(std::future::poll_fn(|_| -> Poll<()> {
            defer(Deferred::AccessLog(access_log(&metrics)));
            panic!("a bug in a connection");
        })));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = future
                .as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()));
        }));
        assert!(panicked.is_err());
        assert!(!requests_counted(&metrics), "nothing ran while unwinding");
        // And nothing is left behind for other connections on this thread.
        assert!(QUEUE.with_borrow(|queue| queue.work.is_empty() && !queue.polling));
        drop(future);
        assert!(requests_counted(&metrics));
    }
}
