//! [`PickDeployment`]: chooses the deployment of a model group for each
//! attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tollgate_breaker::{Breakers, CircuitOpen};
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier, Verdict};
use tollgate_core::extensions::{Attempt, ModelGroup, Target};
use tollgate_core::{BoxError, ErrorClass, Failure};
use tower_service::Service;

use crate::app::Groups;
use crate::balance::{InFlight, Outcome, Strategy, Tried, estimate_tokens};

/// Picks a deployment of the request's model group (the [`ModelGroup`]
/// request extension) for each call, with the group's balancer (see
/// [`balance`](crate::balance)), so that a retry above it can land on
/// another deployment; marks the request with the [`Deployment`] and its
/// [`Target`], and the response with the [`Target`] that answered.
///
/// It remembers what the current request tried ([`Tried`]) in itself: the
/// retry layer above resends with the same service, and a clone starts
/// afresh.
///
/// [`Deployment`]: crate::app::Deployment
#[derive(Debug)]
pub(crate) struct PickDeployment<S> {
    inner: S,
    breakers: Breakers,
    groups: Groups,
    tried: Tried,
}

impl<S> PickDeployment<S> {
    pub(crate) fn new(inner: S, breakers: Breakers, groups: Groups) -> Self {
        PickDeployment {
            inner,
            breakers,
            groups,
            tried: Tried::default(),
        }
    }
}

impl<S: Clone> Clone for PickDeployment<S> {
    /// A clone serves other requests: it starts with nothing tried.
    fn clone(&self) -> Self {
        PickDeployment::new(
            self.inner.clone(),
            self.breakers.clone(),
            self.groups.clone(),
        )
    }
}

impl<S, B, ResB> Service<Request<B>> for PickDeployment<S>
where
    S: Service<Request<B>, Response = Response<ResB>, Error = BoxError>,
    B: Body,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = PickFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let group = request
            .extensions()
            .get::<ModelGroup>()
            .and_then(|ModelGroup(name)| self.groups.get(name));
        let Some(group) = group else {
            return PickFuture::Failed {
                failure: Some(Failure::new(
                    ErrorClass::Internal,
                    "the request names no model group the gateway serves",
                )),
            };
        };
        let attempt = request.extensions().get::<Attempt>().map_or(0, |a| a.0);
        self.tried.begin(attempt);
        let tokens = match group.balancer().strategy() {
            Strategy::UsageBased => {
                let size = request.body().size_hint();
                estimate_tokens(size.exact().unwrap_or(size.lower()))
            }
            _ => 0,
        };
        let pick = group.pick(&self.breakers, &self.tried, tokens);
        self.tried.insert(pick.index);
        let in_flight = group.balancer().begin(&pick, tokens);
        let deployment = Arc::clone(group.deployment(pick.index));
        tracing::trace!(
            model_group = %group.name,
            deployment = %deployment.target.deployment_id,
            attempt,
            "picked a deployment"
        );
        let target = deployment.target.clone();
        request.extensions_mut().insert(target.clone());
        request.extensions_mut().insert(deployment);
        PickFuture::Calling {
            inner: self.inner.call(request),
            target: Some(target),
            in_flight: Some(in_flight),
            alternatives: pick.alternatives,
        }
    }
}

pin_project! {
    /// The future of [`PickDeployment`]: the deployment's call, counted in
    /// flight until it completes or is dropped.
    #[project = PickFutureProj]
    pub(crate) enum PickFuture<F> {
        Calling {
            #[pin]
            inner: F,
            target: Option<Target>,
            in_flight: Option<InFlight>,
            alternatives: bool,
        },
        Failed { failure: Option<Failure> },
    }
}

impl<F, ResB> Future for PickFuture<F>
where
    F: Future<Output = Result<Response<ResB>, BoxError>>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PickFutureProj::Calling {
                inner,
                target,
                in_flight,
                alternatives,
            } => {
                let result = ready!(inner.poll(cx));
                // Settled, and no longer in flight once dropped here.
                if let Some(mut in_flight) = in_flight.take() {
                    in_flight.settle(|| outcome(&result));
                }
                let mut response =
                    result.map_err(|error| fail_fast_when_open(error, *alternatives))?;
                if let Some(target) = target.take() {
                    response.extensions_mut().insert(target);
                }
                Poll::Ready(Ok(response))
            }
            PickFutureProj::Failed { failure } => Poll::Ready(Err(failure
                .take()
                .unwrap_or_else(|| Failure::new(ErrorClass::Internal, "polled after completion"))
                .into())),
        }
    }
}

/// What an attempt's result says of the deployment's latency. An error
/// status in an `Ok` response (an inner service that does not turn them
/// into errors) is a failure too.
fn outcome<ResB>(result: &Result<Response<ResB>, BoxError>) -> Outcome {
    let failure = match result {
        Ok(response) => match OpenAiClassifier::new().classify_response(response) {
            Verdict::Failure(failure) => failure,
            Verdict::Success | Verdict::Watch(_) => return Outcome::Answered,
        },
        Err(error) if error.is::<CircuitOpen>() => return Outcome::Unmeasured,
        Err(error) => Failure::from_error(&**error),
    };
    if failure.counts_against_breaker() {
        Outcome::Failed
    } else {
        Outcome::Unmeasured
    }
}

/// The chosen deployment's breaker rejected the call. Open ones are only
/// chosen when every deployment of the group is open: waiting for one is not
/// worth a retry, so the rejection goes up at once — a 503 with
/// `Retry-After`, or the next model group of a fallback cascade. A
/// half-open breaker whose probes are all out rejects too, while other
/// deployments may be fine (`alternatives`): then it is an ordinary
/// retryable failure, without the open time as a `Retry-After`, and the
/// retry goes to another deployment.
fn fail_fast_when_open(error: BoxError, alternatives: bool) -> BoxError {
    match error.downcast_ref::<CircuitOpen>() {
        Some(_) if alternatives => Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the deployment's circuit breaker is letting no more calls through",
        )
        .into(),
        Some(open) => open.failure().clone().with_retryable(false).into(),
        None => error,
    }
}

impl crate::Gateway {
    /// This gateway's deployment picker — its groups, balancers and
    /// breakers — over `inner` instead of the providers. For benchmarks of
    /// the balancer alone; not a stable API.
    #[doc(hidden)]
    pub fn pick_deployment_over<S, B, ResB>(
        &self,
        inner: S,
    ) -> impl Service<Request<B>, Response = Response<ResB>, Error = BoxError> + Clone + use<S, B, ResB>
    where
        S: Service<Request<B>, Response = Response<ResB>, Error = BoxError> + Clone,
        B: Body,
    {
        PickDeployment::new(inner, self.app.breakers.clone(), self.app.groups.clone())
    }
}
