//! What answers a deployment: the upstream client or the mock provider.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier, Verdict};
use tollgate_core::extensions::{Deadline, NativeAnswer, NativeApi, NativeRequest};
use tollgate_core::{
    BoxError, ChatRequest, ErrorClass, Failure, Operation, RequestBody, TimeoutKind,
};
use tower::ServiceExt as _;
use tower_service::Service;

use crate::deployment::{Deployment, DeploymentProvider, NativeDeployment};
use crate::learned::Phase;
use crate::mock::MockBody;
use tollgate_providers::anthropic::Anthropic;
use tollgate_providers::azure::Azure;
use tollgate_providers::bedrock::Bedrock;
use tollgate_providers::embeddings::{Embed, Embeddings};
use tollgate_providers::gemini::Gemini;
use tollgate_providers::{Protocol, Provider};

use crate::upstream::{Endpoint, TimedBody, UpstreamClient, gateway_headers};

mod headers;

pub(crate) use headers::RATE_LIMIT_PREFIX;

/// Anthropic's stream translation.
type AnthropicStream = <Anthropic as Protocol>::Stream;
/// Azure's stream translation.
type AzureStream = <Azure as Protocol>::Stream;
/// Vertex AI's stream translation (Gemini or Claude).
type VertexStream = <tollgate_providers::vertex::Vertex as Protocol>::Stream;
/// Gemini's stream translation.
type GeminiStream = <Gemini as Protocol>::Stream;
/// Bedrock's event-stream translation.
type BedrockStream = <Bedrock as Protocol>::Stream;

pin_project! {
    /// The body of a provider's response, whichever provider it was.
    #[project = ProviderBodyProj]
    pub(crate) enum ProviderBody {
        /// From a real upstream over HTTP.
        Http { #[pin] body: TimedBody<Incoming> },
        /// From OpenRouter, normalised.
        OpenRouter { #[pin] body: tollgate_openrouter::ResponseBody<TimedBody<Incoming>> },
        /// From Anthropic, translated into OpenAI's shape.
        Anthropic { #[pin] body: tollgate_providers::ResponseBody<TimedBody<Incoming>, AnthropicStream> },
        /// From Azure OpenAI, its content-filter annotations dropped.
        Azure { #[pin] body: tollgate_providers::ResponseBody<TimedBody<Incoming>, AzureStream> },
        /// From Vertex AI (Gemini or Claude), translated into OpenAI's shape.
        Vertex { #[pin] body: tollgate_providers::ResponseBody<TimedBody<Incoming>, VertexStream> },
        /// From Google's Gemini API, translated into OpenAI's shape.
        Gemini { #[pin] body: tollgate_providers::ResponseBody<TimedBody<Incoming>, GeminiStream> },
        /// From AWS Bedrock (Converse), translated into OpenAI's shape.
        Bedrock { #[pin] body: tollgate_providers::ResponseBody<TimedBody<Incoming>, BedrockStream> },
        /// From the in-process mock provider (boxed: the largest body, and
        /// the rarest, would set the size of every response's).
        Mock { body: Pin<Box<TimedBody<MockBody>>> },
    }
}

impl Body for ProviderBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProviderBodyProj::Http { body } => body.poll_frame(cx),
            ProviderBodyProj::OpenRouter { body } => body.poll_frame(cx),
            ProviderBodyProj::Anthropic { body } => body.poll_frame(cx),
            ProviderBodyProj::Azure { body } => body.poll_frame(cx),
            ProviderBodyProj::Vertex { body } => body.poll_frame(cx),
            ProviderBodyProj::Gemini { body } => body.poll_frame(cx),
            ProviderBodyProj::Bedrock { body } => body.poll_frame(cx),
            ProviderBodyProj::Mock { body } => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProviderBody::Http { body } => body.is_end_stream(),
            ProviderBody::OpenRouter { body } => body.is_end_stream(),
            ProviderBody::Anthropic { body } => body.is_end_stream(),
            ProviderBody::Azure { body } => body.is_end_stream(),
            ProviderBody::Vertex { body } => body.is_end_stream(),
            ProviderBody::Gemini { body } => body.is_end_stream(),
            ProviderBody::Bedrock { body } => body.is_end_stream(),
            ProviderBody::Mock { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProviderBody::Http { body } => body.size_hint(),
            ProviderBody::OpenRouter { body } => body.size_hint(),
            ProviderBody::Anthropic { body } => body.size_hint(),
            ProviderBody::Azure { body } => body.size_hint(),
            ProviderBody::Vertex { body } => body.size_hint(),
            ProviderBody::Gemini { body } => body.size_hint(),
            ProviderBody::Bedrock { body } => body.size_hint(),
            ProviderBody::Mock { body } => body.size_hint(),
        }
    }
}

/// The bottom of the gateway's stack: sends a request to the deployment
/// chosen for it (the [`Deployment`] request extension) — over HTTP or to the
/// mock provider — under that deployment's deadlines, and turns every
/// upstream failure into `Err(Failure)`, so the layers above see a success or
/// a classified error, never an error status. Of an answer's headers, only
/// those on the [allow-list](headers::allowed) go up.
#[derive(Clone, Debug)]
pub(crate) struct ProviderService {
    client: UpstreamClient,
}

impl ProviderService {
    pub(crate) fn new(client: UpstreamClient) -> Self {
        ProviderService { client }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<Request<RequestBody>> for ProviderService {
    type Response = Response<ProviderBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ProviderBody>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let deployment = request.extensions().get::<Arc<Deployment>>().cloned();
        let chat = request.body().chat().cloned();
        let as_sent = request.extensions().get::<NativeRequest>().cloned();
        let deadline = request.extensions().get::<Deadline>().map(|d| d.0);
        let client = self.client.clone();
        Box::pin(async move {
            let (Some(deployment), Some(chat)) = (deployment, chat) else {
                return Err(Failure::new(
                    ErrorClass::Internal,
                    "no deployment was chosen for the request",
                )
                .into());
            };
            call_provider(client, &deployment, &chat, as_sent, deadline)
                .await
                // The one place the upstream's headers are filtered.
                .map(headers::allow_listed)
                .map_err(BoxError::from)
        })
    }
}

/// Sends the request to the deployment's provider, under its deadlines.
async fn call_provider(
    client: UpstreamClient,
    deployment: &Deployment,
    chat: &ChatRequest,
    as_sent: Option<NativeRequest>,
    deadline: Option<Instant>,
) -> Result<Response<ProviderBody>, Failure> {
    // A stream's deadlines are learned from the deployment's past streams
    // (`learned`), which it then adds to.
    let (mut timeouts, timings) = if chat.stream() {
        let cold = deployment.stream_timeouts;
        let timeouts = if deployment.learn_stream_deadlines {
            deployment.timings.stream_timeouts(cold, chat.bytes().len())
        } else {
            cold
        };
        (timeouts, Some(&deployment.timings))
    } else {
        (deployment.timeouts, None)
    };
    // An attempt gets the time the request has left, never more: the
    // request's deadline is what the client was promised.
    if let Some(deadline) = deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        timeouts.total = Some(timeouts.total.map_or(left, |total| total.min(left)));
    }
    if let Some(native) = as_sent
        .as_ref()
        .filter(|n| n.api == NativeApi::OpenAiResponses)
    {
        // A Responses request: as written to a deployment that serves the
        // API itself; refused by one served through chat when it continues
        // a stored response.
        if crate::native_responses::serves(deployment, chat, native) {
            let request = upstream_request(deployment, chat, None);
            let (mut client, request) = crate::native_responses::request(
                client, deployment, chat, native, request, timeouts, timings,
            )?;
            let response = client
                .call(request)
                .await
                .map_err(|error| Failure::from_error(&*error))?;
            let mut response =
                reject_errors(response.map(|body| ProviderBody::Http { body })).await?;
            response
                .extensions_mut()
                .insert(NativeAnswer(NativeApi::OpenAiResponses));
            return Ok(response);
        }
        if tollgate_inbound::responses::names_previous_response(&native.body) {
            return Err(tollgate_inbound::responses::stateless_refusal());
        }
    }
    match &deployment.provider {
        DeploymentProvider::Http(endpoint) => {
            // Addressed here and handed to the client with its deadlines:
            // no extension for the client to read them from.
            let request = upstream_request(deployment, chat, Some(endpoint));
            let response = client
                .send(request, timeouts, timings.cloned())
                .await
                .map_err(|error| Failure::from_error(&*error))?;
            reject_errors(response.map(|body| ProviderBody::Http { body })).await
        }
        DeploymentProvider::OpenRouter(openrouter) => {
            let mut request = upstream_request(deployment, chat, None);
            for (name, value) in &openrouter.headers {
                request.headers_mut().insert(name, value.clone());
            }
            request.extensions_mut().insert(timeouts);
            if let Some(timings) = timings {
                request.extensions_mut().insert(Arc::clone(timings));
            }
            // The normalizer turns every OpenRouter failure, errors inside
            // 200 answers included, into a classified error.
            let response = openrouter
                .service
                .clone()
                .call(request)
                .await
                .map_err(|error| Failure::from_error(&*error))?;
            Ok(response.map(|body| ProviderBody::OpenRouter { body }))
        }
        DeploymentProvider::Native(native) => {
            let mut request = upstream_request(deployment, chat, None);
            request.extensions_mut().insert(timeouts);
            if let Some(timings) = timings {
                request.extensions_mut().insert(Arc::clone(timings));
            }
            // The translation classifies the provider's failures, events
            // inside a stream included, and answers in OpenAI's shape.
            let classified = |error: BoxError| Failure::from_error(&*error);
            let embeddings = chat.operation() == Operation::Embeddings;
            match &**native {
                // Anthropic's API has chat (Messages) only.
                NativeDeployment::Anthropic(_)
                    if chat.operation() != Operation::ChatCompletions =>
                {
                    Err(Failure::new(
                        ErrorClass::BadRequest,
                        format!(
                            "anthropic/ deployments serve chat completions only, not {}",
                            chat.operation().as_str()
                        ),
                    )
                    .with_code("operation_not_supported"))
                }
                NativeDeployment::Anthropic(service) => {
                    // The client's own Anthropic request, while it still
                    // says what this attempt asks (a continuation adds a
                    // message): what chat has no room for reaches Anthropic.
                    if let Some(as_sent) = as_sent.filter(|n| {
                        n.api == NativeApi::AnthropicMessages
                            && n.message_count == chat.message_count()
                    }) {
                        request.extensions_mut().insert(as_sent);
                    }
                    let response = service.clone().call(request).await.map_err(classified)?;
                    Ok(response.map(|body| ProviderBody::Anthropic { body }))
                }
                NativeDeployment::Azure(service) => {
                    let response = service.clone().call(request).await.map_err(classified)?;
                    Ok(response.map(|body| ProviderBody::Azure { body }))
                }
                NativeDeployment::Vertex(service) => {
                    // Claude on Vertex takes a client's Messages request as
                    // written, as Anthropic's own API does.
                    if let Some(as_sent) = as_sent.filter(|n| {
                        n.api == NativeApi::AnthropicMessages
                            && n.message_count == chat.message_count()
                    }) {
                        request.extensions_mut().insert(as_sent);
                    }
                    let response = embed_or_call(service, request, embeddings, timeouts.total);
                    Ok(response
                        .await
                        .map_err(classified)?
                        .map(|body| ProviderBody::Vertex { body }))
                }
                NativeDeployment::Gemini(service) => {
                    let response = embed_or_call(service, request, embeddings, timeouts.total);
                    Ok(response
                        .await
                        .map_err(classified)?
                        .map(|body| ProviderBody::Gemini { body }))
                }
                NativeDeployment::Bedrock(service) => {
                    let response = embed_or_call(service, request, embeddings, timeouts.total);
                    Ok(response
                        .await
                        .map_err(classified)?
                        .map(|body| ProviderBody::Bedrock { body }))
                }
            }
        }
        DeploymentProvider::Disabled(reason) => Err(Failure::new(
            ErrorClass::UpstreamUnavailable,
            format!(
                "deployment {} is disabled: {reason}",
                deployment.target.deployment_id
            ),
        )),
        DeploymentProvider::Mock(mock) => {
            let start = Instant::now();
            let first_byte = match (timeouts.first_byte, timeouts.total) {
                (Some(first), Some(total)) => first.min(total),
                (first, total) => first.or(total).unwrap_or(crate::deadlines::DEFAULT_TIMEOUT),
            };
            let response = tokio::time::timeout(first_byte, mock.respond(chat)).await;
            // A stream's head that came answering, or did not come in time.
            let teaches = response.as_ref().map_or(true, |r| r.status().is_success());
            if let Some(timings) = timings
                && teaches
            {
                timings.record(Phase::Head, start.elapsed());
            }
            let response = response.map_err(|_| Failure::timeout(TimeoutKind::FirstByte))?;
            let total_deadline = timeouts.total.map(|total| start + total);
            let first_data = chat
                .stream()
                .then(|| timeouts.first_token.map(|t| start + t))
                .flatten();
            reject_errors(response.map(|body| {
                ProviderBody::Mock {
                    body: Box::pin(
                        TimedBody::new(body, timeouts.stream_idle, total_deadline)
                            .with_first_data_deadline(first_data)
                            .with_timings(timings.cloned(), start),
                    ),
                }
            }))
            .await
        }
    }
}

/// A native deployment's answer: an embeddings request through the
/// provider's embeddings API, under the attempt's `total` deadline (see
/// [`within`]); anything else through its chat translation.
async fn embed_or_call<S, P, B>(
    service: &Provider<S, P>,
    request: Request<RequestBody>,
    embeddings: bool,
    total: Option<std::time::Duration>,
) -> Result<Response<B>, BoxError>
where
    S: Clone,
    P: Embed,
    Provider<S, P>: Service<Request<RequestBody>, Response = Response<B>, Error = BoxError>,
    Embeddings<S, P>: Service<Request<RequestBody>, Response = Response<B>, Error = BoxError>,
{
    if embeddings {
        within(total, service.embeddings().oneshot(request)).await
    } else {
        service.clone().oneshot(request).await
    }
}

/// `call` under the attempt's `total` deadline, when it has one: an
/// embeddings request through a native provider may be several upstream
/// calls (Titan takes one text a call), and the attempt's deadline bounds
/// them together as it bounds one.
async fn within<T>(
    total: Option<std::time::Duration>,
    call: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, BoxError> {
    match total {
        Some(total) => tokio::time::timeout(total, call)
            .await
            .unwrap_or_else(|_| Err(Failure::timeout(TimeoutKind::Total).into())),
        None => call.await,
    }
}

/// The request a deployment gets: the client's body with the model name the
/// deployment knows, and the [gateway's own headers](gateway_headers).
///
/// Addressed to `endpoint` when it is given (its URI and headers prepared
/// when it was built), else to the operation's path alone, for a layer
/// below to address.
fn upstream_request(
    deployment: &Deployment,
    chat: &ChatRequest,
    endpoint: Option<&Endpoint>,
) -> Request<RequestBody> {
    let target = &deployment.target;
    let upstream =
        crate::routing::upstream_model(&target.model_group, &target.upstream_model, chat.model());
    // Built in place, not with `Request::builder()`: each of its steps
    // moves the whole request head.
    let mut request = Request::new(RequestBody::new(chat.with_model(upstream)));
    *request.method_mut() = Method::POST;
    // The operation's path (`/chat/completions`, `/completions`,
    // `/embeddings`) under the deployment's base URL.
    (*request.uri_mut(), *request.headers_mut()) = match endpoint {
        Some(endpoint) => (
            endpoint.operation_uri(chat.operation()),
            endpoint.request_headers(chat.stream()),
        ),
        None => (
            Uri::from_static(chat.operation().path()),
            gateway_headers(chat.stream()),
        ),
    };
    request
}

/// The most of an upstream error body read to classify it.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An error status becomes a classified failure; the (small) error body is
/// read, bounded, to refine the class (context window, content policy...).
///
/// Not an `async fn`: every answer goes through here, and one would copy
/// the response into its future and out again, in a future the size of the
/// error body's read. An answer passes at once; the read is boxed.
fn reject_errors(response: Response<ProviderBody>) -> RejectErrors {
    match OpenAiClassifier::new().classify_response(&response) {
        Verdict::Failure(at_head) => RejectErrors::Reading {
            failure: Box::pin(classify_error(response, at_head)),
        },
        Verdict::Success | Verdict::Watch(_) => RejectErrors::Passed {
            response: Some(response),
        },
    }
}

/// The failure an error response is, refined by its body.
async fn classify_error(response: Response<ProviderBody>, at_head: Failure) -> Failure {
    let (parts, body) = response.into_parts();
    // A body that will not come leaves the verdict from the head.
    match Limited::new(body, MAX_ERROR_BODY).collect().await {
        Ok(collected) => OpenAiClassifier::new().classify_error_body(
            parts.status,
            &parts.headers,
            &collected.to_bytes(),
        ),
        Err(_) => at_head,
    }
}

pin_project! {
    /// The future of [`reject_errors`].
    #[project = RejectErrorsProj]
    enum RejectErrors {
        Passed { response: Option<Response<ProviderBody>> },
        Reading { failure: Pin<Box<dyn Future<Output = Failure> + Send>> },
    }
}

impl Future for RejectErrors {
    type Output = Result<Response<ProviderBody>, Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RejectErrorsProj::Passed { response } => Poll::Ready(
                response
                    .take()
                    .ok_or_else(|| Failure::new(ErrorClass::Internal, "polled after completion")),
            ),
            RejectErrorsProj::Reading { failure } => failure.as_mut().poll(cx).map(Err),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_calls_of_one_attempt_share_its_total_deadline() {
        let two_calls = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok::<_, BoxError>(())
        };
        let error = within(Some(Duration::from_secs(3)), two_calls)
            .await
            .unwrap_err();
        let failure = Failure::from_error(&*error);
        assert_eq!(failure.timeout_kind(), Some(TimeoutKind::Total));
        let quick = async { Ok::<_, BoxError>(7) };
        assert_eq!(
            within(Some(Duration::from_secs(3)), quick).await.unwrap(),
            7
        );
        assert_eq!(
            within(None, async { Ok::<_, BoxError>(8) }).await.unwrap(),
            8
        );
    }
}
