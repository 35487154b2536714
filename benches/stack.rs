//! The whole layer stack in process, as a user composes it à la carte:
//! fallback → retry → circuit breaker → cost, over an in-memory
//! OpenAI-compatible upstream. The baseline is the bare upstream, measured
//! in the same run.
//!
//! - `request/*`: one whole JSON request per iteration — ready, call, the
//!   response future, the body to its end (where the breaker settles and
//!   the cost is recorded).
//! - `stream/*`: one stream of [`EVENTS`] events, one frame each, per
//!   iteration; criterion reports the time per event (its throughput in
//!   elements), which is the per-event cost of the stack.
//!
//! - `embeddings/*`: one embeddings request per iteration, answered with
//!   [`VECTORS`] vectors of [`DIMENSIONS`] floats (about 330 KB of JSON, one
//!   frame), which the cost layer reads whole for its `usage`; criterion
//!   reports bytes per second.
//! - `completions-stream/*`: a legacy completion's stream ([`EVENTS`] text
//!   chunks, a finish, the usage chunk, `[DONE]`), per event.
//! - `messages/*`, `messages-stream/*`, `responses/*`,
//!   `responses-stream/*`: Anthropic's Messages and OpenAI's Responses
//!   requests through `tollgate-inbound`'s layer over the same stack (the
//!   request translated to chat, the answer or each chunk back), against
//!   the bare upstream's chat answer or stream; streams per upstream event.
//!
//! Everything answers at once, so it is polled with a no-op waker: no
//! runtime, no scheduling in the figures.
//!
//! Run with: cargo bench --bench stack

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tollgate::breaker::CircuitBreakerLayer;
use tollgate::core::extensions::ModelGroup;
use tollgate::core::{BoxError, ChatRequest, Operation, RequestBody};
use tollgate::cost::{CostLayer, PriceTable, TokenPrices, Usd};
use tollgate::fallback::FallbackLayer;
use tollgate::inbound::InboundLayer;
use tollgate::inbound::messages::Messages;
use tollgate::inbound::responses::Responses;
use tollgate::retry::RetryLayer;
use tower::{Layer, Service, ServiceBuilder, service_fn};

/// Content events in a benchmarked stream (a short answer's worth).
const EVENTS: usize = 64;

const JSON_REQUEST: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#;
const STREAM_REQUEST: &[u8] = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}"#;
const EMBEDDINGS_REQUEST: &[u8] =
    br#"{"model":"m","input":["a","b","c"],"encoding_format":"float"}"#;
const COMPLETIONS_REQUEST: &[u8] =
    br#"{"model":"m","prompt":"Say hi","stream":true,"stream_options":{"include_usage":true}}"#;
/// Claude Code's and Codex's requests, as the inbound layer gets them.
const MESSAGES_REQUEST: &[u8] =
    br#"{"model":"m","max_tokens":1024,"messages":[{"role":"user","content":"Hi"}]}"#;
const MESSAGES_STREAM_REQUEST: &[u8] =
    br#"{"model":"m","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
const RESPONSES_REQUEST: &[u8] = br#"{"model":"m","input":"Hi"}"#;
const RESPONSES_STREAM_REQUEST: &[u8] = br#"{"model":"m","input":"Hi","stream":true}"#;
/// Vectors of an embeddings answer, and their dimensions (OpenAI's
/// `text-embedding-3-small`).
const VECTORS: usize = 16;
const DIMENSIONS: usize = 1536;
const JSON_ANSWER: &[u8] = br#"{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;

/// An in-memory body handing out its frames one by one.
#[derive(Debug, Default)]
struct Frames(VecDeque<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// The events of one streamed answer, each its own frame: a role chunk,
/// [`EVENTS`] content chunks, a finish, the usage chunk and `[DONE]`.
fn stream_frames() -> Arc<Vec<Bytes>> {
    let mut frames = vec![Bytes::from_static(
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
    )];
    for i in 0..EVENTS {
        frames.push(Bytes::from(format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}}}}]}}\n\n"
        )));
    }
    frames.push(Bytes::from_static(
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    ));
    frames.push(Bytes::from_static(
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":64,\"total_tokens\":73}}\n\n",
    ));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Arc::new(frames)
}

/// An embeddings answer of [`VECTORS`] × [`DIMENSIONS`] floats as OpenAI
/// writes them (`-0.0123456789`), in one frame.
fn embeddings_answer() -> Bytes {
    let vector: Vec<String> = (0..DIMENSIONS)
        .map(|d| format!("{:.10}", ((d * 7919) % 2000) as f64 / 1e5 - 0.01))
        .collect();
    let vector = vector.join(",");
    let data: Vec<String> = (0..VECTORS)
        .map(|i| format!(r#"{{"object":"embedding","index":{i},"embedding":[{vector}]}}"#))
        .collect();
    Bytes::from(format!(
        r#"{{"object":"list","data":[{}],"model":"m","usage":{{"prompt_tokens":9,"total_tokens":9}}}}"#,
        data.join(",")
    ))
}

/// A legacy completion's stream: [`EVENTS`] text chunks, a finish, the
/// usage chunk and `[DONE]`, one frame each.
fn completion_frames() -> Arc<Vec<Bytes>> {
    let mut frames: Vec<Bytes> = (0..EVENTS)
        .map(|i| {
            Bytes::from(format!(
                "data: {{\"id\":\"c\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"text\":\"token{i} \",\"finish_reason\":null}}]}}\n\n"
            ))
        })
        .collect();
    frames.push(Bytes::from_static(
        b"data: {\"id\":\"c\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"stop\"}]}\n\n",
    ));
    frames.push(Bytes::from_static(
        b"data: {\"id\":\"c\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":64,\"total_tokens\":73}}\n\n",
    ));
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Arc::new(frames)
}

/// What the upstream answers, by the request's body.
#[derive(Clone)]
struct Answers {
    chat_stream: Arc<Vec<Bytes>>,
    completion_stream: Arc<Vec<Bytes>>,
    embeddings: Bytes,
}

type Answer = Ready<Result<Response<Frames>, Infallible>>;

/// The upstream: a JSON answer, a stream, or embeddings, as the request's
/// parsed [`ChatRequest`] asks (the inbound layer's chat body is not one of
/// the constants above).
fn upstream(
    answers: Answers,
) -> impl Service<Request<RequestBody>, Response = Response<Frames>, Error = Infallible, Future = Answer>
+ Clone {
    service_fn(move |request: Request<RequestBody>| {
        let chat = request.extensions().get::<Arc<ChatRequest>>();
        let asked = chat.map(|chat| (chat.operation(), chat.stream()));
        let stream = |frames: &Arc<Vec<Bytes>>| {
            (
                "text/event-stream",
                Frames(frames.iter().cloned().collect()),
            )
        };
        let (content_type, body) = match asked {
            Some((Operation::Completions, true)) => stream(&answers.completion_stream),
            Some((_, true)) => stream(&answers.chat_stream),
            Some((Operation::Embeddings, _)) => (
                "application/json",
                Frames(VecDeque::from([answers.embeddings.clone()])),
            ),
            _ => (
                "application/json",
                Frames(VecDeque::from([Bytes::from_static(JSON_ANSWER)])),
            ),
        };
        let mut response = Response::new(body);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        ready(Ok(response))
    })
}

/// The stack over `inner`, as a user would build it.
fn stack<S>(
    inner: S,
) -> impl Service<
    Request<RequestBody>,
    Response = Response<impl Body<Data = Bytes, Error: Into<BoxError>> + use<S>>,
    Error = BoxError,
> + Clone
where
    S: Service<
            Request<RequestBody>,
            Response = Response<Frames>,
            Error = Infallible,
            Future = Answer,
        > + Clone
        + Send
        + 'static,
{
    let prices = PriceTable::empty().with_model(
        "m",
        TokenPrices::new(Usd::from_picos(150_000), Usd::from_picos(600_000)),
    );
    ServiceBuilder::new()
        .layer(FallbackLayer::default())
        .layer(RetryLayer::default())
        .layer(CircuitBreakerLayer::default())
        .layer(CostLayer::new(Arc::new(prices), |record| {
            black_box(record);
        }))
        .service(inner)
}

fn request(body: &'static [u8]) -> Request<RequestBody> {
    if INBOUND.contains(&body) {
        // The inbound layer reads its API's request itself.
        let mut request = Request::post("/v1/chat/completions")
            .body(RequestBody::new(Bytes::from_static(body)))
            .expect("a valid request");
        request.extensions_mut().insert(ModelGroup(Arc::from("m")));
        return request;
    }
    // Read once at ingress, as the gateway does: the operation comes from
    // the route.
    let operation = match body {
        EMBEDDINGS_REQUEST => Operation::Embeddings,
        COMPLETIONS_REQUEST => Operation::Completions,
        _ => Operation::ChatCompletions,
    };
    let parsed = ChatRequest::parse_as(Bytes::from_static(body), operation).expect("valid");
    let mut request = Request::post("/v1/chat/completions")
        .body(RequestBody::from_chat(parsed))
        .expect("a valid request");
    request.extensions_mut().insert(ModelGroup(Arc::from("m")));
    request
}

/// The requests of the inbound APIs, which [`request`] leaves unparsed.
const INBOUND: [&[u8]; 4] = [
    MESSAGES_REQUEST,
    MESSAGES_STREAM_REQUEST,
    RESPONSES_REQUEST,
    RESPONSES_STREAM_REQUEST,
];

/// One whole request through `service`, body to its end.
fn one<S, B>(service: &mut S, body: &'static [u8], cx: &mut Context<'_>)
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    assert!(service.poll_ready(cx).is_ready());
    let future = pin!(service.call(request(body)));
    let Poll::Ready(Ok(response)) = future.poll(cx) else {
        panic!("the in-memory upstream answers at once");
    };
    let mut body = pin!(response.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(cx) {
        black_box(frame.is_ok());
    }
}

fn benches(c: &mut Criterion) {
    let answers = Answers {
        chat_stream: stream_frames(),
        completion_stream: completion_frames(),
        embeddings: embeddings_answer(),
    };
    let frames = answers.chat_stream.clone();
    let mut cx = Context::from_waker(Waker::noop());

    let mut group = c.benchmark_group("request");
    let mut bare = upstream(answers.clone());
    group.bench_function("bare", |b| b.iter(|| one(&mut bare, JSON_REQUEST, &mut cx)));
    let mut layered = stack(upstream(answers.clone()));
    group.bench_function("stack", |b| {
        b.iter(|| one(&mut layered, JSON_REQUEST, &mut cx))
    });
    group.finish();

    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(frames.len() as u64));
    let mut bare = upstream(answers.clone());
    group.bench_function("bare", |b| {
        b.iter(|| one(&mut bare, STREAM_REQUEST, &mut cx))
    });
    let mut layered = stack(upstream(answers.clone()));
    group.bench_function("stack", |b| {
        b.iter(|| one(&mut layered, STREAM_REQUEST, &mut cx))
    });
    group.finish();

    let mut group = c.benchmark_group("embeddings");
    group.throughput(Throughput::Bytes(answers.embeddings.len() as u64));
    let mut bare = upstream(answers.clone());
    group.bench_function("bare", |b| {
        b.iter(|| one(&mut bare, EMBEDDINGS_REQUEST, &mut cx))
    });
    let mut layered = stack(upstream(answers.clone()));
    group.bench_function("stack", |b| {
        b.iter(|| one(&mut layered, EMBEDDINGS_REQUEST, &mut cx))
    });
    group.finish();

    // The inbound APIs, over the same stack, against the bare chat answer.
    let inbound = [
        ("messages", MESSAGES_REQUEST, JSON_REQUEST),
        ("messages-stream", MESSAGES_STREAM_REQUEST, STREAM_REQUEST),
        ("responses", RESPONSES_REQUEST, JSON_REQUEST),
        ("responses-stream", RESPONSES_STREAM_REQUEST, STREAM_REQUEST),
    ];
    for (name, asked, chat) in inbound {
        let mut group = c.benchmark_group(name);
        if chat == STREAM_REQUEST {
            group.throughput(Throughput::Elements(frames.len() as u64));
        }
        let mut bare = upstream(answers.clone());
        group.bench_function("bare", |b| b.iter(|| one(&mut bare, chat, &mut cx)));
        if name.starts_with("messages") {
            let mut layered =
                InboundLayer::<Messages>::new().layer(stack(upstream(answers.clone())));
            group.bench_function("stack", |b| b.iter(|| one(&mut layered, asked, &mut cx)));
        } else {
            let mut layered =
                InboundLayer::<Responses>::new().layer(stack(upstream(answers.clone())));
            group.bench_function("stack", |b| b.iter(|| one(&mut layered, asked, &mut cx)));
        }
        group.finish();
    }

    let mut group = c.benchmark_group("completions-stream");
    group.throughput(Throughput::Elements(answers.completion_stream.len() as u64));
    let mut bare = upstream(answers.clone());
    group.bench_function("bare", |b| {
        b.iter(|| one(&mut bare, COMPLETIONS_REQUEST, &mut cx))
    });
    let mut layered = stack(upstream(answers.clone()));
    group.bench_function("stack", |b| {
        b.iter(|| one(&mut layered, COMPLETIONS_REQUEST, &mut cx))
    });
    group.finish();
}

criterion_group!(stack_benches, benches);
criterion_main!(stack_benches);
