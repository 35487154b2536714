//! [`CostAccounting`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier};
use tollgate_core::{BoxError, ChatRequest, RequestBody};
use tower_service::Service;

use crate::body::CostBody;
use crate::future::ResponseFuture;
use crate::meter::{Call, Meter, Shared};

/// Records what each call of the inner service costs; built by
/// [`CostLayer`](crate::CostLayer).
///
/// `poll_ready` is the inner service's. `call` reads the request (its
/// `Arc<ChatRequest>` extension, else its body, parsed once), asks a
/// streaming request's upstream for the usage chunk when the client did
/// not, and calls the inner service; the record is made when the answer is
/// complete (see the crate docs).
pub struct CostAccounting<S, C = OpenAiClassifier> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    body_limit: usize,
    include_usage: bool,
}

impl<S, C> CostAccounting<S, C> {
    pub(crate) fn new(
        inner: S,
        shared: Arc<Shared>,
        classifier: C,
        body_limit: usize,
        include_usage: bool,
    ) -> Self {
        CostAccounting {
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

impl<S, C, B> Service<Request<RequestBody>> for CostAccounting<S, C>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    C: ClassifyResponse,
{
    type Response = Response<CostBody<B, C::Eos>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        let chat = match request.extensions().get::<Arc<ChatRequest>>() {
            Some(chat) => Some(chat.clone()),
            None => {
                let parsed = request
                    .body()
                    .bytes()
                    .and_then(|bytes| ChatRequest::parse(bytes.clone()).ok())
                    .map(Arc::new);
                if let Some(chat) = &parsed {
                    // Parsed once, for the layers below too.
                    request.extensions_mut().insert(chat.clone());
                }
                parsed
            }
        };
        let meter = Meter::new(
            self.shared.clone(),
            Call {
                extensions: request.extensions(),
                model: chat.as_deref().map(ChatRequest::model),
                stream: chat.as_deref().is_some_and(ChatRequest::stream),
                request_bytes: chat.as_deref().map(|c| c.bytes().len()),
            },
        );
        let mut strip = false;
        if let Some(chat) = &chat
            && self.include_usage
            && chat.stream()
            && !chat.include_usage()
        {
            let with = chat.with_include_usage();
            if with.include_usage() {
                tracing::debug!("cost: asking the upstream for the usage chunk");
                *request.body_mut() = RequestBody::new(with.bytes().clone());
                request.extensions_mut().insert(Arc::new(with));
                strip = true;
            }
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

impl<S: Clone, C: Clone> Clone for CostAccounting<S, C> {
    fn clone(&self) -> Self {
        CostAccounting {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            body_limit: self.body_limit,
            include_usage: self.include_usage,
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for CostAccounting<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CostAccounting")
            .field("inner", &self.inner)
            .field("classifier", &self.classifier)
            .field("body_limit", &self.body_limit)
            .field("include_usage", &self.include_usage)
            .finish_non_exhaustive()
    }
}
