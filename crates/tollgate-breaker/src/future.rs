//! [`ResponseFuture`]: the future of a call through a breaker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tollgate_core::BoxError;
use tollgate_core::classify::{Classified, ClassifyResponse, Verdict};
use tollgate_core::sse::SharedEvents;

use crate::body::ResponseBody;
use crate::breakers::Permit;
use crate::error::CircuitOpen;

pin_project! {
    /// The response future of [`CircuitBreaker`](crate::CircuitBreaker).
    ///
    /// Either the inner call, to be settled when it answers, or a rejection
    /// that is ready at once. Dropping it before the answer counts the call
    /// as neither success nor failure (a probe frees its slot).
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            // `None` for a call no breaker guards.
            permit: Option<Permit>,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, permit: Option<Permit>, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called { future, permit },
            classifier,
        }
    }

    pub(crate) fn rejected(error: CircuitOpen, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
            classifier,
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
    C: ClassifyResponse,
{
    type Output = Result<Response<ResponseBody<B, C::Eos>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (future, permit) = match this.kind.project() {
            KindProj::Rejected { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                return Poll::Ready(Err(error.into()));
            }
            KindProj::Called { future, permit } => (future, permit),
        };
        let result = ready!(future.poll(cx));
        let Some(permit) = permit.take() else {
            return Poll::Ready(
                result
                    .map(|response| response.map(ResponseBody::unwatched))
                    .map_err(Into::into),
            );
        };
        match result {
            Ok(mut response) => {
                let response = match Classified::once(this.classifier, &mut response) {
                    Verdict::Success => response.map(|body| ResponseBody::complete(body, permit)),
                    Verdict::Watch(eos) => {
                        let mut response = response;
                        let shared = SharedEvents::of(response.extensions_mut());
                        response.map(|body| ResponseBody::stream(body, eos, permit, shared))
                    }
                    Verdict::Failure(failure) => {
                        // The caller still gets the upstream's answer; the
                        // breaker has already counted it.
                        permit.failure(&failure);
                        response.map(ResponseBody::unwatched)
                    }
                };
                Poll::Ready(Ok(response))
            }
            Err(error) => {
                let error = error.into();
                permit.error(this.classifier.classify_error(&*error), &*error);
                Poll::Ready(Err(error))
            }
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Called { permit: None, .. } => "unguarded",
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
