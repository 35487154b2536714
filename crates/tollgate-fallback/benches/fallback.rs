//! Per-request overhead of the fallback layer on its success path.
//!
//! Run with: cargo bench -p tollgate-fallback
//!
//! Every variant builds the same request (a chat completion with the
//! extensions the gateway sets: `ModelGroup`, `Deadline`; the body carries
//! its parsed view) and drives the response future — and for streams the body —
//! to its end with a no-op waker: the inner service answers at once, so this
//! measures the layer, not a runtime.
//!
//! - `json`: a complete answer from a no-op service.
//! - `stream`: a 53-event answer (role chunk, 50 content chunks, finish,
//!   `[DONE]`), one event per frame, from a pass-through service; the layer
//!   reads it up to its first content, then forwards it event by event.

#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::{Body, Frame};
use tollgate_core::extensions::{Deadline, ModelGroup};
use tollgate_core::{ChatRequest, RequestBody};
use tollgate_fallback::{FallbackConfig, FallbackLayer};
use tower::{Layer, Service, service_fn};

const BODY: &[u8] = br#"{"model":"demo","messages":[{"role":"user","content":"Hello"}]}"#;
const STREAM_BODY: &[u8] =
    br#"{"model":"demo","stream":true,"messages":[{"role":"user","content":"Hello"}]}"#;
const ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"demo","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

fn request(body: &'static [u8]) -> Request<RequestBody> {
    let Ok(chat) = ChatRequest::parse(Bytes::from_static(body)) else {
        unreachable!("the bench's request parses")
    };
    let mut request = Request::new(RequestBody::from_chat(chat));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static("/v1/chat/completions");
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let extensions = request.extensions_mut();
    extensions.insert(ModelGroup(Arc::from("demo")));
    extensions.insert(Deadline::after(Duration::from_secs(600)));
    request
}

/// A body whose frames are all ready at once.
struct Frames {
    frames: Arc<[Bytes]>,
    next: usize,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = this.frames.get(this.next).cloned();
        this.next += 1;
        Poll::Ready(frame.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.frames.len()
    }
}

/// The events of one streamed answer.
fn events() -> Arc<[Bytes]> {
    let chunk = |delta: &str, finish: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"demo\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        ))
    };
    let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for i in 0..50 {
        events.push(chunk(&format!(r#"{{"content":"token{i} "}}"#), "null"));
    }
    events.push(chunk("{}", "\"stop\""));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events.into()
}

/// A service that answers every request with `frames`, as `content_type`.
fn upstream(
    frames: Arc<[Bytes]>,
    content_type: &'static str,
) -> impl Service<
    Request<RequestBody>,
    Response = Response<Frames>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Frames>, Infallible>>,
> + Clone
+ Send
+ 'static {
    service_fn(move |request: Request<RequestBody>| {
        black_box(&request);
        let mut response = Response::new(Frames {
            frames: frames.clone(),
            next: 0,
        });
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        std::future::ready(Ok(response))
    })
}

/// Calls `service` once and reads the response to its end; returns the
/// bytes read.
fn call_once<S, B>(service: &mut S, body: &'static [u8]) -> usize
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let mut future = pin!(service.call(request(body)));
    let response = match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        other => panic!(
            "the service answers at once: {:?}",
            other.map(|r| r.map(|_| ()))
        ),
    };
    let mut body = pin!(response.into_body());
    let mut read = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                read += frame.into_data().map_or(0, |data| black_box(data).len());
            }
            Poll::Ready(None) => return read,
            other => panic!(
                "the body is ready at once: {:?}",
                other.map(|f| f.map(|f| f.map(|_| ())))
            ),
        }
    }
}

fn bench(c: &mut Criterion) {
    let answer: Arc<[Bytes]> = Arc::from([Bytes::from_static(ANSWER)]);
    let mut group = c.benchmark_group("fallback/json");
    let mut bare = upstream(answer.clone(), "application/json");
    group.bench_function("baseline: no-op service", |b| {
        b.iter(|| black_box(call_once(&mut bare, BODY)))
    });
    let mut plain = FallbackLayer::default().layer(upstream(answer.clone(), "application/json"));
    group.bench_function("FallbackLayer (no fallback for the group)", |b| {
        b.iter(|| black_box(call_once(&mut plain, BODY)))
    });
    let config = FallbackConfig::builder()
        .fallbacks("demo", ["backup-1", "backup-2"])
        .build()
        .expect("a valid config");
    let cascade = FallbackLayer::new(config);
    let mut cascade = cascade.layer(upstream(answer, "application/json"));
    group.bench_function("FallbackLayer (two fallbacks)", |b| {
        b.iter(|| black_box(call_once(&mut cascade, BODY)))
    });
    group.finish();

    let events = events();
    let mut group = c.benchmark_group("fallback/stream");
    let mut bare = upstream(events.clone(), "text/event-stream");
    group.bench_function("baseline: pass-through service, 53 events", |b| {
        b.iter(|| black_box(call_once(&mut bare, STREAM_BODY)))
    });
    let config = FallbackConfig::builder()
        .fallbacks("demo", ["backup-1", "backup-2"])
        .build()
        .expect("a valid config");
    let cascade = FallbackLayer::new(config);
    let mut cascade = cascade.layer(upstream(events.clone(), "text/event-stream"));
    group.bench_function("FallbackLayer (two fallbacks), 53 events", |b| {
        b.iter(|| black_box(call_once(&mut cascade, STREAM_BODY)))
    });
    let config = FallbackConfig::builder()
        .max_continuations(0)
        .build()
        .expect("a valid config");
    let guard = FallbackLayer::new(config);
    let mut guard = guard.layer(upstream(events, "text/event-stream"));
    group.bench_function(
        "FallbackLayer (no fallback, no continuation), 53 events",
        |b| b.iter(|| black_box(call_once(&mut guard, STREAM_BODY))),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
