//! Per-request overhead of the balancer over a no-op service.
//!
//! Each iteration is one whole request: `poll_ready`, `call` (the pick, the
//! in-flight count, the request's extensions) and the response future
//! polled to its answer. Everything is ready at once, so it is polled with
//! a no-op waker: no runtime, no scheduling in the figures. The baseline is
//! the bare no-op service given the same request. The deployments are
//! built as the gateway builds them: breakers read through
//! `tollgate-breaker`'s `Breakers`, `rpm`/`tpm` counted in
//! `tollgate-limits`' memory store.
//!
//! - `one_deployment`: a group of one, which skips balancing;
//! - `<strategy>/3`: a group of three deployments, breakers on (one
//!   breaker snapshot per deployment per pick);
//! - `simple-shuffle/3/no-breakers`: the same, no breaker registered;
//! - `.../limits`: deployments with `rpm` and `tpm` (never reached): each
//!   attempt is admitted by the limits' memory store first.
//!
//! Run with: cargo bench -p tollgate-balance --bench pick

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tollgate_balance::{Balance, Group, GroupMember, Groups, MemberConfig, Strategy};
use tollgate_breaker::Breakers;
use tollgate_core::extensions::{ModelGroup, Target};
use tollgate_core::{BoxError, DeploymentLimits, DeploymentQuota, RequestBody, Unlimited};
use tollgate_limits::{DeploymentRateLimits, MemoryStore};
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

/// One case: how many deployments, how they are balanced, whether each has
/// a breaker and (never reached) `rpm`/`tpm` limits.
struct Case {
    name: &'static str,
    count: usize,
    strategy: Strategy,
    breakers: bool,
    limits: bool,
}

/// A balancer over `noop` for group `g` as `case` describes it.
fn balance(
    case: &Case,
) -> impl Service<Request<RequestBody>, Response = Response<Full<Bytes>>, Error = BoxError> {
    let breakers = Breakers::default();
    let limits: Arc<dyn DeploymentLimits> = if case.limits {
        Arc::new(DeploymentRateLimits::new(Arc::new(MemoryStore::new())))
    } else {
        Arc::new(Unlimited)
    };
    let members = (0..case.count)
        .map(|i| {
            let id = format!("g/{i}");
            if case.breakers {
                breakers.register(&id);
            }
            let quota = DeploymentQuota {
                rpm: case.limits.then_some(1_000_000_000),
                tpm: case.limits.then_some(1_000_000_000_000),
            };
            GroupMember {
                target: Target {
                    model_group: Arc::from("g"),
                    deployment_id: Arc::from(id.as_str()),
                    upstream_model: Arc::from(format!("m{i}")),
                },
                config: MemberConfig {
                    quota,
                    ..MemberConfig::new(id)
                },
                extension: (),
            }
        })
        .collect();
    let group = Group::new(Arc::from("g"), case.strategy, members, limits);
    let groups: Groups<()> = Arc::new([(Arc::from("g"), Arc::new(group))].into_iter().collect());
    Balance::new(noop(), breakers, groups)
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
    let case = |name, count, strategy, breakers, limits| Case {
        name,
        count,
        strategy,
        breakers,
        limits,
    };
    let cases = [
        case("one_deployment", 1, Strategy::SimpleShuffle, true, false),
        case("simple-shuffle/3", 3, Strategy::SimpleShuffle, true, false),
        case(
            "simple-shuffle/3/no-breakers",
            3,
            Strategy::SimpleShuffle,
            false,
            false,
        ),
        case("least-busy/3", 3, Strategy::LeastBusy, true, false),
        case(
            "latency-based-routing/3",
            3,
            Strategy::LatencyBased,
            true,
            false,
        ),
        case(
            "simple-shuffle/12",
            12,
            Strategy::SimpleShuffle,
            true,
            false,
        ),
        case(
            "one_deployment/limits",
            1,
            Strategy::SimpleShuffle,
            true,
            true,
        ),
        case(
            "simple-shuffle/3/limits",
            3,
            Strategy::SimpleShuffle,
            true,
            true,
        ),
        case(
            "usage-based-routing/3/limits",
            3,
            Strategy::UsageBased,
            true,
            true,
        ),
    ];
    for case in &cases {
        let mut service = balance(case);
        group_bench.bench_function(case.name, |b| {
            b.iter(|| one(&mut service, request(&group, &body), &mut cx))
        });
    }
    group_bench.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
