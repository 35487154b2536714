//! [`ResponseFuture`]: from the inner service's answer to a normalized
//! response or a classified error.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::response::Parts;
use http::{HeaderValue, Response, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tollgate_core::classify::{ClassifyResponse, is_event_stream};
use tollgate_core::sse::SharedEvents;
use tollgate_core::{
    BoxError, ErrorClass, Failure, ReadLimited, ReadLimitedError, Redactor, UpstreamError,
};

use crate::body::{ResponseBody, overflow};
use crate::classify::StreamFailure;
use crate::layer::Shared;
use crate::reshape::{Reshaped, reshape};
use crate::state::{Step, StreamNormalizer};

/// Error bodies are small; a larger one is classified from its head.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

pin_project! {
    /// The future of [`OpenRouter`](crate::OpenRouter): waits for the inner
    /// service's response, reads what must be read before the response can
    /// be judged — an error body, a complete JSON body, a stream up to its
    /// first data event — and resolves to the normalized response or to the
    /// classified failure.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        shared: Arc<Shared>,
        redactor: Option<Redactor>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Calling {
            #[pin]
            future: F,
        },
        ReadingError {
            #[pin]
            body: B,
            buffer: ReadLimited,
            head: Parts,
        },
        ReadingJson {
            #[pin]
            body: B,
            buffer: ReadLimited,
            head: Option<Parts>,
        },
        Priming {
            // Boxed: it moves into the response body once primed.
            body: Option<Pin<Box<B>>>,
            normalizer: Option<StreamNormalizer>,
            head: Option<Parts>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, shared: Arc<Shared>, redactor: Option<Redactor>) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            shared,
            redactor,
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
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

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let classifier = &this.shared.classifier;
            let next = match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            return Poll::Ready(Err(inner_error(error.into(), this.shared)));
                        }
                    };
                    let (head, body) = response.into_parts();
                    if !head.status.is_success() {
                        State::ReadingError {
                            body,
                            buffer: ReadLimited::new(MAX_ERROR_BODY_BYTES),
                            head,
                        }
                    } else if is_event_stream(&head.headers) {
                        State::Priming {
                            body: Some(Box::pin(body)),
                            normalizer: Some(StreamNormalizer::new()),
                            head: Some(head),
                        }
                    } else {
                        State::ReadingJson {
                            body,
                            buffer: ReadLimited::new(this.shared.max_body_bytes),
                            head: Some(head),
                        }
                    }
                }
                StateProj::ReadingError { body, buffer, head } => {
                    // A body that cannot be read whole still leaves the
                    // status and headers to go by.
                    let body = ready!(buffer.poll_read(body, cx)).unwrap_or_default();
                    let failure = classifier.classify_error_body(head.status, &head.headers, &body);
                    return Poll::Ready(Err(failure.into()));
                }
                StateProj::ReadingJson { body, buffer, head } => {
                    let result = ready!(buffer.poll_read(body, cx));
                    let Some(head) = head.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    return Poll::Ready(match result {
                        Ok(body) => complete(head, body, this.shared),
                        Err(ReadLimitedError::TooLarge) => Err(ReadLimited::too_large().into()),
                        Err(ReadLimitedError::Body(error)) => Err(inner_error(error, this.shared)),
                    });
                }
                StateProj::Priming {
                    body,
                    normalizer,
                    head,
                } => {
                    let (Some(stream), Some(state), Some(parts)) =
                        (body.as_mut(), normalizer.as_mut(), head.as_ref())
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let frame = match ready!(stream.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => frame,
                        Some(Err(error)) => {
                            return Poll::Ready(Err(inner_error(error.into(), this.shared)));
                        }
                        None => return Poll::Ready(Err(ended_before_data().into())),
                    };
                    // Trailers before any data mean nothing here.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match state.push_first(data) {
                        // The first data event waits in the normalizer.
                        Step::Events if state.saw_data() => {}
                        Step::Events => continue,
                        // Nothing has reached the client: this is the HTTP
                        // error the event stands for, and a retry or another
                        // target may still help.
                        Step::Error { data, .. } => {
                            let failure =
                                classifier.classify_event_data(parts.status, &parts.headers, &data);
                            return Poll::Ready(Err(failure.into()));
                        }
                        Step::Overflow => return Poll::Ready(Err(overflow().into())),
                    }
                    let (Some(body), Some(normalizer), Some(mut head)) =
                        (body.take(), normalizer.take(), head.take())
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    // The stream is reshaped: its length is not the upstream's.
                    head.headers.remove(header::CONTENT_LENGTH);
                    let failure = StreamFailure::default();
                    head.extensions.insert(failure.clone());
                    // Events go out one a frame, published for the layers
                    // above (cost, breaker, fallback): they read each whole,
                    // and the stream is split once, here.
                    let shared = SharedEvents::of(&mut head.extensions);
                    let body = ResponseBody::stream(
                        body,
                        normalizer,
                        shared,
                        classifier.clone(),
                        failure,
                        this.redactor.take(),
                    );
                    return Poll::Ready(Ok(Response::from_parts(head, body)));
                }
            };
            this.state.set(next);
        }
    }
}

/// A complete 2xx body: an error inside it, or the reshaped success.
fn complete<B>(
    mut head: Parts,
    body: Bytes,
    shared: &Shared,
) -> Result<Response<ResponseBody<B>>, BoxError> {
    let mut out = BytesMut::new();
    let body = match reshape(&body, &mut out) {
        Reshaped::Unchanged => body,
        Reshaped::Written => out.freeze(),
        Reshaped::Error => {
            let failure = shared
                .classifier
                .classify_error_body(head.status, &head.headers, &body);
            return Err(failure.into());
        }
    };
    if head.headers.contains_key(header::CONTENT_LENGTH) {
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok(Response::from_parts(head, ResponseBody::complete(body)))
}

/// The inner service's own error: passed on when it already carries a
/// classification, paired with one otherwise.
fn inner_error(error: BoxError, shared: &Shared) -> BoxError {
    UpstreamError::classified(error, &shared.classifier)
}

fn ended_before_data() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "the upstream stream ended before its first event",
    )
    .with_subkind("stream_cut")
}

fn polled_after_completion() -> BoxError {
    Failure::new(
        ErrorClass::Internal,
        "response future polled after completion",
    )
    .into()
}
