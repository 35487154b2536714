//! [`Balance`]: chooses the deployment of a model group for each attempt.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tollgate_core::classify::{Classified, OpenAiClassifier, Verdict};
use tollgate_core::extensions::{ModelGroup, Target, TriedDeployments};
use tollgate_core::{BoxError, ErrorClass, Failure, Scope};
use tower_service::Service;

use crate::balancer::{InFlight, Outcome, Pick, estimate_tokens};
use crate::config::Strategy;
use crate::group::{Group, Groups, ResolvedGroup};
use crate::tried::Tried;
use tollgate_core::Availability;

/// Picks a deployment of the request's model group (the [`ModelGroup`]
/// request extension, looked up in its groups unless the request carries
/// it [resolved](ResolvedGroup)) for each call, with the group's [`Balancer`](crate::Balancer),
/// so that a retry above it can land on another deployment; marks the
/// request with the deployment's [`Target`] and its
/// [extension](crate::GroupMember::extension), and the response with the
/// [`Target`] that answered.
///
/// A deployment with an `rpm` or a `tpm` is only called once the limits'
/// store admits the attempt (see [`Balancer::admit`]); while it refuses,
/// the next deployment is picked, and when none is left the attempt fails
/// with a 429 and the `Retry-After` of the first to have room again —
/// not retried (waiting is the client's call), but eligible for the
/// fallback cascade.
///
/// A retry prefers a deployment the request has not tried: the retry layer
/// above puts a [`TriedDeployments`] on the request, which its attempts
/// share and each pick is marked in. The service itself holds no
/// per-request state.
///
/// [`Balancer::admit`]: crate::Balancer::admit
#[derive(Debug)]
pub struct Balance<S, A, T> {
    inner: S,
    availability: A,
    groups: Groups<T>,
}

impl<S, A, T> Balance<S, A, T> {
    /// Balances the requests to `inner` over the deployments of `groups`,
    /// leaving out those `availability` says are open.
    pub fn new(inner: S, availability: A, groups: Groups<T>) -> Self {
        Balance {
            inner,
            availability,
            groups,
        }
    }
}

impl<S: Clone, A: Clone, T> Clone for Balance<S, A, T> {
    fn clone(&self) -> Self {
        Balance::new(
            self.inner.clone(),
            self.availability.clone(),
            self.groups.clone(),
        )
    }
}

impl<S, A, T, B, ResB> Service<Request<B>> for Balance<S, A, T>
where
    S: Service<Request<B>, Response = Response<ResB>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    A: Availability + Clone,
    T: Clone + Send + Sync + 'static,
    B: Body + Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResB, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let extensions = request.extensions();
        // Resolved once by the router, while it is still the request's
        // group (a reference count: the request moves on below).
        let group = extensions.get::<ModelGroup>().and_then(|ModelGroup(name)| {
            extensions
                .get::<ResolvedGroup<T>>()
                .and_then(|resolved| resolved.named(name))
                .or_else(|| self.groups.get(name))
                .cloned()
        });
        let Some(group) = &group else {
            return State::Failed {
                failure: Some(Failure::new(
                    ErrorClass::Internal,
                    "the request names no model group the gateway serves",
                )),
            }
            .into();
        };
        let tried = request.extensions().get::<TriedDeployments>();
        let balancer = group.balancer();
        let tokens = if balancer.strategy() == Strategy::UsageBased || balancer.has_limits() {
            let size = request.body().size_hint();
            estimate_tokens(size.exact().unwrap_or(size.lower()))
        } else {
            0
        };
        let pick = group.pick(
            &self.availability,
            &Tried::from_mask(tried.map_or(0, TriedDeployments::mask)),
            tokens,
        );
        if let Some(tried) = tried {
            tried.insert(pick.index);
        }
        if balancer.is_limited_member(pick.index) {
            if let Some(failure) = limited_group(group, pick.index) {
                return State::Failed {
                    failure: Some(failure),
                }
                .into();
            }
            // The attempt waits for the limits' store: the service that is
            // ready goes with it, a clone stays (tower's `mem::replace`
            // idiom).
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let admission = AdmissionCall {
                group: Arc::clone(group),
                availability: self.availability.clone(),
                tried: tried.cloned(),
                tokens,
            };
            return State::Admitting {
                future: Box::pin(admission.call(pick, inner, request)),
            }
            .into();
        }
        calling::<S, A, T, B, ResB>(group, &pick, &mut self.inner, request)
    }
}

/// Calls deployment `pick` of `group` with `request`.
fn calling<S, A, T, B, ResB>(
    group: &Group<T>,
    pick: &Pick,
    inner: &mut S,
    mut request: Request<B>,
) -> ResponseFuture<S::Future, ResB, A>
where
    S: Service<Request<B>, Response = Response<ResB>, Error = BoxError>,
    A: Availability + Clone,
    T: Clone + Send + Sync + 'static,
{
    let in_flight = group.balancer().begin(pick);
    let (target, extension) = group.member(pick.index);
    tracing::trace!(
        model_group = %group.name(),
        deployment = %target.deployment_id,
        "picked a deployment"
    );
    let target = target.clone();
    request.extensions_mut().insert(target.clone());
    request.extensions_mut().insert(extension.clone());
    State::Calling {
        inner: inner.call(request),
        target: Some(target),
        in_flight: Some(in_flight),
        alternatives: pick.alternatives,
    }
    .into()
}

/// The failure of an attempt whose chosen deployment `index` is known to
/// be at its limit — which the balancer only chooses when every deployment
/// of the group is out: 429, with the wait until the first has room.
fn limited_group<T>(group: &Group<T>, index: usize) -> Option<Failure> {
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
                group.name()
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
struct AdmissionCall<A, T> {
    group: Arc<Group<T>>,
    availability: A,
    /// The request's tried deployments, where the deployment finally
    /// called is marked too.
    tried: Option<TriedDeployments>,
    tokens: u64,
}

impl<A, T> AdmissionCall<A, T>
where
    A: Availability + Clone,
    T: Clone + Send + Sync + 'static,
{
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
        // Each refusal leaves the deployment out (the balancer knows it is
        // at its limit), not tried: the request's tried ones as they were.
        let tried = Tried::from_mask(self.tried.as_ref().map_or(0, TriedDeployments::mask));
        while !balancer.admit(pick.index, self.tokens).await {
            pick = self.group.pick(&self.availability, &tried, self.tokens);
            if let Some(failure) = limited_group(&self.group, pick.index) {
                return Err(failure.into());
            }
        }
        if let Some(tried) = &self.tried {
            tried.insert(pick.index);
        }
        calling::<S, A, T, B, ResB>(&self.group, &pick, &mut inner, request).await
    }
}

/// The boxed future of an attempt that waits for the limits' store.
type AdmittingFuture<ResB> = Pin<Box<dyn Future<Output = Result<Response<ResB>, BoxError>> + Send>>;

pin_project! {
    /// The future of [`Balance`]: the deployment's call, counted in
    /// flight until it completes or is dropped.
    pub struct ResponseFuture<F, ResB, A> {
        #[pin]
        state: State<F, ResB>,
        // Which `Availability` tells a rejection from other errors.
        availability: PhantomData<fn() -> A>,
    }
}

impl<F, ResB, A> From<State<F, ResB>> for ResponseFuture<F, ResB, A> {
    fn from(state: State<F, ResB>) -> Self {
        ResponseFuture {
            state,
            availability: PhantomData,
        }
    }
}

impl<F, ResB, A> std::fmt::Debug for ResponseFuture<F, ResB, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResB> {
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

impl<F, ResB, A> Future for ResponseFuture<F, ResB, A>
where
    F: Future<Output = Result<Response<ResB>, BoxError>>,
    A: Availability,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Calling {
                inner,
                target,
                in_flight,
                alternatives,
            } => {
                let result = ready!(inner.poll(cx));
                // Settled, and no longer in flight once dropped here.
                if let Some(mut in_flight) = in_flight.take() {
                    in_flight.settle(|| outcome::<_, A>(&result));
                }
                let mut response =
                    result.map_err(|error| fail_fast_when_open::<A>(error, *alternatives))?;
                if let Some(target) = target.take() {
                    response.extensions_mut().insert(target);
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Admitting { future } => future.as_mut().poll(cx),
            StateProj::Failed { failure } => Poll::Ready(Err(failure
                .take()
                .unwrap_or_else(|| Failure::new(ErrorClass::Internal, "polled after completion"))
                .into())),
        }
    }
}

/// What an attempt's result says of the deployment's latency. An error
/// status in an `Ok` response (an inner service that does not turn them
/// into errors) is a failure too.
fn outcome<ResB, A: Availability>(result: &Result<Response<ResB>, BoxError>) -> Outcome {
    let failure = match result {
        Ok(response) => match Classified::verdict(&OpenAiClassifier::new(), response) {
            Verdict::Failure(failure) => failure,
            Verdict::Success | Verdict::Watch(_) => return Outcome::Answered,
        },
        Err(error) if A::rejection(error).is_some() => return Outcome::Unmeasured,
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
fn fail_fast_when_open<A: Availability>(error: BoxError, alternatives: bool) -> BoxError {
    match A::rejection(&error) {
        Some(_) if alternatives => Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the deployment's circuit breaker is letting no more calls through",
        )
        .into(),
        Some(open) => open.with_retryable(false).into(),
        None => error,
    }
}
