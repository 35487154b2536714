//! [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tollgate_core::classify::{Classified, ClassifyResponse, Verdict};
use tollgate_core::extensions::{Attempt, AttemptedRetries};
use tollgate_core::{BoxError, Failure};
use tower_service::Service;

use crate::ATTEMPTED_RETRIES;
use crate::error::{GaveUp, StopReason};
use crate::jitter::Jitter;
use crate::service::Shared;
use crate::state::Decision;

/// What a retry needs: a service to send with and the request to send.
pub(crate) struct Resend<S, B> {
    pub(crate) service: S,
    pub(crate) request: Request<B>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) first_attempt: u32,
}

pin_project! {
    /// The response future of [`Retry`](crate::Retry).
    ///
    /// A state machine: calling the inner service, waiting out a backoff,
    /// waiting for the inner service to be ready to resend. It resolves to
    /// the first response that is not a failure — a success, or a stream,
    /// which is never retried once handed up — or to the last outcome when
    /// it stops retrying: that response, or a [`GaveUp`] error.
    pub struct ResponseFuture<S, C, R, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future>,
        resend: Option<Resend<S, B>>,
        shared: Arc<Shared<C, R>>,
        retries: u32,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            future: F,
        },
        // Boxed: the backoff is the cold path, and an inline `Sleep` would
        // make every request's future several times larger.
        Waiting {
            sleep: Pin<Box<Sleep>>,
        },
        Resending,
    }
}

impl<S, C, R, B> ResponseFuture<S, C, R, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(
        future: S::Future,
        resend: Option<Resend<S, B>>,
        shared: Arc<Shared<C, R>>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            resend,
            shared,
            retries: 0,
        }
    }
}

impl<S, C, R, B, ResB> Future for ResponseFuture<S, C, R, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    B: Clone,
    C: ClassifyResponse,
    R: Jitter,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let (failure, outcome) = match ready!(future.poll(cx)) {
                        Ok(mut response) => {
                            match Classified::once(&this.shared.classifier, &mut response) {
                                Verdict::Failure(failure) => (failure, Ok(response)),
                                // A success, or a stream that is handed up now and
                                // whose bytes may reach the client from then on:
                                // never retried.
                                Verdict::Success | Verdict::Watch(_) => {
                                    return Poll::Ready(Ok(record(response, *this.retries)));
                                }
                            }
                        }
                        Err(error) => {
                            let error: BoxError = error.into();
                            (this.shared.classifier.classify_error(&*error), Err(error))
                        }
                    };
                    let retries = *this.retries;
                    match decide(this.shared, this.resend.as_ref(), &failure, retries) {
                        Decision::Retry(wait) => {
                            tracing::debug!(
                                class = %failure.class(),
                                retry = retries + 1,
                                wait_ms = wait.as_millis() as u64,
                                "retrying a failed attempt"
                            );
                            // The failed response's body is dropped unread.
                            drop(outcome);
                            *this.retries = retries + 1;
                            if wait.is_zero() {
                                this.state.set(State::Resending);
                            } else {
                                let sleep = Box::pin(tokio::time::sleep(wait));
                                this.state.set(State::Waiting { sleep });
                            }
                        }
                        Decision::Stop(reason) => {
                            tracing::debug!(
                                class = %failure.class(),
                                retries,
                                %reason,
                                "not retrying"
                            );
                            return Poll::Ready(match outcome {
                                Ok(response) => Ok(record(response, retries)),
                                Err(error) => Err(GaveUp::new(retries, reason, error).into()),
                            });
                        }
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Resending);
                }
                StateProj::Resending => {
                    let retries = *this.retries;
                    let resend = this
                        .resend
                        .as_mut()
                        .expect("a retry is only decided with a request to resend");
                    if let Err(error) = ready!(resend.service.poll_ready(cx)) {
                        let reason = StopReason::ServiceFailed;
                        return Poll::Ready(Err(GaveUp::new(retries, reason, error.into()).into()));
                    }
                    let attempt = Attempt(resend.first_attempt.saturating_add(retries));
                    let future = if retries >= this.shared.policy.max_retries() {
                        // No failure can be retried after this attempt: send
                        // the kept request itself instead of a copy.
                        let Resend {
                            mut service,
                            mut request,
                            ..
                        } = this.resend.take().expect("checked above");
                        request.extensions_mut().insert(attempt);
                        service.call(request)
                    } else {
                        let mut request = resend.request.clone();
                        request.extensions_mut().insert(attempt);
                        resend.service.call(request)
                    };
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}

/// The decision after a failed attempt: the policy's, then the budget's.
fn decide<S, B, C, R: Jitter>(
    shared: &Shared<C, R>,
    resend: Option<&Resend<S, B>>,
    failure: &Failure,
    retries: u32,
) -> Decision {
    let remaining = resend
        .and_then(|resend| resend.deadline)
        .map(|deadline| deadline.saturating_duration_since(Instant::now()));
    let decision = shared
        .policy
        .decide(failure, retries, shared.jitter.fraction(), remaining);
    match decision {
        // Without a request to resend the policy never says "retry" (its
        // limit is 0 then, or used up), but be safe.
        Decision::Retry(_) if resend.is_none() => Decision::Stop(StopReason::MaxRetries),
        // The budget goes last, so that a retry refused for another reason
        // never spends it.
        Decision::Retry(_) if !shared.budget.withdraw() => {
            Decision::Stop(StopReason::BudgetExhausted)
        }
        decision => decision,
    }
}

/// Records the retries made on the response handed up.
fn record<B>(mut response: Response<B>, retries: u32) -> Response<B> {
    response.extensions_mut().insert(AttemptedRetries(retries));
    let value = match retries {
        0 => HeaderValue::from_static("0"),
        n => HeaderValue::from(n),
    };
    response.headers_mut().insert(ATTEMPTED_RETRIES, value);
    response
}

impl<S, C, R, B> fmt::Debug for ResponseFuture<S, C, R, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Waiting { .. } => "waiting",
            State::Resending => "resending",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}
