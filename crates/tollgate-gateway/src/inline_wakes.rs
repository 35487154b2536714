//! [`InlineWakes`]: a connection future polled again at once when it wakes
//! itself, instead of going back to the scheduler as a yield.
//!
//! hyper's HTTP/1 server feeds a request body to the service through a
//! channel whose sending side is the connection's own dispatcher. A service
//! that reads the body in its future — the gateway reads every completion
//! request whole — takes the data from the channel, and taking it wakes the
//! sender: the very task that is polling. The end of the body wakes it once
//! more. Tokio treats a task woken during its own poll as a yield: it goes
//! to the back of the run queue and an idle worker thread is woken to steal
//! it — a `futex` wake-up, a context switch and often a move to the other
//! core, on every request (measured: two `futex` calls per request where the
//! floor proxy makes none, and about 30 µs more per request at one
//! connection).
//!
//! Polling again at once is what the scheduler would do next anyway, minus
//! the detour. Wakes that come while the future is not being polled (the
//! socket, the upstream's answer) go to the task's waker as usual; a future
//! that keeps waking itself is handed back to the scheduler after a few
//! polls, so it cannot starve the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// How many times in a row a self-woken future is polled before it goes
/// back to the scheduler.
const MAX_INLINE_POLLS: usize = 4;

/// Not being polled: a wake goes to the task.
const IDLE: u8 = 0;
/// Being polled: a wake means "poll again", which the poll loop does.
const POLLING: u8 = 1;
/// Being polled, and woken meanwhile.
const WOKEN: u8 = 2;

pin_project_lite::pin_project! {
    /// Polls `F` again, right away, when it wakes itself during a poll (see
    /// the module's documentation).
    pub(crate) struct InlineWakes<F> {
        #[pin]
        inner: F,
        shared: Arc<Shared>,
        waker: Waker,
    }
}

impl<F> InlineWakes<F> {
    pub(crate) fn new(inner: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: Mutex::new(None),
        });
        InlineWakes {
            inner,
            waker: Waker::from(Arc::clone(&shared)),
            shared,
        }
    }
}

struct Shared {
    state: AtomicU8,
    /// The waker of the task polling the future, for wakes that come between
    /// polls.
    task: Mutex<Option<Waker>>,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            // The poll loop sees it and polls again.
            Ok(_) | Err(WOKEN) => {}
            Err(_) => {
                let task = self
                    .task
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(task) = task {
                    task.wake();
                }
            }
        }
    }
}

impl<F: Future> Future for InlineWakes<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        {
            let mut task = this
                .shared
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut inner_cx = Context::from_waker(this.waker);
        for _ in 0..MAX_INLINE_POLLS {
            this.shared.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(output) = this.inner.as_mut().poll(&mut inner_cx) {
                this.shared.state.store(IDLE, Ordering::Release);
                return Poll::Ready(output);
            }
            if this
                .shared
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
            // Woken while it was polled: poll again.
        }
        // Still waking itself: let the scheduler run the others first.
        this.shared.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wakes its task gets.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes itself on its first `self_wakes` polls, and is ready after.
    struct WakesItself {
        self_wakes: usize,
        polls: usize,
    }

    impl Future for WakesItself {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.self_wakes {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        (counter, waker)
    }

    #[test]
    fn a_future_that_wakes_itself_is_polled_again_without_the_task_being_woken() {
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(InlineWakes::new(WakesItself {
            self_wakes: 2,
            polls: 0,
        }));
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(3));
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn one_that_keeps_waking_itself_goes_back_to_the_scheduler() {
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(InlineWakes::new(WakesItself {
            self_wakes: 100,
            polls: 0,
        }));
        assert!(future.as_mut().poll(&mut cx).is_pending());
        // Handed back once, woken so that the scheduler polls it again.
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_between_polls_reaches_the_task() {
        /// Pending until its stored waker is used.
        struct Parked(Option<Waker>, bool);
        impl Future for Parked {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                if self.1 {
                    return Poll::Ready(());
                }
                self.0 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
        let (counter, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(InlineWakes::new(Parked(None, false)));
        assert!(future.as_mut().poll(&mut cx).is_pending());
        let inner_waker = future.as_mut().project().inner.0.take().unwrap();
        inner_waker.wake();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        future.as_mut().project().inner.1 = true;
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(()));
    }
}
