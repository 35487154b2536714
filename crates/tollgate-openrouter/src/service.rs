//! [`OpenRouter`]: the service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tollgate_core::{BoxError, Redactor};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::layer::Shared;

/// Normalizes OpenRouter for the layers above; built by
/// [`OpenRouterLayer`](crate::OpenRouterLayer).
///
/// Requests get the base URL, the key and the attribution headers.
/// Responses come back as `Ok` only for a success in OpenAI's shape; every
/// failure — an error status, an error inside a 200 body or at the start of
/// a stream, the inner service's own error — is an `Err` whose source chain
/// holds a classified [`Failure`](tollgate_core::Failure).
#[derive(Debug, Clone)]
pub struct OpenRouter<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> OpenRouter<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        OpenRouter { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for OpenRouter<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        self.shared.prepare.apply(&mut request);
        // What a stream's error event is redacted with.
        let redactor = request.extensions().get::<Redactor>().cloned();
        ResponseFuture::new(self.inner.call(request), self.shared.clone(), redactor)
    }
}
