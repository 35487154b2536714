//! [`PickDeployment`]: chooses the deployment of a model group for each
//! attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tollgate_breaker::{Breakers, CircuitOpen};
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier, Verdict};
use tollgate_core::extensions::{Attempt, ModelGroup, Target};
use tollgate_core::{BoxError, ErrorClass, Failure, Scope};
use tower_service::Service;

use crate::app::{Group, Groups};
use crate::balance::{InFlight, Outcome, Pick, Strategy, Tried, estimate_tokens};

/// Picks a deployment of the request's model group (the [`ModelGroup`]
/// request extension) for each call, with the group's balancer (see
/// [`balance`](crate::balance)), so that a retry above it can land on
/// another deployment; marks the request with the [`Deployment`] and its
/// [`Target`], and the response with the [`Target`] that answered.
///
/// A deployment with an `rpm` or a `tpm` is only called once the limits'
/// store admits the attempt (see [`Balancer::admit`]); while it refuses,
/// the next deployment is picked, and when none is left the attempt fails
/// with a 429 and the `Retry-After` of the first to have room again —
/// not retried (waiting is the client's call), but eligible for the
/// fallback cascade.
///
/// It remembers what the current request tried ([`Tried`]) in itself: the
/// retry layer above resends with the same service, and a clone starts
/// afresh.
///
/// [`Deployment`]: crate::app::Deployment
/// [`Balancer::admit`]: crate::balance::Balancer::admit
#[derive(Debug)]
pub(crate) struct PickDeployment<S> {
    inner: S,
    breakers: Breakers,
    groups: Groups,
    tried: Tried,
    /// Deployments an admission moved the current request to (as bits, see
    /// [`Tried::bit`]): the admission runs in the response future, which
    /// tells the service here. Made on the first admission.
    admitted: Option<Arc<AtomicU64>>,
}

impl<S> PickDeployment<S> {
    pub(crate) fn new(inner: S, breakers: Breakers, groups: Groups) -> Self {
        PickDeployment {
            inner,
            breakers,
            groups,
            tried: Tried::default(),
            admitted: None,
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
    S: Service<Request<B>, Response = Response<ResB>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = PickFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
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
        if let Some(admitted) = &self.admitted {
            self.tried.insert_mask(admitted.swap(0, Ordering::Relaxed));
        }
        self.tried.begin(attempt);
        let balancer = group.balancer();
        let tokens = if balancer.strategy() == Strategy::UsageBased || balancer.has_limits() {
            let size = request.body().size_hint();
            estimate_tokens(size.exact().unwrap_or(size.lower()))
        } else {
            0
        };
        let pick = group.pick(&self.breakers, &self.tried, tokens);
        self.tried.insert(pick.index);
        if balancer.is_limited_member(pick.index) {
            if let Some(failure) = limited_group(group, pick.index) {
                return PickFuture::Failed {
                    failure: Some(failure),
                };
            }
            // The attempt waits for the limits' store: the service that is
            // ready goes with it, a clone stays (tower's `mem::replace`
            // idiom).
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let admitted = self.admitted.get_or_insert_with(Default::default).clone();
            let admission = Admission {
                group: Arc::clone(group),
                breakers: self.breakers.clone(),
                tried: self.tried,
                tokens,
                admitted,
            };
            return PickFuture::Admitting {
                future: Box::pin(admission.call(pick, inner, request)),
            };
        }
        calling(group, &pick, &mut self.inner, request)
    }
}

/// Calls deployment `pick` of `group` with `request`.
fn calling<S, B, ResB>(
    group: &Group,
    pick: &Pick,
    inner: &mut S,
    mut request: Request<B>,
) -> PickFuture<S::Future, ResB>
where
    S: Service<Request<B>, Response = Response<ResB>, Error = BoxError>,
{
    let in_flight = group.balancer().begin(pick);
    let deployment = Arc::clone(group.deployment(pick.index));
    tracing::trace!(
        model_group = %group.name,
        deployment = %deployment.target.deployment_id,
        "picked a deployment"
    );
    let target = deployment.target.clone();
    request.extensions_mut().insert(target.clone());
    request.extensions_mut().insert(deployment);
    PickFuture::Calling {
        inner: inner.call(request),
        target: Some(target),
        in_flight: Some(in_flight),
        alternatives: pick.alternatives,
    }
}

/// The failure of an attempt whose chosen deployment `index` is known to
/// be at its limit — which the balancer only chooses when every deployment
/// of the group is out: 429, with the wait until the first has room.
fn limited_group(group: &Group, index: usize) -> Option<Failure> {
    let now = Instant::now();
    let balancer = group.balancer();
    balancer.limited_for(index, now)?;
    let wait = balancer.shortest_wait(now).unwrap_or(Duration::ZERO);
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Some(
        Failure::new(
            ErrorClass::RateLimited,
            format!(
                "Every deployment of the model group `{}` is at its rpm/tpm limit. Retry after {seconds} s.",
                group.name
            ),
        )
        .with_scope(Scope::Model)
        .with_subkind("deployment_limit")
        .with_retry_after(wait)
        // Waiting is the client's call; another model group may answer now.
        .with_retryable(false),
    )
}

/// An attempt on a deployment with limits: admitted by the limits' store
/// before it is sent.
struct Admission {
    group: Arc<Group>,
    breakers: Breakers,
    /// The request's tried deployments when the attempt began.
    tried: Tried,
    tokens: u64,
    /// Where the deployment finally called is told to the service.
    admitted: Arc<AtomicU64>,
}

impl Admission {
    /// Asks the store about `pick` and, while it refuses, about the next
    /// deployment the balancer picks (each refusal leaves one more out, so
    /// this ends within the group's size); then calls the admitted one with
    /// `inner`, which is ready.
    async fn call<S, B, ResB>(
        self,
        mut pick: Pick,
        mut inner: S,
        request: Request<B>,
    ) -> Result<Response<ResB>, BoxError>
    where
        S: Service<Request<B>, Response = Response<ResB>, Error = BoxError>,
    {
        let balancer = self.group.balancer();
        while !balancer.admit(pick.index, self.tokens).await {
            pick = self.group.pick(&self.breakers, &self.tried, self.tokens);
            if let Some(failure) = limited_group(&self.group, pick.index) {
                return Err(failure.into());
            }
        }
        self.admitted
            .fetch_or(Tried::bit(pick.index), Ordering::Relaxed);
        calling(&self.group, &pick, &mut inner, request).await
    }
}

/// The boxed future of an attempt that waits for the limits' store.
type AdmittingFuture<ResB> = Pin<Box<dyn Future<Output = Result<Response<ResB>, BoxError>> + Send>>;

pin_project! {
    /// The future of [`PickDeployment`]: the deployment's call, counted in
    /// flight until it completes or is dropped.
    #[project = PickFutureProj]
    pub(crate) enum PickFuture<F, ResB> {
        Calling {
            #[pin]
            inner: F,
            target: Option<Target>,
            in_flight: Option<InFlight>,
            alternatives: bool,
        },
        /// Admission by the limits' store, then the call (boxed: only
        /// deployments with limits take this way).
        Admitting { future: AdmittingFuture<ResB> },
        Failed { failure: Option<Failure> },
    }
}

impl<F, ResB> Future for PickFuture<F, ResB>
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
            PickFutureProj::Admitting { future } => future.as_mut().poll(cx),
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
        S: Service<Request<B>, Response = Response<ResB>, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        ResB: Send + 'static,
    {
        let app = self.app();
        PickDeployment::new(inner, app.breakers.clone(), app.groups.clone())
    }
}
