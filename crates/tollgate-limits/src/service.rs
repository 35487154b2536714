//! [`RateLimit`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tollgate_core::BoxError;
use tower_service::Service;

use crate::check::admit_all;
use crate::future::ResponseFuture;
use crate::limits::{KeyLimits, SharedLimits, estimate_tokens};
use crate::store::Store;
use tollgate_core::extensions::UsageReport;
use tollgate_core::time::Clock;

/// Enforces each request's [`KeyLimits`] on an inner service; built by
/// [`RateLimitLayer`](crate::RateLimitLayer).
///
/// `poll_ready` is the inner service's. `call` reads the request's
/// `Arc<KeyLimits>` and `Arc<SharedLimits>`: without any (or with no limit
/// set) the request goes straight through. Otherwise the [`ResponseFuture`] checks rpm, tpm,
/// parallel and budget in that order against the store and rejects with a
/// [`RateLimited`](crate::RateLimited) error, or calls the inner service —
/// the one made ready, taken with the `mem::replace` idiom, so the inner
/// service must be `Clone`.
pub struct RateLimit<S> {
    inner: S,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl<S> RateLimit<S> {
    /// Enforces limits on `inner` with `store`, budget windows on `clock`.
    pub fn new(inner: S, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        RateLimit {
            inner,
            store,
            clock,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the limiter.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    ReqB: 'static,
{
    type Response = Response<crate::ResponseBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Honest readiness: a limit rejects in `call`, never by staying
        // pending here (the next request may be another key's).
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let extensions = request.extensions();
        let shared = extensions.get::<Arc<SharedLimits>>();
        let subjects: Vec<Arc<KeyLimits>> = extensions
            .get::<Arc<KeyLimits>>()
            .into_iter()
            .chain(shared.into_iter().flat_map(|shared| shared.0.iter()))
            .filter(|limits| !limits.is_unlimited())
            .cloned()
            .collect();
        if subjects.is_empty() {
            return ResponseFuture::unlimited(self.inner.call(request));
        }
        let tokens = match subjects.iter().any(|limits| limits.tpm.is_some()) {
            true => estimate_tokens(&request),
            false => 0,
        };
        let settles = subjects
            .iter()
            .any(|limits| limits.tpm.is_some() || limits.max_budget.is_some());
        let report = settles.then(|| {
            let extensions = request.extensions_mut();
            match extensions.get::<Arc<UsageReport>>() {
                Some(report) => report.clone(),
                None => {
                    let report = Arc::new(UsageReport::new());
                    extensions.insert(report.clone());
                    report
                }
            }
        });
        let check = Box::pin(admit_all(
            self.store.clone(),
            self.clock.clone(),
            subjects,
            tokens,
            report,
            Instant::now(),
        ));
        // Call the service that was made ready; keep a clone for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::checking(check, inner, request)
    }
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
