//! [`PickDeployment`]: chooses the deployment of a model group for each
//! attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tollgate_breaker::{Breakers, CircuitOpen};
use tollgate_core::extensions::{ModelGroup, Target};
use tollgate_core::{BoxError, ErrorClass, Failure};
use tower_service::Service;

use crate::app::Groups;

/// Picks a deployment of the request's model group (the [`ModelGroup`]
/// request extension) for each call, so that a retry above it can land on
/// another deployment; marks the request with the [`Deployment`] and its
/// [`Target`], and the response with the [`Target`] that answered.
///
/// [`Deployment`]: crate::app::Deployment
#[derive(Clone, Debug)]
pub(crate) struct PickDeployment<S> {
    inner: S,
    breakers: Breakers,
    groups: Groups,
}

impl<S> PickDeployment<S> {
    pub(crate) fn new(inner: S, breakers: Breakers, groups: Groups) -> Self {
        PickDeployment {
            inner,
            breakers,
            groups,
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for PickDeployment<S>
where
    S: Service<Request<B>, Response = Response<ResB>, Error = BoxError>,
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
        let deployment = Arc::clone(group.pick(&self.breakers));
        let target = deployment.target.clone();
        request.extensions_mut().insert(target.clone());
        request.extensions_mut().insert(deployment);
        PickFuture::Calling {
            inner: self.inner.call(request),
            target: Some(target),
        }
    }
}

pin_project! {
    /// The future of [`PickDeployment`].
    #[project = PickFutureProj]
    pub(crate) enum PickFuture<F> {
        Calling { #[pin] inner: F, target: Option<Target> },
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
            PickFutureProj::Calling { inner, target } => {
                let mut response = ready!(inner.poll(cx)).map_err(fail_fast_when_open)?;
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

/// The breaker rejects only when every deployment of the group is open (open
/// ones are skipped otherwise): waiting for it is not worth a retry, so the
/// rejection goes up at once — a 503 with `Retry-After`, or the next model
/// group of a fallback cascade.
fn fail_fast_when_open(error: BoxError) -> BoxError {
    match error.downcast_ref::<CircuitOpen>() {
        Some(open) => open.failure().clone().with_retryable(false).into(),
        None => error,
    }
}
