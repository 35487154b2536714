//! [`Fallback`].

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier};
use tollgate_core::extensions::{AllowedGroups, Deadline, ModelGroup, RequestFallbacks};
use tollgate_core::{BoxError, Redactor, RequestBody};
use tower_service::Service;

use crate::answer::{none_available, past_deadline};
use crate::body::ResponseBody;
use crate::error::{GaveUp, StopReason};
use crate::future::{Again, ResponseFuture, calling, failed};
use crate::health::{AlwaysAvailable, Health};
use crate::state::{Cascade, Group, Plan, Step};

/// What every service of one layer shares: the rules, the health source and
/// the classifier.
pub(crate) struct Shared<H, C> {
    pub(crate) plan: Arc<Plan>,
    pub(crate) health: Arc<H>,
    pub(crate) classifier: C,
}

/// Runs each request through a cascade of model groups; see the [crate
/// documentation](crate) for the rules.
///
/// Made by [`FallbackLayer`](crate::FallbackLayer).
///
/// # Requests
///
/// The request's [`ModelGroup`] extension names the group the client asked
/// for (without one, the model of the parsed request its
/// [`RequestBody`] carries; without either, the request passes through with
/// no cascade). Each attempt gets a clone of the request with its own
/// `ModelGroup`; a continuation also gets a new body, with the text already
/// sent as an assistant message at the end.
///
/// # Clone
///
/// The inner service must be [`Clone`]: the response future keeps a clone
/// to send to the next group with, and a stream's body keeps it for
/// continuations (wrap a service that is not in tower's `Buffer`).
///
/// # Readiness
///
/// `poll_ready` is the inner service's. `call` sends the first attempt on
/// the service that was just polled ready; each later attempt waits for the
/// kept clone to be ready again.
///
/// # Errors
///
/// `poll_ready` returns the inner service's error. The response future
/// returns a [`GaveUp`](crate::GaveUp) whenever it ends in an error.
pub struct Fallback<S, H = AlwaysAvailable, C = OpenAiClassifier> {
    inner: S,
    shared: Arc<Shared<H, C>>,
}

impl<S, H, C> Fallback<S, H, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<H, C>>) -> Self {
        Fallback { inner, shared }
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
}

impl<S, H, C, B> Service<Request<RequestBody>> for Fallback<S, H, C>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    H: Health,
    C: ClassifyResponse,
{
    type Response = Response<ResponseBody<B, C::Eos>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, H, C, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let shared = self.shared.clone();
        let extensions = request.extensions();
        let deadline = extensions.get::<Deadline>().map(|deadline| deadline.0);
        // What a broken stream's error event is redacted with.
        let redactor = extensions.get::<Redactor>().cloned();
        let named = extensions.get::<ModelGroup>().map(|group| group.0.clone());
        let chat = request.body().chat();
        let stream = chat.is_none_or(|chat| chat.stream());
        let Some(origin) = named
            .clone()
            .or_else(|| chat.map(|chat| Group::from(chat.model())))
        else {
            // Nothing names a group: no cascade, a stream still guarded.
            let future = calling(self.inner.call(request));
            return ResponseFuture::new(future, None, None, shared, deadline, redactor);
        };

        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            tracing::info!(group = %origin, "fallback: the deadline passed before the first call");
            let error = GaveUp::new(0, StopReason::Deadline, past_deadline().into());
            return ResponseFuture::new(
                failed(error.into()),
                None,
                None,
                shared,
                deadline,
                redactor,
            );
        }
        let mut cascade = Cascade::new(origin.clone());
        cascade.allowed = extensions.get::<AllowedGroups>().cloned();
        cascade.requested = extensions.get::<RequestFallbacks>().cloned().map(Arc::new);
        let allowed = cascade.allowed();
        let available = |group: &str| allowed(group) && shared.health.available(group);
        let first = match cascade.first(&shared.plan, &available) {
            Step::Try(group) => group,
            Step::Stop(reason) => {
                tracing::info!(group = %origin, %reason, "fallback: giving up at once");
                let error = none_available(shared.health.retry_after(&origin));
                return ResponseFuture::new(
                    failed(error),
                    Some(cascade),
                    None,
                    shared,
                    deadline,
                    redactor,
                );
            }
        };
        if named.as_ref() != Some(&first) {
            request.extensions_mut().insert(ModelGroup(first.clone()));
        }
        let plan = &shared.plan;
        let keep = first != origin
            || cascade.may_fall_back(plan)
            || (stream && plan.max_continuations > 0);
        if !keep {
            // Nowhere else to go: neither a copy of the request nor a
            // service is kept.
            let future = calling(self.inner.call(request));
            return ResponseFuture::new(future, Some(cascade), None, shared, deadline, redactor);
        }
        let copy = request.clone();
        // The service polled ready makes this call; the clone left in its
        // place must be polled ready before the next one (tower-service's
        // `mem::replace` idiom). The future keeps the called one for the
        // next groups and polls it ready again before each.
        let clone = self.inner.clone();
        let mut service = mem::replace(&mut self.inner, clone);
        let future = calling(service.call(request));
        let again = Again {
            service,
            request: copy,
        };
        ResponseFuture::new(
            future,
            Some(cascade),
            Some(again),
            shared,
            deadline,
            redactor,
        )
    }
}

impl<S: Clone, H, C> Clone for Fallback<S, H, C> {
    fn clone(&self) -> Self {
        Fallback {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, H, C> fmt::Debug for Fallback<S, H, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("plan", &self.shared.plan)
            .finish_non_exhaustive()
    }
}
