//! [`Cost`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier};
use tollgate_core::{BoxError, ChatRequest, RequestBody};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::meter::{Call, Meter, Shared};

/// Records what each call of the inner service costs; built by
/// [`CostLayer`](crate::CostLayer).
///
/// `poll_ready` is the inner service's. `call` reads the request (the
/// body's parsed view, parsed there once if the body is plain), asks a
/// streaming request's upstream for the usage chunk when the client did
/// not, and calls the inner service; the record is made when the answer is
/// complete (see the crate docs).
pub struct Cost<S, C = OpenAiClassifier> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    body_limit: usize,
    include_usage: bool,
}

impl<S, C> Cost<S, C> {
    pub(crate) fn new(
        inner: S,
        shared: Arc<Shared>,
        classifier: C,
        body_limit: usize,
        include_usage: bool,
    ) -> Self {
        Cost {
            inner,
            shared,
            classifier,
            body_limit,
            include_usage,
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

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, B> Service<Request<RequestBody>> for Cost<S, C>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    C: ClassifyResponse,
{
    type Response = Response<ResponseBody<B, C::Eos>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        // The body's parsed view; a plain body is parsed here, once, and
        // keeps the view for the layers below.
        request.body_mut().parse_chat();
        let chat = request.body().chat().map(|chat| &**chat);
        let meter = Meter::new(
            self.shared.clone(),
            Call {
                extensions: request.extensions(),
                model: chat.map(ChatRequest::model),
                stream: chat.is_some_and(ChatRequest::stream),
                request_bytes: chat.map(|c| c.bytes().len()),
            },
        );
        let with_usage = chat
            .filter(|chat| self.include_usage && chat.stream() && !chat.include_usage())
            .map(ChatRequest::with_include_usage)
            .filter(ChatRequest::include_usage);
        let strip = with_usage.is_some();
        if let Some(with_usage) = with_usage {
            tracing::debug!("cost: asking the upstream for the usage chunk");
            request.body_mut().set_chat(with_usage);
        }
        ResponseFuture::new(
            self.inner.call(request),
            meter,
            self.classifier.clone(),
            strip,
            self.body_limit,
        )
    }
}

impl<S: Clone, C: Clone> Clone for Cost<S, C> {
    fn clone(&self) -> Self {
        Cost {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            body_limit: self.body_limit,
            include_usage: self.include_usage,
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for Cost<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cost")
            .field("inner", &self.inner)
            .field("classifier", &self.classifier)
            .field("body_limit", &self.body_limit)
            .field("include_usage", &self.include_usage)
            .finish_non_exhaustive()
    }
}
