//! [`Watched`]: hyper's connection future, under the connection's deadlines.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::table::{ConnState, Held, Slot};
use super::{CLOSE_GRACE, ConnectionSettings};
use crate::metrics::Metrics;
use crate::metrics::ShedReason;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What happens when the deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Shut the connection down gracefully, counting `reason` if any.
    Close(Option<ShedReason>),
    /// Drop it: it had its chance to finish.
    Drop,
}

/// A shutdown under way.
#[derive(Debug, Clone, Copy)]
struct Closing {
    since: u64,
    /// How long the connection may take to finish once idle.
    grace: Duration,
}

pin_project_lite::pin_project! {
    /// Drives a connection while watching its deadlines: idle, header,
    /// closing. On one, it starts hyper's graceful shutdown and, once no
    /// request is in flight, gives the connection a little time to finish
    /// before dropping it (a peer that never answers the `GOAWAY`'s ping
    /// keeps an HTTP/2 connection open otherwise). Eviction and the
    /// server's shutdown start the same sequence.
    pub(crate) struct Watched<C> {
        #[pin]
        conn: C,
        #[pin]
        timer: Sleep,
        // When `timer` is set to fire, in the clock's milliseconds.
        timer_at: Option<u64>,
        held: Held,
        settings: ConnectionSettings,
        metrics: Metrics,
        shutdown: fn(Pin<&mut C>),
        closing: Option<Closing>,
    }
}

impl<C> Watched<C> {
    /// Watches `conn`, which holds the slot `held`; `shutdown` starts its
    /// graceful shutdown.
    pub(crate) fn new(
        conn: C,
        held: Held,
        settings: ConnectionSettings,
        metrics: Metrics,
        shutdown: fn(Pin<&mut C>),
    ) -> Self {
        Watched {
            conn,
            // Reset before it is first polled.
            timer: tokio::time::sleep_until(Instant::now() + Duration::from_secs(86_400)),
            timer_at: None,
            held,
            settings,
            metrics,
            shutdown,
            closing: None,
        }
    }
}

/// The next deadline of `state`, and what to do then.
fn next_deadline(
    state: &ConnState,
    settings: &ConnectionSettings,
    closing: Option<Closing>,
) -> Option<(u64, Next)> {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // A reserve connection promoted to a regular slot gets the regular
    // timeouts from then on.
    let settings = &if state.slot() == Slot::Reserve {
        settings.for_reserve()
    } else {
        *settings
    };
    let idle = state.in_flight() == 0;
    if let Some(closing) = closing {
        return idle.then(|| {
            let since = state.idle_since().max(closing.since);
            (since.saturating_add(millis(closing.grace)), Next::Drop)
        });
    }
    if idle && state.closes_when_idle() {
        return Some((state.idle_since(), Next::Close(None)));
    }
    if let Some(head) = state.head_since() {
        // A head under way is not idleness, whatever else is in flight.
        let at = head.saturating_add(millis(settings.header_read_timeout));
        return Some((at, Next::Close(Some(ShedReason::HeaderTimeout))));
    }
    idle.then(|| {
        let at = state
            .idle_since()
            .saturating_add(millis(settings.idle_timeout));
        (at, Next::Close(Some(ShedReason::Idle)))
    })
}

/// Whether a connection's error is hyper's HTTP/2 keep-alive timeout (the
/// only timer of hyper's left on: the HTTP/1 header timer is ours).
fn is_keepalive_timeout(error: &BoxError) -> bool {
    error
        .downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_timeout)
}

impl<C> Future for Watched<C>
where
    C: Future<Output = Result<(), BoxError>>,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let state = this.held.state().clone();
        state.register(cx.waker());
        loop {
            if this.closing.is_none() {
                let grace = if state.slot() == Slot::Evicted {
                    // Its slot is someone else's already.
                    Some(Duration::ZERO)
                } else if state.is_shutting_down() {
                    Some(CLOSE_GRACE)
                } else {
                    None
                };
                if let Some(grace) = grace {
                    (this.shutdown)(this.conn.as_mut());
                    *this.closing = Some(Closing {
                        since: state.clock.now_ms(),
                        grace,
                    });
                }
            }
            if let Poll::Ready(result) = state.driving(|| this.conn.as_mut().poll(cx)) {
                if let Err(error) = &result
                    && this.closing.is_none()
                    && is_keepalive_timeout(error)
                {
                    this.metrics.connection_shed(ShedReason::KeepaliveTimeout);
                }
                return Poll::Ready(result);
            }
            let Some((at, next)) = next_deadline(&state, this.settings, *this.closing) else {
                return Poll::Pending;
            };
            let now = state.clock.now_ms();
            if at <= now {
                match next {
                    Next::Drop => return Poll::Ready(Ok(())),
                    Next::Close(reason) => {
                        if let Some(reason) = reason {
                            this.metrics.connection_shed(reason);
                        }
                        // A head that never ends gets no time to finish.
                        let grace = if reason == Some(ShedReason::HeaderTimeout) {
                            Duration::ZERO
                        } else {
                            CLOSE_GRACE
                        };
                        (this.shutdown)(this.conn.as_mut());
                        *this.closing = Some(Closing { since: now, grace });
                        continue;
                    }
                }
            }
            if *this.timer_at != Some(at) {
                this.timer.as_mut().reset(state.clock.instant(at));
                *this.timer_at = Some(at);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::table::{Admission, Table};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A connection that never ends by itself, counting graceful
    /// shutdowns; it ends at the next poll after one when `obliging`.
    struct Dummy {
        shutdowns: Arc<AtomicUsize>,
        obliging: bool,
    }

    impl Future for Dummy {
        type Output = Result<(), BoxError>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            if self.obliging && self.shutdowns.load(Ordering::SeqCst) > 0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    fn settings() -> ConnectionSettings {
        ConnectionSettings {
            max_connections: 4,
            reserve: 1,
            idle_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(3),
            http2_keepalive_interval: None,
            http2_keepalive_timeout: Duration::from_secs(1),
        }
    }

    fn watched(table: &Arc<Table>, obliging: bool) -> (Watched<Dummy>, Arc<AtomicUsize>, Metrics) {
        let Admission::Admitted(held) = table.admit(|| {}) else {
            panic!("refused")
        };
        let shutdowns = Arc::new(AtomicUsize::new(0));
        let metrics = Metrics::new();
        let conn = Dummy {
            shutdowns: shutdowns.clone(),
            obliging,
        };
        let watched = Watched::new(conn, held, settings(), metrics.clone(), |conn| {
            conn.shutdowns.fetch_add(1, Ordering::SeqCst);
        });
        (watched, shutdowns, metrics)
    }

    fn shed(metrics: &Metrics, reason: &str) -> bool {
        metrics.render().contains(&format!(
            "tollgate_connections_shed_total{{reason=\"{reason}\"}} 1"
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_at_the_idle_timeout() {
        let table = Table::new(4, 1, crate::metrics::Metrics::new());
        let (watched, shutdowns, metrics) = watched(&table, true);
        let start = Instant::now();
        watched.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
        assert!(shed(&metrics, "idle"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_head_closes_at_the_header_timeout_without_grace() {
        let table = Table::new(4, 1, crate::metrics::Metrics::new());
        let (watched, shutdowns, metrics) = watched(&table, false);
        let state = watched.held.state().clone();
        let start = Instant::now();
        let task = tokio::spawn(watched);
        tokio::time::advance(Duration::from_secs(2)).await;
        state.head_started();
        task.await.unwrap().unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
        assert!(shed(&metrics, "header_timeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_the_idle_timer_and_a_peer_that_never_finishes_is_dropped() {
        let table = Table::new(4, 1, crate::metrics::Metrics::new());
        let (watched, shutdowns, _metrics) = watched(&table, false);
        let state = watched.held.state().clone();
        state.request_started();
        let start = Instant::now();
        let task = tokio::spawn(watched);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!task.is_finished());
        state.request_ended(&table);
        // Idle 10 s, then 5 s to finish the GOAWAY exchange.
        task.await.unwrap().unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(75));
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_is_dropped_at_once() {
        let table = Table::new(1, 1, crate::metrics::Metrics::new());
        let (watched, shutdowns, _metrics) = watched(&table, false);
        let task = tokio::spawn(watched);
        tokio::task::yield_now().await;
        let Admission::Admitted(_newer) = table.admit(|| {}) else {
            panic!("refused")
        };
        task.await.unwrap().unwrap();
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
        assert_eq!(table.open(), 1);
    }
}
