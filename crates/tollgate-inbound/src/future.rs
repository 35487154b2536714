//! [`ResponseFuture`]: the inner chat answer, translated.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::response::Parts;
use http::{HeaderMap, HeaderValue, Response, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tollgate_core::classify::{ClassifyResponse, OpenAiClassifier, is_event_stream};
use tollgate_core::extensions::NativeAnswer;
use tollgate_core::{BoxError, ErrorClass, Failure};

use crate::body::ResponseBody;
use crate::protocol::Protocol;

/// The largest complete answer (or error body) read, in bytes: 8 MiB.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

pin_project! {
    /// The future of [`Inbound`](crate::Inbound): a stream is answered as
    /// soon as its head arrives and translated as it goes; a complete
    /// answer (or an error body) is read whole, then translated, so that a
    /// malformed one can still get an error status.
    pub struct ResponseFuture<F, B, P> {
        #[pin]
        state: State<F, B>,
        _protocol: PhantomData<fn() -> P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Failed { failure: Option<Failure> },
        Calling { #[pin] future: F },
        Reading { parts: Option<Parts>, #[pin] body: B, read: BytesMut },
    }
}

impl<F, B, P> ResponseFuture<F, B, P> {
    pub(crate) fn new(future: F) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            _protocol: PhantomData,
        }
    }

    pub(crate) fn failed(failure: Failure) -> Self {
        ResponseFuture {
            state: State::Failed {
                failure: Some(failure),
            },
            _protocol: PhantomData,
        }
    }
}

impl<F, B, P> fmt::Debug for ResponseFuture<F, B, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Failed { .. } => "failed",
            State::Calling { .. } => "calling",
            State::Reading { .. } => "reading",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, E, B, P> Future for ResponseFuture<F, B, P>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    P: Protocol,
{
    type Output = Result<Response<ResponseBody<B, P::Stream>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Failed { failure } => {
                    let failure = failure
                        .take()
                        .unwrap_or_else(|| Failure::new(ErrorClass::Internal, "polled again"));
                    return Poll::Ready(Err(Box::new(failure)));
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let (mut parts, body) = response.into_parts();
                    // The upstream answered in this API itself: passed on.
                    let native = parts
                        .extensions
                        .get::<NativeAnswer>()
                        .is_some_and(|answer| Some(answer.0) == P::NATIVE);
                    if native && parts.status.is_success() {
                        let body = if is_event_stream(&parts.headers) {
                            parts.headers.remove(header::CONTENT_LENGTH);
                            ResponseBody::native_stream(body, P::stream())
                        } else {
                            ResponseBody::native(body)
                        };
                        return Poll::Ready(Ok(Response::from_parts(parts, body)));
                    }
                    if parts.status.is_success() && is_event_stream(&parts.headers) {
                        parts.headers.remove(header::CONTENT_LENGTH);
                        let body = ResponseBody::stream(body, P::stream());
                        return Poll::Ready(Ok(Response::from_parts(parts, body)));
                    }
                    this.state.set(State::Reading {
                        parts: Some(parts),
                        body,
                        read: BytesMut::new(),
                    });
                }
                StateProj::Reading { parts, body, read } => {
                    let mut body = body;
                    loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    if read.len() + data.len() > MAX_ANSWER_BYTES {
                                        return Poll::Ready(Err(Box::new(too_large())));
                                    }
                                    read.extend_from_slice(&data);
                                }
                            }
                            Some(Err(error)) => return Poll::Ready(Err(error.into())),
                            None => break,
                        }
                    }
                    let Some(mut parts) = parts.take() else {
                        return Poll::Ready(Err(Box::new(Failure::new(
                            ErrorClass::Internal,
                            "polled again",
                        ))));
                    };
                    let read = std::mem::take(read).freeze();
                    let translated = if parts.status.is_success() {
                        P::answer(&read)
                    } else {
                        Err(OpenAiClassifier::new().classify_error_body(
                            parts.status,
                            &parts.headers,
                            &read,
                        ))
                    };
                    let body = match translated {
                        Ok(answer) => answer,
                        Err(failure) => {
                            parts.status = failure.status();
                            P::error_body(&failure)
                        }
                    };
                    set_json(&mut parts.headers, body.len());
                    let body = ResponseBody::complete(body);
                    return Poll::Ready(Ok(Response::from_parts(parts, body)));
                }
            }
        }
    }
}

fn set_json(headers: &mut HeaderMap, len: usize) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

fn too_large() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        format!("the upstream's answer is larger than {MAX_ANSWER_BYTES} bytes"),
    )
}
