//! [`ResponseFuture`]: from the inner service's answer to an OpenAI answer
//! or a classified error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::response::Parts;
use http::{HeaderValue, Response, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tollgate_core::classify::OpenAiClassifier;
use tollgate_core::sse::SharedEvents;
use tollgate_core::{
    BoxError, ErrorClass, Failure, ReadLimited, ReadLimitedError, Redactor, UpstreamError,
};

use crate::body::ResponseBody;
use crate::events::TranslatedEvents;
use crate::layer::Shared;
use crate::protocol::{Exchange, Protocol, TranslateStream as _};

/// Error bodies are small; a larger one is classified from its head.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

pin_project! {
    /// The future of [`Provider`](crate::Provider): waits for the inner
    /// service's answer, reads what must be read before it can be judged —
    /// an error body, a complete JSON body, a stream up to its first
    /// content — and resolves to the OpenAI answer or the classified
    /// failure.
    pub struct ResponseFuture<F, B, P: Protocol> {
        #[pin]
        state: State<F, B, P::Stream>,
        shared: Option<Arc<Shared<P>>>,
        exchange: Option<Exchange>,
        redactor: Option<Redactor>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, T> {
        Failed { failure: Option<Failure> },
        Calling { #[pin] future: F },
        ReadingError { #[pin] body: B, read: ReadLimited, head: Parts },
        ReadingJson { #[pin] body: B, read: ReadLimited, head: Option<Parts> },
        Priming {
            // Boxed: it moves into the response body once primed.
            body: Option<Pin<Box<B>>>,
            stream: Option<T>,
            head: Option<Parts>,
            out: Option<TranslatedEvents>,
        },
    }
}

impl<F, B, P: Protocol> ResponseFuture<F, B, P> {
    pub(crate) fn new(
        future: F,
        shared: Arc<Shared<P>>,
        exchange: Exchange,
        redactor: Option<Redactor>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            shared: Some(shared),
            exchange: Some(exchange),
            redactor,
        }
    }

    pub(crate) fn failed(failure: Failure) -> Self {
        ResponseFuture {
            state: State::Failed {
                failure: Some(failure),
            },
            shared: None,
            exchange: None,
            redactor: None,
        }
    }
}

impl<F, B, P: Protocol> fmt::Debug for ResponseFuture<F, B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Failed { .. } => "failed",
            State::Calling { .. } => "calling",
            State::ReadingError { .. } => "reading error body",
            State::ReadingJson { .. } => "reading body",
            State::Priming { .. } => "reading stream start",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, B, E, P> Future for ResponseFuture<F, B, P>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    P: Protocol,
{
    type Output = Result<Response<ResponseBody<B, P::Stream>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let (Some(shared), Some(exchange)) = (this.shared.as_ref(), this.exchange.as_ref())
            else {
                if let StateProj::Failed { failure } = this.state.project() {
                    return Poll::Ready(Err(failure.take().map_or_else(done, Into::into)));
                }
                return Poll::Ready(Err(done()));
            };
            let protocol = &shared.protocol;
            let next = match this.state.as_mut().project() {
                StateProj::Failed { failure } => {
                    return Poll::Ready(Err(failure.take().map_or_else(done, Into::into)));
                }
                StateProj::Calling { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => return Poll::Ready(Err(inner_error(error.into()))),
                    };
                    let (head, body) = response.into_parts();
                    if !head.status.is_success() {
                        State::ReadingError {
                            body,
                            read: ReadLimited::new(MAX_ERROR_BODY_BYTES),
                            head,
                        }
                    } else if exchange.stream && protocol.is_stream(&head.headers) {
                        State::Priming {
                            body: Some(Box::pin(body)),
                            stream: Some(protocol.stream(exchange)),
                            head: Some(head),
                            out: Some(TranslatedEvents::new()),
                        }
                    } else {
                        State::ReadingJson {
                            body,
                            read: ReadLimited::new(shared.max_body_bytes),
                            head: Some(head),
                        }
                    }
                }
                StateProj::ReadingError { body, read, head } => {
                    // A body that cannot be read whole still leaves the
                    // status and headers to go by.
                    let body = ready!(read.poll_read(body, cx)).unwrap_or_default();
                    let failure = protocol.classify(head.status, &head.headers, &body);
                    return Poll::Ready(Err(failure.into()));
                }
                StateProj::ReadingJson { body, read, head } => {
                    let result = ready!(read.poll_read(body, cx));
                    let Some(mut head) = head.take() else {
                        return Poll::Ready(Err(done()));
                    };
                    let body = match result {
                        Ok(body) => body,
                        Err(ReadLimitedError::TooLarge) => {
                            return Poll::Ready(Err(ReadLimited::too_large().into()));
                        }
                        Err(ReadLimitedError::Body(error)) => {
                            return Poll::Ready(Err(inner_error(error)));
                        }
                    };
                    let answer = match protocol.answer(exchange, body) {
                        Ok(answer) => answer,
                        Err(failure) => return Poll::Ready(Err(failure.into())),
                    };
                    head.headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(answer.len()));
                    head.headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    let body = ResponseBody::complete(answer);
                    return Poll::Ready(Ok(Response::from_parts(head, body)));
                }
                StateProj::Priming {
                    body,
                    stream,
                    head,
                    out,
                } => {
                    let (Some(upstream), Some(state), Some(events)) =
                        (body.as_mut(), stream.as_mut(), out.as_mut())
                    else {
                        return Poll::Ready(Err(done()));
                    };
                    let frame = match ready!(upstream.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => frame,
                        Some(Err(error)) => return Poll::Ready(Err(inner_error(error.into()))),
                        None => return Poll::Ready(Err(ended_before_content().into())),
                    };
                    // Trailers before any content mean nothing here.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    // Nothing has reached the client: a failure here is the
                    // HTTP error it stands for, and a retry or another
                    // target may still help.
                    if let Err(failure) = state.push(data, events) {
                        return Poll::Ready(Err(failure.into()));
                    }
                    if !state.committed() {
                        continue;
                    }
                    let (Some(upstream), Some(state), Some(first), Some(mut head)) =
                        (body.take(), stream.take(), out.take(), head.take())
                    else {
                        return Poll::Ready(Err(done()));
                    };
                    // The stream is translated: its length is not the
                    // upstream's.
                    head.headers.remove(header::CONTENT_LENGTH);
                    // The body hands out every event as a frame of its own,
                    // published for the layers above.
                    let shared = SharedEvents::of(&mut head.extensions);
                    let body =
                        ResponseBody::stream(upstream, state, first, this.redactor.take(), shared);
                    return Poll::Ready(Ok(Response::from_parts(head, body)));
                }
            };
            this.state.set(next);
        }
    }
}

/// The inner service's own error: passed on when it already carries a
/// classification, paired with one otherwise.
fn inner_error(error: BoxError) -> BoxError {
    UpstreamError::classified(error, &OpenAiClassifier::new())
}

fn ended_before_content() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "the upstream stream ended before its first content",
    )
    .with_subkind("stream_cut")
}

fn done() -> BoxError {
    Failure::new(
        ErrorClass::Internal,
        "response future polled after completion",
    )
    .into()
}
