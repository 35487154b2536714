//! Many threads against one HALF_OPEN breaker.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::sync::{Barrier, watch};
use tollgate_breaker::{BreakerConfig, CircuitBreakerLayer, CircuitOpen, FixedKey, State, key_fn};
use tower::{Layer, Service, ServiceExt, service_fn};

const CALLS: usize = 1000;
const PROBES: u32 = 3;

/// 1,000 calls race at a HALF_OPEN breaker on a multi-threaded runtime;
/// exactly `half_open_max_probes` reach the upstream, the rest are rejected
/// at once. The upstream holds the probes until every call has been made,
/// so no probe can settle (and close the breaker) early.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_open_breaker_lets_exactly_its_probes_through() {
    let config = BreakerConfig::builder()
        .half_open_max_probes(PROBES)
        .jitter(0.0)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(config).key(FixedKey::new("upstream"));
    let breakers = layer.breakers();
    // Open with no time left: the next call finds it HALF_OPEN.
    breakers.force_open("upstream", Duration::ZERO);

    let reached = Arc::new(AtomicUsize::new(0));
    let (release, released) = watch::channel(false);
    let upstream = {
        let reached = reached.clone();
        service_fn(move |_: Request<()>| {
            reached.fetch_add(1, Ordering::SeqCst);
            let mut released = released.clone();
            async move {
                released.wait_for(|go| *go).await.unwrap();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
            }
        })
    };
    let service = layer.layer(upstream);

    let start = Arc::new(Barrier::new(CALLS));
    let made = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(release);
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| {
            let mut service = service.clone();
            let (start, made, release) = (start.clone(), made.clone(), release.clone());
            tokio::spawn(async move {
                service.ready().await.unwrap();
                start.wait().await;
                // Admission is decided here, in `call`.
                let future = service.call(Request::new(()));
                if made.fetch_add(1, Ordering::SeqCst) + 1 == CALLS {
                    release.send_replace(true);
                }
                match future.await {
                    Ok(response) => {
                        response.into_body().collect().await.unwrap();
                        true
                    }
                    Err(error) => {
                        assert!(error.is::<CircuitOpen>(), "{error}");
                        false
                    }
                }
            })
        })
        .collect();

    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    assert_eq!(admitted, PROBES as usize);
    assert_eq!(reached.load(Ordering::SeqCst), PROBES as usize);
    let snapshot = breakers.snapshot("upstream").unwrap();
    assert_eq!(snapshot.state, State::Closed, "the probes succeeded");
    assert_eq!(snapshot.probes_in_flight, 0);
}

/// Many threads counting on one CLOSED breaker lose no count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_counts_are_exact_under_contention() {
    let config = BreakerConfig::builder()
        .window(Duration::from_secs(3600))
        .buckets(1)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(config)
        .key(key_fn(|_: &Request<()>| Some(String::from("upstream"))));
    let breakers = layer.breakers();
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    service.clone().oneshot(Request::new(())).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let snapshot = breakers.snapshot("upstream").unwrap();
    assert_eq!((snapshot.window_calls, snapshot.window_failures), (4000, 0));
}
