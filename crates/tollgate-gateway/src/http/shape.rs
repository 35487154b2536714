//! [`Shape`]: what differs between the routes that run the chat stack —
//! how a request becomes a chat request (and so which [`Operation`] it
//! asks for), and how the stack's answers and failures reach the client.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use tollgate_core::{BoxError, ChatRequest, Failure, Operation, RequestBody};
use tollgate_inbound::messages::Messages;
use tollgate_inbound::responses::Responses;
use tollgate_inbound::{InboundLayer, Protocol};
use tower::{Layer, ServiceExt};

use crate::response::GatewayBody;
use crate::stack::{Stack, StackBody};

/// A route's API over the chat stack.
pub(crate) trait Shape {
    /// The body of the route's successful responses, before the gateway
    /// wraps it.
    type Body;

    /// The chat request for a request body of the route; its
    /// [`operation`](ChatRequest::operation) is what the model group's mode
    /// must serve.
    fn parse(&self, bytes: Bytes) -> Result<ChatRequest, Failure>;

    /// Runs the request (its body a chat request, carrying its parsed
    /// view) through the stack; `sent` is the body as the client sent it.
    fn call(
        stack: Stack,
        request: Request<RequestBody>,
        sent: Bytes,
    ) -> impl Future<Output = Result<Response<Self::Body>, BoxError>> + Send;

    /// The body, for the gateway to send.
    fn body(body: Self::Body) -> GatewayBody;

    /// A failure in the route's error shape.
    fn error_response(failure: &Failure) -> Response<GatewayBody>;

    /// A rate limit's 429 (its headers made by the limits) in the route's
    /// error shape.
    fn limited(response: Response<GatewayBody>, failure: &Failure) -> Response<GatewayBody> {
        let (parts, _) = response.into_parts();
        let (_, body) = Self::error_response(failure).into_parts();
        Response::from_parts(parts, body)
    }
}

/// OpenAI's own routes, the stack's own shape, for the operation the route
/// names: `POST /v1/chat/completions`, `/v1/completions` (legacy) and
/// `/v1/embeddings`.
pub(crate) struct OpenAi(pub(crate) Operation);

impl Shape for OpenAi {
    type Body = StackBody;

    fn parse(&self, bytes: Bytes) -> Result<ChatRequest, Failure> {
        ChatRequest::parse_as(bytes, self.0)
    }

    fn call(
        stack: Stack,
        request: Request<RequestBody>,
        _sent: Bytes,
    ) -> impl Future<Output = Result<Response<StackBody>, BoxError>> + Send {
        stack.oneshot(request)
    }

    fn body(body: StackBody) -> GatewayBody {
        GatewayBody::forward(body)
    }

    fn error_response(failure: &Failure) -> Response<GatewayBody> {
        failure.to_response()
    }

    fn limited(response: Response<GatewayBody>, _: &Failure) -> Response<GatewayBody> {
        response
    }
}

/// `POST /v1/messages`: Anthropic's Messages API, translated by
/// `tollgate-inbound`.
impl Shape for Messages {
    type Body = tollgate_inbound::ResponseBody<StackBody, <Messages as Protocol>::Stream>;

    /// A chat completion ([`Operation::ChatCompletions`]).
    fn parse(&self, bytes: Bytes) -> Result<ChatRequest, Failure> {
        Messages::to_chat(&bytes)
    }

    fn call(
        stack: Stack,
        request: Request<RequestBody>,
        sent: Bytes,
    ) -> impl Future<Output = Result<Response<Self::Body>, BoxError>> + Send {
        // The layer takes the Anthropic request as its body (the chat view
        // beside it), to pass it on to Anthropic untouched.
        let request = inbound_request(request, sent);
        InboundLayer::<Messages>::new()
            .layer(stack)
            .oneshot(request)
    }

    fn body(body: Self::Body) -> GatewayBody {
        GatewayBody::messages(body)
    }

    fn error_response(failure: &Failure) -> Response<GatewayBody> {
        <Messages as Protocol>::error_response(failure)
    }
}

/// `POST /v1/responses`: OpenAI's Responses API, passed through to the
/// deployments that serve it (`native_responses`), bridged to chat by
/// `tollgate-inbound` for the others.
impl Shape for Responses {
    type Body = tollgate_inbound::ResponseBody<StackBody, <Responses as Protocol>::Stream>;

    /// A chat completion ([`Operation::ChatCompletions`]). A
    /// `previous_response_id` is for the deployment to judge: OpenAI's and
    /// Azure's keep state, the others refuse it.
    fn parse(&self, bytes: Bytes) -> Result<ChatRequest, Failure> {
        tollgate_inbound::responses::to_chat_stateful(&bytes)
    }

    fn call(
        stack: Stack,
        request: Request<RequestBody>,
        sent: Bytes,
    ) -> impl Future<Output = Result<Response<Self::Body>, BoxError>> + Send {
        let request = inbound_request(request, sent);
        InboundLayer::<Responses>::new()
            .layer(stack)
            .oneshot(request)
    }

    fn body(body: Self::Body) -> GatewayBody {
        GatewayBody::responses(body)
    }

    fn error_response(failure: &Failure) -> Response<GatewayBody> {
        <Responses as Protocol>::error_response(failure)
    }
}

/// The request an [`InboundLayer`] takes: the route's own body as the
/// client sent it, and the chat request it was already translated into (to
/// route it) as an `Arc<ChatRequest>` extension, which the layer makes the
/// body of the request below it.
fn inbound_request(request: Request<RequestBody>, sent: Bytes) -> Request<RequestBody> {
    let (mut parts, body) = request.into_parts();
    if let Some(chat) = body.chat() {
        parts.extensions.insert(Arc::clone(chat));
    }
    Request::from_parts(parts, RequestBody::new(sent))
}
