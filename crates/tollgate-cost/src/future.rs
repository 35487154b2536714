//! [`ResponseFuture`]: the future of a call through the cost layer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tollgate_core::BoxError;
use tollgate_core::classify::{Classified, ClassifyResponse, Verdict, is_event_stream};
use tollgate_core::extensions::{Usage, UsageEstimated};

use crate::RESPONSE_COST_HEADER;
use crate::body::{Mode, Refine, ResponseBody, Watch, body_failure};
use crate::meter::Meter;
use crate::usage::Reported;

pin_project! {
    /// The response future of [`Cost`](crate::Cost).
    ///
    /// It resolves when the inner service answers — for a complete JSON
    /// answer, once the layer has read its body, so that the cost can go in
    /// the response head. Dropping it first records the call as
    /// [`Cancelled`](crate::Outcome::Cancelled).
    pub struct ResponseFuture<F, B, C> {
        #[pin]
        state: State<F, B>,
        meter: Meter,
        classifier: C,
        strip: bool,
        body_limit: usize,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Calling {
            #[pin]
            future: F,
        },
        Reading {
            head: Option<http::response::Parts>,
            body: Option<Pin<Box<B>>>,
            read: Collected,
        },
        Done,
    }
}

impl<F, B, C> ResponseFuture<F, B, C> {
    pub(crate) fn new(
        future: F,
        meter: Meter,
        classifier: C,
        strip: bool,
        body_limit: usize,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            meter,
            classifier,
            strip,
            body_limit,
        }
    }
}

impl<F, B, E, C> Future for ResponseFuture<F, B, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    C: ClassifyResponse,
{
    type Output = Result<Response<ResponseBody<B, C::Eos>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            let error: BoxError = error.into();
                            let class = this.classifier.classify_error(&*error).class();
                            this.meter.not_billed(class);
                            this.meter.finish(false);
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                    };
                    this.meter.responded();
                    let mut response = response;
                    let mode = match Classified::once(this.classifier, &mut response) {
                        Verdict::Failure(failure) => {
                            this.meter.not_billed(failure.class());
                            let classifier = this.classifier.clone();
                            let status = response.status();
                            let headers = response.headers().clone();
                            let refine: Refine = Box::new(move |prefix: &[u8]| {
                                classifier
                                    .classify_error_body(status, &headers, prefix)
                                    .class()
                            });
                            Mode::Error {
                                refine: Some(refine),
                                prefix: Vec::new(),
                            }
                        }
                        Verdict::Watch(eos) => {
                            Mode::stream(Some(eos), *this.strip, response.extensions_mut())
                        }
                        // A classifier that watches no streams still gets
                        // them streamed, never read whole.
                        Verdict::Success if is_event_stream(response.headers()) => {
                            Mode::stream(None, *this.strip, response.extensions_mut())
                        }
                        Verdict::Success
                            if response.body().size_hint().lower() > *this.body_limit as u64 =>
                        {
                            this.meter.usage_unknown();
                            Mode::Pass
                        }
                        Verdict::Success => {
                            let (head, body) = response.into_parts();
                            this.state.set(State::Reading {
                                head: Some(head),
                                body: Some(Box::pin(body)),
                                read: Collected::default(),
                            });
                            continue;
                        }
                    };
                    if matches!(mode, Mode::Stream { strip: true, .. }) {
                        // The usage chunk the layer asked for is taken out
                        // of the stream: an upstream's length no longer
                        // holds, and a client trusting it would read the
                        // wrong bytes (or none). The body's size hint says
                        // "unknown" as well.
                        response.headers_mut().remove(http::header::CONTENT_LENGTH);
                    }
                    let watch = Watch::new(std::mem::take(this.meter), mode);
                    this.state.set(State::Done);
                    return Poll::Ready(
                        Ok(response.map(|body| ResponseBody::watched(body, watch))),
                    );
                }
                StateProj::Reading { head, body, read } => {
                    let Some(inner) = body.as_mut() else {
                        unreachable!("a reading state has its body")
                    };
                    let polled = ready!(inner.as_mut().poll_frame(cx));
                    let error = match polled {
                        Some(Ok(frame)) => {
                            match frame.into_data() {
                                Ok(data) => read.push(data),
                                Err(frame) => {
                                    if let Ok(trailers) = frame.into_trailers() {
                                        read.trailers = Some(trailers);
                                    }
                                }
                            }
                            if read.len > *this.body_limit {
                                // Too large to hold: hand out what was read
                                // and pass the rest through.
                                this.meter.usage_unknown();
                                let watch = Watch::new(std::mem::take(this.meter), Mode::Pass);
                                let (Some(head), Some(inner)) = (head.take(), body.take()) else {
                                    unreachable!("a reading state has its head and body")
                                };
                                let prefix = read.take();
                                this.state.set(State::Done);
                                return Poll::Ready(Ok(Response::from_parts(
                                    head,
                                    ResponseBody::replay(prefix, inner, watch),
                                )));
                            }
                            if !inner.is_end_stream() {
                                continue;
                            }
                            None
                        }
                        Some(Err(error)) => Some(error.into()),
                        None => None,
                    };
                    let Some(head) = head.take() else {
                        unreachable!("a reading state has its head")
                    };
                    let data = read.take();
                    let trailers = read.trailers.take();
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(finish_read(
                        head,
                        data,
                        trailers,
                        error,
                        this.meter,
                        this.classifier,
                    )));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Settles a complete body the layer read, and builds the response.
fn finish_read<B, C>(
    mut head: http::response::Parts,
    data: Bytes,
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
    meter: &mut Meter,
    classifier: &C,
) -> Response<ResponseBody<B, C::Eos>>
where
    B: Body,
    C: ClassifyResponse,
{
    if let Some(error) = &error {
        // It broke half-way: the upstream's failure, billed as an estimate.
        meter.fail(body_failure(&**error));
    } else {
        match Reported::read(&data) {
            Some(reported) if reported.error => {
                // An error inside a 200: a failed attempt, not billed.
                let class = classifier
                    .classify_error_body(head.status, &head.headers, &data)
                    .class();
                meter.not_billed(class);
            }
            Some(mut reported) => {
                // Counts the provider's translation estimated (Gemini's
                // embeddings carry none) are billed, and said to be.
                if head.extensions.get::<UsageEstimated>().is_some()
                    && let Some(usage) = &mut reported.usage
                {
                    usage.estimated = true;
                }
                meter.reported(&reported);
                if reported.usage.is_none() {
                    meter.usage_unknown();
                }
            }
            None => meter.usage_unknown(),
        }
    }
    if let Some((cost, usage)) = meter.finish(false) {
        if error.is_none()
            && let Some(billed) = cost.billed()
            && let Ok(value) = HeaderValue::from_str(&billed.to_string())
        {
            head.headers.insert(RESPONSE_COST_HEADER, value);
        }
        head.extensions.insert(cost);
        if let Some(usage) = usage {
            head.extensions.insert(usage);
            head.extensions.insert(Usage::from(usage));
        }
    }
    Response::from_parts(head, ResponseBody::complete(data, trailers, error))
}

/// A body read so far: zero-copy while it is one chunk.
#[derive(Default)]
struct Collected {
    first: Option<Bytes>,
    more: Option<BytesMut>,
    len: usize,
    trailers: Option<HeaderMap>,
}

impl Collected {
    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if let Some(more) = &mut self.more {
            more.extend_from_slice(&data);
        } else if let Some(first) = self.first.take() {
            let mut more = BytesMut::with_capacity((first.len() + data.len()) * 2);
            more.extend_from_slice(&first);
            more.extend_from_slice(&data);
            self.more = Some(more);
        } else {
            self.first = Some(data);
        }
    }

    fn take(&mut self) -> Bytes {
        match self.more.take() {
            Some(more) => more.freeze(),
            None => self.first.take().unwrap_or_default(),
        }
    }
}

impl<F, B, C> fmt::Debug for ResponseFuture<F, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Reading { .. } => "reading",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
