//! Per-request overhead of a CLOSED breaker over a no-op service.
//!
//! Each iteration is one whole request: `poll_ready`, `call`, the future
//! polled to its answer and the body polled to its end (where a success is
//! settled). Everything is ready at once, so it is polled with a no-op
//! waker: no runtime, no scheduling in the figures.
//!
//! - `single/*`: one thread; the bare service is the baseline.
//! - `contended/*`: two threads hammer the same key of one shared registry
//!   at once (the worst case for the CLOSED path's atomics); time per
//!   request on each thread, against the bare service run the same way.
//!
//! Run with: cargo bench -p tollgate-breaker

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tollgate_breaker::{BreakerConfig, CircuitBreakerLayer, FixedKey};
use tower::{Layer, Service, service_fn};

type Answer = Ready<Result<Response<Full<Bytes>>, Infallible>>;

fn noop()
-> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future = Answer>
+ Clone
+ Send {
    service_fn(|_: Request<()>| ready(Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))))
}

/// One whole request through `service`, body included.
fn one<S, B>(service: &mut S, cx: &mut Context<'_>)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    assert!(service.poll_ready(cx).is_ready());
    let future = pin!(service.call(Request::new(())));
    let Poll::Ready(Ok(response)) = future.poll(cx) else {
        panic!("the no-op service answers at once");
    };
    let mut body = pin!(response.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(cx) {
        black_box(frame.is_ok());
    }
}

fn breaker()
-> impl Service<Request<()>, Response = Response<impl Body + use<>>, Error = tollgate_core::BoxError>
+ Clone
+ Send {
    let config = BreakerConfig::builder()
        .jitter(0.0)
        .build()
        .expect("valid config");
    CircuitBreakerLayer::new(config)
        .key(FixedKey::new("deployment-0"))
        .layer(noop())
}

/// Two threads, `iters` requests each; the time of the slower one.
fn contended<S, B>(service: S, iters: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let run = move |mut service: S| {
        move || {
            let mut cx = Context::from_waker(Waker::noop());
            let start = Instant::now();
            for _ in 0..iters {
                one(&mut service, &mut cx);
            }
            start.elapsed()
        }
    };
    let other = std::thread::spawn(run(service.clone()));
    let mine = run(service)();
    mine.max(other.join().expect("bench thread"))
}

fn bench(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("single");
    let mut bare = noop();
    group.bench_function("noop", |b| b.iter(|| one(&mut bare, &mut cx)));
    let mut guarded = breaker();
    group.bench_function("breaker_closed", |b| b.iter(|| one(&mut guarded, &mut cx)));
    group.finish();

    let mut group = c.benchmark_group("contended");
    group.bench_function("noop", |b| b.iter_custom(|iters| contended(noop(), iters)));
    let shared = breaker();
    group.bench_function("breaker_closed", |b| {
        b.iter_custom(|iters| contended(shared.clone(), iters))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
