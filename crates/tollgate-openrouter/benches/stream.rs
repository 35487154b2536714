//! The layer's overhead over a no-op upstream `service_fn`, which is
//! measured alone as the baseline in the same run:
//!
//! - `stream`: `stream_success.sse` with its content events repeated into a
//!   long stream (one event per chunk, as tokens arrive), drained through
//!   the layer; reported as bytes/s (`stream/bytes`) and events/s
//!   (`stream/events`, whose inverse is the time per event);
//! - `complete`: one non-streaming answer (`success_reasoning_cost.json`),
//!   request to drained body.
//!
//! Run with: `cargo bench -p tollgate-openrouter -- --warm-up-time 1 --measurement-time 3`

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body::{Body, Frame};
use tollgate_openrouter::{OpenRouterConfig, OpenRouterLayer};
use tower::{Layer, Service, service_fn};

/// Content events between the stream's head and tail.
const REPEAT: usize = 300;

/// An in-memory body: one frame per chunk.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .0
                .pop_front()
                .map(|chunk| Ok(Frame::data(chunk))),
        )
    }
}

/// Everything here is in memory: one poll finishes it.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("an in-memory future was pending"),
    }
}

/// Drains a body; returns the bytes it yielded.
fn drain<B: Body<Data = Bytes>>(body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    let mut total = 0;
    while let Some(frame) = now(std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))) {
        if let Ok(data) = frame.unwrap().into_data() {
            total += black_box(data).len();
        }
    }
    total
}

fn fixture(name: &str) -> Bytes {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openrouter/");
    Bytes::from(std::fs::read(format!("{path}{name}")).expect("fixture"))
}

/// The long stream, one event per chunk.
fn long_stream() -> Vec<Bytes> {
    let fixture = fixture("stream_success.sse");
    let text = std::str::from_utf8(&fixture).unwrap();
    let events: Vec<Bytes> = text
        .split_inclusive("\n\n")
        .map(|e| Bytes::copy_from_slice(e.as_bytes()))
        .collect();
    // 2 comments + role chunk | 2 content chunks, a comment, 1 content chunk | finish, usage, [DONE].
    let (head, rest) = events.split_at(3);
    let (content, tail) = rest.split_at(rest.len() - 3);
    let mut stream = head.to_vec();
    for _ in 0..REPEAT {
        stream.extend_from_slice(content);
    }
    stream.extend_from_slice(tail);
    stream
}

fn sse(chunks: &[Bytes]) -> Response<Chunks> {
    let mut response = Response::new(Chunks(chunks.iter().cloned().collect()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn json(body: &Bytes) -> Response<Chunks> {
    let mut response = Response::new(Chunks(VecDeque::from([body.clone()])));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn layer() -> OpenRouterLayer {
    OpenRouterLayer::new(
        OpenRouterConfig::new()
            .api_key("sk-or-v1-bench")
            .build()
            .unwrap(),
    )
}

fn request() -> Request<()> {
    Request::post("/chat/completions").body(()).unwrap()
}

fn bench_stream(c: &mut Criterion) {
    let chunks = long_stream();
    let bytes: usize = chunks.iter().map(Bytes::len).sum();
    let events = chunks.len();

    let upstream = service_fn(|_: Request<()>| {
        let response = sse(&chunks);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut bare = upstream;
    let mut layered = layer().layer(upstream);
    // Sanity: the layer forwards the stream, minus the two leading comments
    // and OpenRouter's own fields.
    let out = drain(now(layered.call(request())).unwrap().into_body());
    assert!(out > bytes / 2 && out < bytes, "{out} of {bytes}");

    for (name, throughput) in [
        ("stream/bytes", Throughput::Bytes(bytes as u64)),
        ("stream/events", Throughput::Elements(events as u64)),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(throughput);
        group.bench_function("passthrough", |b| {
            b.iter(|| drain(now(bare.call(request())).unwrap().into_body()))
        });
        group.bench_function("openrouter", |b| {
            b.iter(|| drain(now(layered.call(request())).unwrap().into_body()))
        });
        group.finish();
    }
}

fn bench_complete(c: &mut Criterion) {
    let body = fixture("success_reasoning_cost.json");
    let upstream = service_fn(|_: Request<()>| {
        let response = json(&body);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut bare = upstream;
    let mut layered = layer().layer(upstream);

    let mut group = c.benchmark_group("complete");
    group.bench_function("passthrough", |b| {
        b.iter(|| drain(now(bare.call(request())).unwrap().into_body()))
    });
    group.bench_function("openrouter", |b| {
        b.iter(|| drain(now(layered.call(request())).unwrap().into_body()))
    });
    group.finish();
}

criterion_group!(benches, bench_stream, bench_complete);
criterion_main!(benches);
