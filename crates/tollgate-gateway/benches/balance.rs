//! Per-request overhead of the gateway's deployment picker (its balancer)
//! over a no-op service.
//!
//! Each iteration is one whole request: `poll_ready`, `call` (the pick, the
//! in-flight count, the request's extensions) and the response future
//! polled to its answer. Everything is ready at once, so it is polled with
//! a no-op waker: no runtime, no scheduling in the figures. The baseline is
//! the bare no-op service given the same request.
//!
//! - `one_deployment`: a group of one, which skips balancing;
//! - `<strategy>/3`: a group of three mock deployments, breakers on (one
//!   breaker snapshot per deployment per pick);
//! - `simple-shuffle/3/no-breakers`: the same with `cooldown_time: 0`;
//! - `.../limits`: deployments with `rpm` and `tpm` (never reached): each
//!   attempt is admitted by the limits' memory store first.
//!
//! Run with: cargo bench -p tollgate-gateway --bench balance

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tollgate_core::extensions::ModelGroup;
use tollgate_core::{BoxError, RequestBody};
use tollgate_gateway::{Gateway, config};
use tower::{Service, service_fn};

type Answer = Ready<Result<Response<Full<Bytes>>, BoxError>>;

fn noop() -> impl Service<
    Request<RequestBody>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future = Answer,
> + Clone {
    service_fn(|_: Request<RequestBody>| {
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"{}")))))
    })
}

/// A request for model group `group`, as the gateway's edge makes it.
fn request(group: &Arc<str>, body: &Bytes) -> Request<RequestBody> {
    let mut request = Request::new(RequestBody::new(body.clone()));
    request
        .extensions_mut()
        .insert(ModelGroup(Arc::clone(group)));
    request
}

/// One whole request through `service`.
fn one<S>(service: &mut S, request: Request<RequestBody>, cx: &mut Context<'_>)
where
    S: Service<Request<RequestBody>, Response = Response<Full<Bytes>>, Error = BoxError>,
{
    assert!(service.poll_ready(cx).is_ready());
    let future = pin!(service.call(request));
    let Poll::Ready(Ok(response)) = future.poll(cx) else {
        panic!("the no-op service answers at once");
    };
    black_box(response);
}

/// A gateway with one group `g` of `count` mock deployments, with `rpm`
/// and `tpm` limits when `limits`.
fn gateway(count: usize, router_settings: &str, limits: bool) -> Gateway {
    let mut yaml = String::from("model_list:\n");
    for i in 0..count {
        yaml.push_str(&format!(
            "  - model_name: g\n    litellm_params:\n      model: mock/m{i}\n"
        ));
        if limits {
            yaml.push_str("      rpm: 1000000000\n      tpm: 1000000000000\n");
        }
    }
    yaml.push_str(&format!("router_settings:\n{router_settings}"));
    let loaded = config::load_str(&yaml, &|_| None).expect("the bench config loads");
    Gateway::new(&loaded.config).expect("the bench config builds")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let group: Arc<str> = Arc::from("g");
    let body = Bytes::from_static(
        br#"{"model":"g","messages":[{"role":"user","content":"Hello there, how are you?"}]}"#,
    );

    let mut group_bench = c.benchmark_group("pick");
    let mut baseline = noop();
    group_bench.bench_function("baseline", |b| {
        b.iter(|| one(&mut baseline, request(&group, &body), &mut cx))
    });
    let shuffle = "  routing_strategy: simple-shuffle\n";
    let usage = "  routing_strategy: usage-based-routing\n";
    let cases: [(&str, usize, &str, bool); 9] = [
        ("one_deployment", 1, shuffle, false),
        ("simple-shuffle/3", 3, shuffle, false),
        (
            "simple-shuffle/3/no-breakers",
            3,
            "  routing_strategy: simple-shuffle\n  cooldown_time: 0\n",
            false,
        ),
        ("least-busy/3", 3, "  routing_strategy: least-busy\n", false),
        (
            "latency-based-routing/3",
            3,
            "  routing_strategy: latency-based-routing\n",
            false,
        ),
        ("simple-shuffle/12", 12, shuffle, false),
        ("one_deployment/limits", 1, shuffle, true),
        ("simple-shuffle/3/limits", 3, shuffle, true),
        ("usage-based-routing/3/limits", 3, usage, true),
    ];
    for (name, count, settings, limits) in cases {
        let gateway = gateway(count, settings, limits);
        let mut service = gateway.pick_deployment_over(noop());
        group_bench.bench_function(name, |b| {
            b.iter(|| one(&mut service, request(&group, &body), &mut cx))
        });
    }
    group_bench.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
