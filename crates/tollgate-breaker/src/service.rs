//! [`CircuitBreaker`]: the service.

use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tollgate_core::BoxError;
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::breakers::Breakers;
use crate::error::CircuitOpen;
use crate::future::ResponseFuture;
use crate::key::{KeyExtractor, WholeService};

/// Guards an inner service with one circuit breaker per key; built by
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// `poll_ready` is the inner service's. `call` finds the request's key; an
/// open breaker rejects the call at once with [`CircuitOpen`] (the inner
/// service is not called), a closed or probing one passes it on and settles
/// its outcome — when the answer comes for errors, at the end of the body
/// for successes and streams.
pub struct CircuitBreaker<S, K = WholeService, C = OpenAiClassifier> {
    inner: S,
    key: K,
    classifier: C,
    breakers: Breakers,
}

impl<S, K, C> CircuitBreaker<S, K, C> {
    /// Guards `inner` with the breakers of `breakers`, keyed by `key`,
    /// judging outcomes with `classifier`.
    pub fn new(inner: S, key: K, classifier: C, breakers: Breakers) -> Self {
        CircuitBreaker {
            inner,
            key,
            classifier,
            breakers,
        }
    }

    /// The breakers this service shares with its layer.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the breaker.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, C, ReqB, ResB> Service<Request<ReqB>> for CircuitBreaker<S, K, C>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    K: KeyExtractor<ReqB>,
    C: ClassifyResponse,
    ResB: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResB, C::Eos>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Honest readiness: an open breaker rejects in `call`, never by
        // staying pending here (which would stall callers that do not know
        // which key their next request has).
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let entry = self
            .key
            .extract(&request)
            .and_then(|key| self.breakers.entry(&key));
        let permit = match entry {
            None => None,
            Some(entry) => match entry.admit() {
                Ok(permit) => Some(permit),
                Err(retry_after) => {
                    let error = CircuitOpen::new(entry.key().clone(), retry_after);
                    return ResponseFuture::rejected(error, self.classifier.clone());
                }
            },
        };
        ResponseFuture::called(self.inner.call(request), permit, self.classifier.clone())
    }
}

impl<S: Clone, K: Clone, C: Clone> Clone for CircuitBreaker<S, K, C> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
            breakers: self.breakers.clone(),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, C: fmt::Debug> fmt::Debug for CircuitBreaker<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("key", &self.key)
            .field("classifier", &self.classifier)
            .field("breakers", &self.breakers)
            .finish()
    }
}
