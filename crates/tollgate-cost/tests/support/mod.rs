//! Canned upstreams and a runner for the cost layer's tests.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tollgate_core::{BoxError, ChatRequest, RequestBody};
use tollgate_cost::{CostLayer, CostRecord, PriceTable};
use tower::{Layer, ServiceExt, service_fn};

pub const OPENAI_JSON: &str = include_str!("../fixtures/openai/success_nonstream.json");
pub const OPENAI_STREAM: &str = include_str!("../fixtures/openai/stream_include_usage.sse");
pub const OPENAI_QUOTA: &str = include_str!("../fixtures/openai/429_insufficient_quota.json");
pub const OPENROUTER_JSON: &str = include_str!("../fixtures/openrouter/success_nonstream.json");
pub const OPENROUTER_REASONING: &str =
    include_str!("../fixtures/openrouter/success_reasoning_cost.json");
pub const OPENROUTER_STREAM: &str = include_str!("../fixtures/openrouter/stream_success.sse");
pub const OPENROUTER_MODELS: &[u8] = include_bytes!("../fixtures/openrouter/models_excerpt.json");

/// A response body of scripted chunks, then an end, an error, or a stall.
#[derive(Debug)]
pub struct Scripted {
    chunks: VecDeque<Bytes>,
    then: Then,
}

/// How a [`Scripted`] body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    End,
    /// A transport error (the connection was reset).
    Reset,
    /// Nothing more, ever: the upstream stalls.
    Stall,
}

impl Scripted {
    /// `body` cut into chunks of the sizes in `sizes` (cycled; empty: one
    /// chunk).
    pub fn new(body: &[u8], sizes: &[usize], then: Then) -> Self {
        Scripted {
            chunks: chunk(body, sizes).into(),
            then,
        }
    }
}

/// `body` in chunks of the sizes in `sizes`, cycled.
pub fn chunk(body: &[u8], sizes: &[usize]) -> Vec<Bytes> {
    if sizes.is_empty() {
        return vec![Bytes::copy_from_slice(body)];
    }
    let mut chunks = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at >= body.len() {
            break;
        }
        let end = (at + size.max(1)).min(body.len());
        chunks.push(Bytes::copy_from_slice(&body[at..end]));
        at = end;
    }
    chunks
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match this.then {
            Then::End => Poll::Ready(None),
            Then::Reset => {
                this.then = Then::End;
                Poll::Ready(Some(Err(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                )))))
            }
            Then::Stall => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.then == Then::End
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A JSON body with this status.
    Json(u16, String),
    /// An SSE body (200), then how it ends.
    Sse(String, Then),
    /// No response: the connection was refused.
    Refused,
}

/// What the upstream saw of the request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub body: Bytes,
    /// The parsed view its body carried, if any.
    pub chat: Option<Arc<ChatRequest>>,
}

/// How the client reads the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// To its end (or its error).
    All,
    /// Until no frame comes for a second (paused time), then it drops it.
    UntilStalled,
}

/// One call through the layer.
#[derive(Debug)]
pub struct Run {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub extensions: http::Extensions,
    /// What the client read, and whether the body ended in an error.
    pub client: Bytes,
    pub client_error: bool,
    /// `None` when the call returned `Err`.
    pub responded: bool,
    pub seen: Seen,
    pub records: Vec<CostRecord>,
}

impl Run {
    /// The one record the call made.
    pub fn record(&self) -> &CostRecord {
        assert_eq!(self.records.len(), 1, "{:#?}", self.records);
        &self.records[0]
    }
}

/// A client request with this JSON body.
pub fn request(json: &str) -> Request<RequestBody> {
    let mut request = Request::new(RequestBody::new(Bytes::copy_from_slice(json.as_bytes())));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static("/v1/chat/completions");
    request
}

/// The records a cost layer hands its sink, in order.
pub type Records = Arc<Mutex<Vec<CostRecord>>>;

/// A sink that keeps every record, and where to read them.
pub fn recording_sink() -> (Records, impl Fn(CostRecord) + Send + Sync + 'static) {
    let records = Records::default();
    let sink = {
        let records = records.clone();
        move |record: CostRecord| records.lock().unwrap().push(record)
    };
    (records, sink)
}

/// Sends `request` through a cost layer over an upstream that answers
/// `answer` in chunks of `sizes`.
pub async fn run(
    prices: PriceTable,
    layer: impl FnOnce(CostLayer) -> CostLayer,
    request: Request<RequestBody>,
    answer: Answer,
    sizes: Vec<usize>,
    read: Read,
) -> Run {
    let (records, sink) = recording_sink();
    let seen = Arc::new(Mutex::new(None));
    let upstream = {
        let seen = seen.clone();
        service_fn(move |request: Request<RequestBody>| {
            let seen = seen.clone();
            let answer = answer.clone();
            let sizes = sizes.clone();
            async move {
                *seen.lock().unwrap() = Some(Seen {
                    body: request.body().bytes().cloned().unwrap_or_default(),
                    chat: request.body().chat().cloned(),
                });
                let (status, content_type, body) = match answer {
                    Answer::Json(status, body) => (
                        status,
                        "application/json",
                        Scripted::new(body.as_bytes(), &sizes, Then::End),
                    ),
                    Answer::Sse(body, then) => (
                        200,
                        "text/event-stream",
                        Scripted::new(body.as_bytes(), &sizes, then),
                    ),
                    Answer::Refused => {
                        return Err(BoxError::from(std::io::Error::from(
                            std::io::ErrorKind::ConnectionRefused,
                        )));
                    }
                };
                let mut response = Response::new(body);
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(content_type),
                );
                Ok::<_, BoxError>(response)
            }
        })
    };
    let layer = layer(CostLayer::new(Arc::new(prices), sink));
    let service = layer.layer(upstream);
    let result = service.oneshot(request).await;
    let seen = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the upstream was called");
    let Ok(response) = result else {
        return Run {
            status: StatusCode::default(),
            headers: HeaderMap::new(),
            extensions: http::Extensions::new(),
            client: Bytes::new(),
            client_error: true,
            responded: false,
            seen,
            records: records.lock().unwrap().clone(),
        };
    };
    let (parts, mut body) = response.into_parts();
    let mut client = Vec::new();
    let mut client_error = false;
    loop {
        let frame = match read {
            Read::All => body.frame().await,
            Read::UntilStalled => {
                match tokio::time::timeout(Duration::from_secs(1), body.frame()).await {
                    Ok(frame) => frame,
                    Err(_) => break,
                }
            }
        };
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    client.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => {
                client_error = true;
                break;
            }
            None => break,
        }
    }
    drop(body);
    Run {
        status: parts.status,
        headers: parts.headers,
        extensions: parts.extensions,
        client: Bytes::from(client),
        client_error,
        responded: true,
        seen,
        records: records.lock().unwrap().clone(),
    }
}

/// An SSE body without its usage chunk (the event with `"choices":[]` and
/// a usage), as a client that did not ask for it gets it.
pub fn without_usage_chunk(sse: &str) -> String {
    sse.split_inclusive("\n\n")
        .filter(|event| !(event.contains(r#""choices":[]"#) && event.contains(r#""usage":{"#)))
        .collect()
}
