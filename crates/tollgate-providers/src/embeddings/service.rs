//! [`Embeddings`]: the service that embeds through a provider's API.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::Body;
use tollgate_core::classify::OpenAiClassifier;
use tollgate_core::{BoxError, Failure, ReadLimited, ReadLimitedError, UpstreamError};
use tower_service::Service;

use super::{Embed, EmbedCall, Embedded, answer};
use crate::body::ResponseBody;
use crate::buffered::BufferedBody;
use crate::failures::malformed_response;
use crate::layer::Shared;

/// Error bodies are small; a larger one is classified from its head.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// The future of [`Embeddings`]: the upstream calls, one after the other,
/// then the OpenAI answer.
pub type ResponseFuture<B, T> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B, T>>, BoxError>> + Send>>;

/// Embeds OpenAI embeddings requests through a provider's own embeddings
/// API ([`Embed`]) over the HTTP client `S`; made by
/// [`Provider::embeddings`](crate::Provider::embeddings), sharing its
/// protocol, body limit and clock.
///
/// `Ok(response)` is OpenAI's embeddings answer (a complete JSON body);
/// every failure is an `Err` whose source chain holds a classified
/// [`Failure`], as for chat.
pub struct Embeddings<S, P> {
    inner: S,
    shared: Arc<Shared<P>>,
}

impl<S, P> Embeddings<S, P> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<P>>) -> Self {
        Embeddings { inner, shared }
    }
}

impl<S: Clone, P> Clone for Embeddings<S, P> {
    fn clone(&self) -> Self {
        Embeddings {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Embeddings<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embeddings")
            .field("inner", &self.inner)
            .field("protocol", &self.shared.protocol)
            .finish()
    }
}

impl<S, P, ReqB, ResB> Service<Request<ReqB>> for Embeddings<S, P>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    P: Embed,
    ReqB: BufferedBody + Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResB, P::Stream>>;
    type Error = BoxError;
    type Future = ResponseFuture<ResB, P::Stream>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let (head, body) = request.into_parts();
        let shared = self.shared.clone();
        let protocol = &shared.protocol;
        let planned = protocol
            .read_embeddings(&body.buffered())
            .and_then(|request| {
                let calls = protocol.embed_calls(&head, &request, shared.created())?;
                Ok((request, calls))
            });
        let (request, calls) = match planned {
            Ok(planned) => planned,
            Err(failure) => return Box::pin(std::future::ready(Err(failure.into()))),
        };
        // The service made ready takes the first call; a clone, made ready
        // in turn, each next one (tower's `mem::replace` idiom).
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut embedded = Vec::with_capacity(calls.len());
            let mut last = None;
            for (n, call) in calls.into_iter().enumerate() {
                if n > 0 {
                    poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(|error| inner_error(error.into()))?;
                }
                let (head, one) = make_call(&mut service, &shared, &request, call).await?;
                embedded.push(one);
                last = Some(head);
            }
            let mut head = last.ok_or_else(malformed_response)?;
            let answer = answer::openai_answer(&request, &embedded)?;
            if embedded.iter().any(|one| one.estimated) {
                head.extensions
                    .insert(tollgate_core::extensions::UsageEstimated);
            }
            head.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(answer.len()));
            head.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(Response::from_parts(head, ResponseBody::complete(answer)))
        })
    }
}

/// Makes one call and reads its answer: the response head and what it
/// embedded, or the classified failure.
async fn make_call<S, P, ReqB, ResB>(
    service: &mut S,
    shared: &Shared<P>,
    request: &super::EmbeddingRequest,
    call: EmbedCall,
) -> Result<(http::response::Parts, Embedded), BoxError>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    P: Embed,
    ReqB: BufferedBody,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let EmbedCall { head, body, inputs } = call;
    let response = service
        .call(Request::from_parts(head, ReqB::from_bytes(body)))
        .await
        .map_err(|error| inner_error(error.into()))?;
    let (head, body) = response.into_parts();
    let mut body = pin!(body);
    if !head.status.is_success() {
        let mut read = ReadLimited::new(MAX_ERROR_BODY_BYTES);
        // A body that cannot be read whole still leaves the status and
        // headers to go by.
        let error = poll_fn(|cx| read.poll_read(body.as_mut(), cx))
            .await
            .unwrap_or_default();
        let failure: Failure = shared.protocol.classify(head.status, &head.headers, &error);
        return Err(failure.into());
    }
    let mut read = ReadLimited::new(shared.max_body_bytes);
    let answer = match poll_fn(|cx| read.poll_read(body.as_mut(), cx)).await {
        Ok(answer) => answer,
        Err(ReadLimitedError::TooLarge) => return Err(ReadLimited::too_large().into()),
        Err(ReadLimitedError::Body(error)) => return Err(inner_error(error)),
    };
    let expected = inputs.len();
    let one = shared
        .protocol
        .embedded(request, inputs, &head.headers, &answer)?;
    // A vector missing (or one too many) would shift every index after it.
    if one.vectors.len() != expected {
        return Err(malformed_response().into());
    }
    Ok((head, one))
}

/// The inner service's own error: passed on when it already carries a
/// classification, paired with one otherwise.
fn inner_error(error: BoxError) -> BoxError {
    UpstreamError::classified(error, &OpenAiClassifier::new())
}
