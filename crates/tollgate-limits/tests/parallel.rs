//! The parallel limit: a permit per request in flight, held until its
//! response body ends or is dropped, or its call fails. Paused time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{chat, limited, rejection, request, send};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tollgate_core::{BoxError, ErrorClass, Failure};
use tollgate_limits::{KeyLimits, Limit, ManualClock, MemoryStore, RateLimitLayer};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

fn setup() -> (common::Limited, Arc<common::Upstream>) {
    limited(Arc::new(MemoryStore::new()), Arc::new(ManualClock::new(0)))
}

#[tokio::test(start_paused = true)]
async fn parallel_2_admits_2_and_rejects_the_third_until_a_body_is_dropped() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("alias").max_parallel(2));

    let first = send(&service, request(&limits)).await.unwrap();
    let second = send(&service, request(&limits)).await.unwrap();
    let limited = rejection(send(&service, request(&limits)).await);
    assert_eq!(limited.limit(), Limit::Parallel);
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(
        limited.to_string(),
        "Rate limit exceeded for key 'alias': 2 parallel requests. Retry after 1 s."
    );
    assert_eq!(
        Failure::from_error(&limited).class(),
        ErrorClass::RateLimited
    );
    assert_eq!(upstream.calls(), 2);

    // Time alone frees nothing.
    tokio::time::advance(Duration::from_secs(5)).await;
    rejection(send(&service, request(&limits)).await);

    // The client goes away: its permit comes back.
    drop(first);
    let third = send(&service, request(&limits)).await.unwrap();
    rejection(send(&service, request(&limits)).await);

    // A body read to its end frees its permit too.
    second.into_body().collect().await.unwrap();
    third.into_body().collect().await.unwrap();
    let _a = send(&service, request(&limits)).await.unwrap();
    let _b = send(&service, request(&limits)).await.unwrap();
    assert_eq!(upstream.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_gives_its_permit_back() {
    let limits = Arc::new(KeyLimits::new("alias").max_parallel(1));
    let layer = RateLimitLayer::new(Arc::new(MemoryStore::new()));
    let service = layer.layer(service_fn(|_: Request<tollgate_core::RequestBody>| async {
        Err::<Response<Full<Bytes>>, BoxError>("connection refused".into())
    }));
    for _ in 0..3 {
        let error = service.clone().oneshot(request(&limits)).await.unwrap_err();
        assert_eq!(error.to_string(), "connection refused");
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_the_answer_gives_its_permit_back() {
    let limits = Arc::new(KeyLimits::new("alias").max_parallel(1));
    let (upstream, mut handle) =
        mock::pair::<Request<tollgate_core::RequestBody>, Response<Full<Bytes>>>();
    let layer = RateLimitLayer::new(Arc::new(MemoryStore::new()));
    let mut service = layer.layer(upstream);

    handle.allow(2);
    let pending = service.ready().await.unwrap().call(request(&limits));
    let pending = tokio::spawn(pending);
    let (_, _respond) = handle.next_request().await.unwrap();
    let busy = service.ready().await.unwrap().call(request(&limits)).await;
    assert_eq!(rejection(busy).limit(), Limit::Parallel);

    pending.abort();
    let _ = pending.await;
    let again = service.ready().await.unwrap().call(request(&limits));
    let again = tokio::spawn(again);
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_response(Response::new(Full::new(Bytes::new())));
    assert!(again.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_parallel_rejection_gives_the_token_reservation_back() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("alias").tpm(1000).max_parallel(1));
    let _held = send(&service, chat(&limits, Some(300))).await.unwrap();
    let limited = rejection(send(&service, chat(&limits, Some(300))).await);
    assert_eq!(limited.limit(), Limit::Parallel);
    // The headers show the tokens as they are after the refund.
    assert_eq!(limited.headers().tokens.unwrap().remaining, 700);
    drop(_held);
    upstream.report(Some(300), None);
    let response = send(&service, chat(&limits, Some(300))).await.unwrap();
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], "400");
}
