//! Per-request overhead of the retry layer over a no-op service.
//!
//! Run with: cargo bench -p tollgate-retry
//!
//! Every variant builds the same request (a chat completion's headers and
//! body) and polls the response future once with a no-op waker: the inner
//! service answers at once, so this measures the layer, not a runtime.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tollgate_retry::{RetryConfig, RetryLayer};
use tower::{Layer, Service, service_fn};

const BODY: &[u8] = br#"{"model":"demo","messages":[{"role":"user","content":"Hello"}]}"#;

fn request() -> Request<Bytes> {
    Request::post("http://upstream.internal/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-bench-0000000000000000")
        .header("x-request-id", "0a1b2c3d")
        .body(Bytes::from_static(BODY))
        .unwrap_or_default()
}

/// Calls `service` once and polls the future to its (immediate) end.
fn call_once<S>(service: &mut S) -> Response<Bytes>
where
    S: Service<Request<Bytes>, Response = Response<Bytes>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let mut future = pin!(service.call(request()));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        other => panic!("the no-op service answers at once: {other:?}"),
    }
}

fn no_op() -> impl Service<
    Request<Bytes>,
    Response = Response<Bytes>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Bytes>, Infallible>>,
> + Clone {
    service_fn(|request: Request<Bytes>| {
        black_box(&request);
        std::future::ready(Ok(Response::new(Bytes::from_static(b"{}"))))
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry");

    let mut bare = no_op();
    group.bench_function("baseline: no-op service", |b| {
        b.iter(|| black_box(call_once(&mut bare)))
    });

    let mut retry = RetryLayer::default().layer(no_op());
    group.bench_function("RetryLayer (defaults)", |b| {
        b.iter(|| black_box(call_once(&mut retry)))
    });

    let config = RetryConfig::builder()
        .num_retries(0)
        .build()
        .expect("num_retries 0 is valid");
    let layer = RetryLayer::new(config);
    let mut never = layer.layer(no_op());
    group.bench_function("RetryLayer (num_retries 0)", |b| {
        b.iter(|| black_box(call_once(&mut never)))
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
