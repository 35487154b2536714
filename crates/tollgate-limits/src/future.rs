//! [`ResponseFuture`]: the future of a call through the rate limits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tollgate_core::BoxError;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::check::Admission;
use crate::error::RateLimited;
use crate::store::BoxFuture;

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    ///
    /// First the checks (a store round trip each, for the limits the key
    /// has), then — if they all pass — the inner call, on the service that
    /// was made ready. A rejection completes with a [`RateLimited`] error
    /// and never calls the inner service. Dropping the future before the
    /// inner service answers settles the request (its permit comes back).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Checking {
            check: BoxFuture<'static, Result<Admission, RateLimited>>,
            inner: Option<S>,
            request: Option<Request<B>>,
        },
        Called {
            #[pin]
            future: S::Future,
            // `None` for a request without limits.
            admission: Option<Admission>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn unlimited(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Called {
                future,
                admission: None,
            },
        }
    }

    pub(crate) fn checking(
        check: BoxFuture<'static, Result<Admission, RateLimited>>,
        inner: S,
        request: Request<B>,
    ) -> Self {
        ResponseFuture {
            state: State::Checking {
                check,
                inner: Some(inner),
                request: Some(request),
            },
        }
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResB>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Checking {
                    check,
                    inner,
                    request,
                } => {
                    let admission = match ready!(check.as_mut().poll(cx)) {
                        Ok(admission) => admission,
                        Err(rejected) => return Poll::Ready(Err(Box::new(rejected))),
                    };
                    let mut service = inner
                        .take()
                        .expect("ResponseFuture polled after completion");
                    let request = request
                        .take()
                        .expect("ResponseFuture polled after completion");
                    State::Called {
                        future: service.call(request),
                        admission: Some(admission),
                    }
                }
                StateProj::Called { future, admission } => {
                    let result = ready!(future.poll(cx));
                    let admission = admission.take();
                    return Poll::Ready(match result {
                        Ok(mut response) => {
                            if let Some(admission) = &admission {
                                admission.headers().apply(response.headers_mut());
                            }
                            Ok(response.map(|body| ResponseBody::new(body, admission)))
                        }
                        // Dropping the admission settles the request.
                        Err(error) => Err(error.into()),
                    });
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "checking",
            State::Called {
                admission: None, ..
            } => "unlimited",
            State::Called { .. } => "called",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
