//! [`ResponseFuture`] of the upstream client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use hyper_util::client::legacy;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tollgate_core::classify::is_event_stream;
use tollgate_core::{BoxError, ErrorClass, Failure, TimeoutKind};

use super::body::TimedBody;
use crate::deadlines::Timeouts;
use crate::learned::{Phase, StreamTimings};

pin_project! {
    /// The response future of [`UpstreamClient`](super::UpstreamClient): the
    /// pooled client's future under the first-byte deadline.
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Waiting {
            #[pin]
            inner: legacy::ResponseFuture,
            #[pin]
            first_byte: Option<Sleep>,
            timeouts: Timeouts,
            start: Instant,
            total_deadline: Option<Instant>,
            // A stream's deployment timings, to record its phases in.
            timings: Option<Arc<StreamTimings>>,
        },
        Failed { failure: Option<Failure> },
    }
}

impl ResponseFuture {
    pub(crate) fn new(
        inner: legacy::ResponseFuture,
        timeouts: Timeouts,
        start: Instant,
        timings: Option<Arc<StreamTimings>>,
    ) -> Self {
        let total_deadline = timeouts.total.map(|total| start + total);
        let first_byte = match (timeouts.first_byte.map(|t| start + t), total_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ResponseFuture {
            state: State::Waiting {
                inner,
                first_byte: first_byte.map(sleep_until),
                timeouts,
                start,
                total_deadline,
                timings,
            },
        }
    }

    pub(crate) fn failed(failure: Failure) -> Self {
        ResponseFuture {
            state: State::Failed {
                failure: Some(failure),
            },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<TimedBody<Incoming>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { failure } => {
                Poll::Ready(Err(Box::new(failure.take().unwrap_or_else(|| {
                    Failure::new(ErrorClass::Internal, "polled after completion")
                }))))
            }
            StateProj::Waiting {
                inner,
                first_byte,
                timeouts,
                start,
                total_deadline,
                timings,
            } => {
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(match result {
                        Ok(response) => {
                            // Only a stream that is answering teaches how
                            // fast its heads come; an error's may be quicker.
                            if response.status().is_success()
                                && let Some(timings) = timings.as_deref()
                            {
                                timings.record(Phase::Head, start.elapsed());
                            }
                            // Keep-alive comments are no answer: a stream
                            // must send its first `data:` by `first_token`.
                            let first_data = is_event_stream(response.headers())
                                .then(|| timeouts.first_token.map(|t| *start + t))
                                .flatten();
                            Ok(response.map(|body| {
                                TimedBody::new(body, timeouts.stream_idle, *total_deadline)
                                    .with_first_data_deadline(first_data)
                                    .with_timings(timings.take(), *start)
                            }))
                        }
                        Err(error) => Err(Box::new(classify_client_error(&error, start.elapsed()))),
                    });
                }
                if let Some(timer) = first_byte.as_pin_mut()
                    && timer.poll(cx).is_ready()
                {
                    let kind = match *total_deadline {
                        Some(total) if Instant::now() >= total => TimeoutKind::Total,
                        _ => TimeoutKind::FirstByte,
                    };
                    if kind == TimeoutKind::FirstByte
                        && let Some(timings) = timings.as_deref()
                    {
                        timings.record(Phase::Head, start.elapsed());
                    }
                    return Poll::Ready(Err(Box::new(Failure::timeout(kind))));
                }
                Poll::Pending
            }
        }
    }
}

/// How long an upstream may stay silent before a close that ends the
/// silence counts as a timeout rather than a reset: a server that answers
/// nothing for this long and then hangs up (a proxy's idle timer, a stuck
/// worker killed) is a silent upstream, and asking it again would only wait
/// as long again.
const SILENT_CLOSE_AFTER: Duration = Duration::from_secs(10);

/// Turns a pooled-client error into a failure that names no host;
/// `silent_for` is how long the exchange waited without a response head.
fn classify_client_error(error: &legacy::Error, silent_for: Duration) -> Failure {
    let timed_out = source_chain(error).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    if error.is_connect() {
        if timed_out {
            Failure::timeout(TimeoutKind::Connect)
        } else {
            Failure::new(
                ErrorClass::UpstreamUnavailable,
                "could not connect to the upstream",
            )
            .with_subkind("connect")
        }
    } else if timed_out {
        Failure::timeout(TimeoutKind::FirstByte)
    } else if silent_for >= SILENT_CLOSE_AFTER {
        Failure::timeout(TimeoutKind::FirstByte).with_subkind("silent_close")
    } else {
        Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the upstream closed the connection before answering",
        )
        .with_subkind("reset")
    }
}

fn source_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}
