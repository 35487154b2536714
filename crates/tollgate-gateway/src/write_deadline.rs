//! Ending a response its client does not take by the request's deadline.
//!
//! hyper polls a response body only when it can write: a client that stops
//! reading leaves the body — and the upstream stream behind it — unpolled,
//! so no timer inside the body can fire, and the upstream connection stays
//! held for as long as the client keeps its socket open.
//!
//! The server therefore polls each HTTP/1 connection and each HTTP/2 stream
//! inside a [`WriteDeadline`]. A response body with a deadline
//! [`register`]s it there while it runs, and the wrapper's one timer does
//! the rest. At the deadline it polls the connection again: a body hyper is
//! waiting on sees the deadline has passed and ends itself. If, after
//! [`WRITE_GRACE`] more, the response is still running — hyper has not
//! taken its end, so the client is not reading — the connection (HTTP/1)
//! or the stream (HTTP/2) is dropped: hyper closes the connection or resets
//! the stream, and the response body, the upstream response and its
//! connection go with it.
//!
//! The registration goes through a thread-local set for the duration of
//! each poll, as [`after_write`](crate::after_write) does: no allocation and
//! no atomic per request, and a body made outside the server (a gateway
//! driven in process) simply has no write deadline.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

/// How long after the deadline a response still running is cut: the time a
/// body that hyper polls has to write its own ending.
pub(crate) const WRITE_GRACE: Duration = Duration::from_secs(1);

/// What a connection or stream knows of the response it is writing.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Polled inside a [`WriteDeadline`].
    active: bool,
    /// The registration of the response now running, if any: its token and
    /// deadline.
    current: Option<(u64, Instant)>,
    /// The token the next registration gets.
    next_token: u64,
    /// Set while the response is being cut for passing its deadline.
    expired: bool,
}

thread_local! {
    static CURRENT: Cell<Slot> = const {
        Cell::new(Slot {
            active: false,
            current: None,
            next_token: 0,
            expired: false,
        })
    };
}

/// A response's claim on the write deadline of the connection or stream it
/// is written on; [`release`](Self::release) it when the response ends.
#[derive(Debug)]
pub(crate) struct Registration {
    token: u64,
}

/// Registers a response that must be written by `deadline`; `None` outside
/// a [`WriteDeadline`] (nothing would enforce it).
pub(crate) fn register(deadline: Instant) -> Option<Registration> {
    CURRENT.with(|cell| {
        let mut slot = cell.get();
        if !slot.active {
            return None;
        }
        let token = slot.next_token;
        slot.next_token = token.wrapping_add(1);
        slot.current = Some((token, deadline));
        cell.set(slot);
        Some(Registration { token })
    })
}

impl Registration {
    /// The response ended: its deadline no longer applies. Outside the
    /// connection's poll (it is being dropped) there is nothing to clear.
    pub(crate) fn release(self) {
        CURRENT.with(|cell| {
            let mut slot = cell.get();
            if slot.active && slot.current.is_some_and(|(token, _)| token == self.token) {
                slot.current = None;
                cell.set(slot);
            }
        });
    }

    /// Whether the response is being dropped because its client did not
    /// take it by the deadline (read it while the response is dropped).
    pub(crate) fn expired(&self) -> bool {
        let slot = CURRENT.get();
        slot.active && slot.expired && slot.current.is_some_and(|(token, _)| token == self.token)
    }
}

pin_project! {
    /// Polls a connection or an HTTP/2 stream, and drops it when the
    /// response it is writing is past its deadline (plus [`WRITE_GRACE`]).
    /// Yields `None` when it cut the response, else the inner output.
    pub(crate) struct WriteDeadline<F> {
        #[pin]
        inner: Option<F>,
        slot: Slot,
        #[pin]
        timer: Option<Sleep>,
        // When `timer` is set to fire.
        armed: Option<Instant>,
    }
}

impl<F> WriteDeadline<F> {
    pub(crate) fn new(inner: F) -> Self {
        WriteDeadline {
            inner: Some(inner),
            slot: Slot {
                active: true,
                ..Slot::default()
            },
            timer: None,
            armed: None,
        }
    }
}

/// Runs `f` with `slot` as the thread's current one, and keeps what `f` did
/// to it — even when `f` panics.
fn within<R>(slot: &mut Slot, f: impl FnOnce() -> R) -> R {
    struct Restore<'a> {
        slot: &'a mut Slot,
        previous: Slot,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            *self.slot = CURRENT.replace(self.previous);
        }
    }
    let previous = CURRENT.replace(*slot);
    let _restore = Restore { slot, previous };
    f()
}

impl<F: Future> Future for WriteDeadline<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                return Poll::Ready(None);
            };
            if let Poll::Ready(output) = within(this.slot, || inner.poll(cx)) {
                within(this.slot, || this.inner.set(None));
                return Poll::Ready(Some(output));
            }
            let Some((_, deadline)) = this.slot.current else {
                // No response running (or it ended): an armed timer may
                // still wake the task once, harmlessly.
                return Poll::Pending;
            };
            // First the deadline itself: the connection is polled again
            // then, so that a body hyper waits on sees it and ends (see
            // `GatewayBody::with_deadline`); then the cut.
            let cut_at = deadline + WRITE_GRACE;
            let wake_at = if Instant::now() < deadline {
                deadline
            } else {
                cut_at
            };
            if *this.armed != Some(wake_at) {
                match this.timer.as_mut().as_pin_mut() {
                    Some(timer) => timer.reset(wake_at),
                    None => this.timer.set(Some(sleep_until(wake_at))),
                }
                *this.armed = Some(wake_at);
            }
            let fired = this
                .timer
                .as_mut()
                .as_pin_mut()
                .is_some_and(|timer| timer.poll(cx).is_ready());
            if !fired {
                return Poll::Pending;
            }
            if wake_at == cut_at {
                tracing::debug!(
                    "a client did not take its response by the request's deadline; cutting it"
                );
                this.slot.expired = true;
                within(this.slot, || this.inner.set(None));
                return Poll::Ready(None);
            }
        }
    }
}

/// Whether the deadline of the response being written has passed: read by
/// a response body each time it waits, when the server polls it at the
/// deadline.
pub(crate) fn passed(at: Instant) -> bool {
    Instant::now() >= at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "connection" whose response registers `deadline` and then waits
    /// forever (a client that never reads), reporting on drop whether it saw
    /// itself expired.
    struct Stuck {
        deadline: Instant,
        registration: Option<Registration>,
        expired_at_drop: std::sync::Arc<std::sync::Mutex<Option<bool>>>,
    }

    impl Future for Stuck {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            if self.registration.is_none() {
                self.registration = register(self.deadline);
                assert!(self.registration.is_some(), "inside a WriteDeadline");
            }
            Poll::Pending
        }
    }

    impl Drop for Stuck {
        fn drop(&mut self) {
            let expired = self.registration.take().map(|r| {
                let expired = r.expired();
                r.release();
                expired
            });
            *self.expired_at_drop.lock().unwrap() = expired;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_not_taken_is_cut_at_its_deadline_plus_the_grace() {
        let start = Instant::now();
        let seen = std::sync::Arc::default();
        let stuck = Stuck {
            deadline: start + Duration::from_secs(15),
            registration: None,
            expired_at_drop: std::sync::Arc::clone(&seen),
        };
        assert!(WriteDeadline::new(stuck).await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(15) + WRITE_GRACE);
        assert_eq!(*seen.lock().unwrap(), Some(true));
        // And the thread is left as it was.
        assert!(register(start).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_deadline_the_response_is_polled_and_may_end_itself() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(15);
        let mut registration = None;
        // Like a body waiting on its upstream: nothing wakes it but the
        // server's timer.
        let connection = WriteDeadline::new(std::future::poll_fn(move |_| {
            registration.get_or_insert_with(|| register(deadline).unwrap());
            if passed(deadline) {
                return Poll::Ready("ended with an error event");
            }
            Poll::Pending
        }));
        assert_eq!(connection.await, Some("ended with an error event"));
        assert_eq!(start.elapsed(), Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_that_ended_leaves_the_connection_alone() {
        let start = Instant::now();
        let connection = WriteDeadline::new(async {
            let registration = register(start + Duration::from_secs(1)).unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            registration.release();
            // Idle on, past the old deadline: not cut.
            tokio::time::sleep(Duration::from_secs(10)).await;
            "served"
        });
        assert_eq!(connection.await, Some("served"));
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10) + Duration::from_millis(500)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_response_on_a_connection_has_its_own_deadline() {
        let start = Instant::now();
        let connection = WriteDeadline::new(async {
            let first = register(start + Duration::from_secs(1)).unwrap();
            first.release();
            let _second = register(start + Duration::from_secs(5)).unwrap();
            std::future::pending::<()>().await;
        });
        assert!(connection.await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(5) + WRITE_GRACE);
    }

    #[test]
    fn outside_a_write_deadline_nothing_registers() {
        assert!(register(Instant::now()).is_none());
    }
}
