//! [`InboundLayer`] and its service, [`Inbound`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tollgate_core::extensions::NativeRequest;
use tollgate_core::{BoxError, ChatRequest, RequestBody};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::protocol::Protocol;

/// Serves the API `P` (Anthropic's Messages, OpenAI's Responses) with an
/// inner OpenAI chat-completions service: requests are translated into chat
/// requests, chat answers and streams back into `P`'s shapes.
///
/// The inner service is the whole chat stack — retries, breakers,
/// fallbacks, limits, cost — so every request of `P` gets what a chat
/// request gets. It takes a `Request<RequestBody>` whose body is the chat
/// request, carrying its parsed [`ChatRequest`] view (as the gateway's
/// layers expect), and answers an OpenAI `chat.completion` or an SSE stream
/// of chunks; its failures are `Err`s holding a classified
/// [`Failure`](tollgate_core::Failure), which the service passes on
/// unchanged for the caller to render with [`Protocol::error_response`]
/// (it may want the attempts and limits they carry). An `Ok` error status
/// from the inner service is translated into `P`'s error shape.
pub struct InboundLayer<P> {
    _protocol: PhantomData<fn() -> P>,
}

impl<P> InboundLayer<P> {
    /// The layer.
    pub fn new() -> Self {
        InboundLayer {
            _protocol: PhantomData,
        }
    }
}

impl<P> Default for InboundLayer<P> {
    fn default() -> Self {
        InboundLayer::new()
    }
}

impl<P> Clone for InboundLayer<P> {
    fn clone(&self) -> Self {
        InboundLayer::new()
    }
}

impl<P> fmt::Debug for InboundLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundLayer")
            .field("protocol", &std::any::type_name::<P>())
            .finish()
    }
}

impl<S, P> Layer<S> for InboundLayer<P> {
    type Service = Inbound<S, P>;

    fn layer(&self, inner: S) -> Inbound<S, P> {
        Inbound {
            inner,
            _protocol: PhantomData,
        }
    }
}

/// The service of [`InboundLayer`].
pub struct Inbound<S, P> {
    inner: S,
    _protocol: PhantomData<fn() -> P>,
}

impl<S: Clone, P> Clone for Inbound<S, P> {
    fn clone(&self) -> Self {
        Inbound {
            inner: self.inner.clone(),
            _protocol: PhantomData,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for Inbound<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("inner", &self.inner)
            .field("protocol", &std::any::type_name::<P>())
            .finish()
    }
}

impl<S, P> Inbound<S, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, P, B> Service<Request<RequestBody>> for Inbound<S, P>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    P: Protocol,
    B: Body<Data = bytes::Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<B, P::Stream>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, B, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// Translates the request's body, unless the caller already did: a
    /// request carrying an `Arc<ChatRequest>` (made with
    /// [`Protocol::to_chat`], say to route by its model first) goes on as
    /// that chat request. The body is the request of `P` either way; when
    /// `P` is a provider's API ([`Protocol::NATIVE`]) it goes on beside the
    /// chat request as a
    /// [`NativeRequest`](tollgate_core::extensions::NativeRequest).
    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let original = body.bytes().cloned().unwrap_or_default();
        let chat = match parts.extensions.remove::<Arc<ChatRequest>>() {
            Some(chat) => chat,
            None => match P::to_chat(&original) {
                Ok(chat) => Arc::new(chat),
                Err(failure) => return ResponseFuture::failed(failure),
            },
        };
        if let Some(api) = P::NATIVE {
            parts.extensions.insert(NativeRequest {
                api,
                body: original,
                message_count: chat.message_count(),
            });
        }
        // Below, the body is the chat request, carrying its parsed view.
        let body = RequestBody::from_chat(chat);
        ResponseFuture::new(self.inner.call(Request::from_parts(parts, body)))
    }
}
