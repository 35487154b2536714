//! [`Retry`].

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tollgate_core::BoxError;
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier};
use tollgate_core::extensions::{Attempt, Deadline, TriedDeployments};
use tower_service::Service;

use crate::budget::RetryBudget;
use crate::future::{Resend, ResponseFuture};
use crate::jitter::{Jitter, RandomJitter};
use crate::state::Policy;

/// What every service of one layer shares: the rules, the classifier and
/// handles to the layer's budget and jitter source.
pub(crate) struct Shared<C, R> {
    pub(crate) policy: Policy,
    pub(crate) classifier: C,
    pub(crate) budget: Arc<RetryBudget>,
    pub(crate) jitter: Arc<R>,
}

/// Retries the failed attempts of the inner service; see the [crate
/// documentation](crate) for the rules.
///
/// Made by [`RetryLayer`](crate::RetryLayer).
///
/// # Clone
///
/// The inner service must be [`Clone`]: the response future keeps a clone to
/// resend the request with (wrap a service that is not in tower's `Buffer`).
/// The request body must be `Clone` too: the layer keeps a copy of each
/// request until its outcome is known — [`RequestBody`](tollgate_core::RequestBody)
/// and `Bytes` clone a reference count; a streaming body cannot be retried.
///
/// # Readiness
///
/// `poll_ready` is the inner service's. As in tower's `Retry`, `call` sends
/// the first attempt on the service that was just polled ready, and each
/// retry waits for the clone it keeps to be ready again — after the backoff,
/// so a retry never holds a slot of a concurrency limit while it sleeps.
///
/// # Errors
///
/// `poll_ready` returns the inner service's error unchanged. The response
/// future returns a [`GaveUp`](crate::GaveUp) whenever it ends in an error:
/// the last attempt's error (or the inner service's, if it failed while
/// getting ready for a retry) is its source.
pub struct Retry<S, C = OpenAiClassifier, R = RandomJitter> {
    inner: S,
    shared: Arc<Shared<C, R>>,
}

impl<S, C, R> Retry<S, C, R> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<C, R>>) -> Self {
        Retry { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The retry budget this service draws from (its layer's).
    pub fn budget(&self) -> &Arc<RetryBudget> {
        &self.shared.budget
    }
}

impl<S, C, R, B, ResB> Service<Request<B>> for Retry<S, C, R>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    B: Clone,
    C: ClassifyResponse,
    R: Jitter,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, C, R, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.shared.budget.deposit();
        if self.shared.policy.max_retries() == 0 {
            // No failure can be retried: keep neither a copy of the request
            // nor a service.
            return ResponseFuture::new(self.inner.call(request), None, self.shared.clone());
        }
        // What the attempts tried, for whatever picks a deployment below
        // (one an outer layer made is kept).
        if request.extensions().get::<TriedDeployments>().is_none() {
            request.extensions_mut().insert(TriedDeployments::default());
        }
        let extensions = request.extensions();
        let deadline = extensions.get::<Deadline>().map(|deadline| deadline.0);
        let first_attempt = extensions.get::<Attempt>().map_or(0, |attempt| attempt.0);
        let copy = request.clone();
        // The service polled ready makes this call; the clone left in its
        // place must be polled ready before the next one (tower-service's
        // `mem::replace` idiom). The future keeps the called one for retries
        // and polls it ready again before each.
        let clone = self.inner.clone();
        let mut service = mem::replace(&mut self.inner, clone);
        let future = service.call(request);
        let resend = Resend {
            service,
            request: copy,
            deadline,
            first_attempt,
        };
        ResponseFuture::new(future, Some(resend), self.shared.clone())
    }
}

impl<S: Clone, C, R> Clone for Retry<S, C, R> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C, R> fmt::Debug for Retry<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .field("budget", &self.shared.budget)
            .finish_non_exhaustive()
    }
}
