//! The request limit (rpm) through the layer, with paused time (the GCRA
//! function itself is tested under proptest in `src/gcra.rs`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{limited, rejection, request, send};
use http::{Response, StatusCode};
use tollgate_core::{ErrorClass, Failure, Scope};
use tollgate_limits::{KeyLimits, Limit, ManualClock, MemoryStore};

fn setup() -> (common::Limited, Arc<common::Upstream>) {
    limited(Arc::new(MemoryStore::new()), Arc::new(ManualClock::new(0)))
}

#[tokio::test(start_paused = true)]
async fn rpm_60_admits_a_burst_of_60_then_one_per_second() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("alias").rpm(60));

    for i in 0..60 {
        assert!(
            send(&service, request(&limits)).await.is_ok(),
            "request {i}"
        );
    }
    let error = send(&service, request(&limits)).await.unwrap_err();
    let limited = rejection(Err::<(), _>(error));
    assert_eq!(limited.limit(), Limit::Requests);
    assert_eq!(limited.key(), "alias");
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(
        limited.to_string(),
        "Rate limit exceeded for key 'alias': 60 requests per minute. Retry after 1 s."
    );
    // The rejected request never reached the upstream.
    assert_eq!(upstream.calls(), 60);

    // Half a second is not enough; a whole one is, for one request.
    tokio::time::advance(Duration::from_millis(500)).await;
    let still = rejection(send(&service, request(&limits)).await);
    assert_eq!(still.retry_after(), Some(Duration::from_millis(500)));
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(send(&service, request(&limits)).await.is_ok());
    rejection(send(&service, request(&limits)).await);
    assert_eq!(upstream.calls(), 61);

    // A minute of quiet gives the whole burst back.
    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..60 {
        assert!(send(&service, request(&limits)).await.is_ok());
    }
    assert_eq!(upstream.calls(), 121);
}

#[tokio::test(start_paused = true)]
async fn keys_are_limited_separately() {
    let (service, upstream) = setup();
    let a = Arc::new(KeyLimits::new("a").rpm(1));
    let b = Arc::new(KeyLimits::new("b").rpm(1));
    assert!(send(&service, request(&a)).await.is_ok());
    assert!(send(&service, request(&b)).await.is_ok());
    rejection(send(&service, request(&a)).await);
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn headers_are_exact_on_success_and_on_rejection() {
    let (service, _) = setup();
    let limits = Arc::new(KeyLimits::new("alias").rpm(60));

    let response = send(&service, request(&limits)).await.unwrap();
    let headers = response.headers();
    assert_eq!(headers["x-ratelimit-limit-requests"], "60");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "59");
    assert_eq!(headers["x-ratelimit-reset-requests"], "1s");
    assert!(headers.get("x-ratelimit-limit-tokens").is_none());

    for _ in 0..58 {
        send(&service, request(&limits)).await.unwrap();
    }
    let response = send(&service, request(&limits)).await.unwrap();
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(response.headers()["x-ratelimit-reset-requests"], "1m0s");

    tokio::time::advance(Duration::from_millis(250)).await;
    let limited = rejection(send(&service, request(&limits)).await);
    let response: Response<Bytes> = limited.to_response();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = response.headers();
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["x-ratelimit-limit-requests"], "60");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(headers["x-ratelimit-reset-requests"], "59.75s");
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        body["error"]["message"],
        "Rate limit exceeded for key 'alias': 60 requests per minute. Retry after 1 s."
    );
}

#[tokio::test(start_paused = true)]
async fn the_rejection_is_a_classified_failure() {
    let (service, _) = setup();
    let limits = Arc::new(KeyLimits::new("alias").rpm(1));
    send(&service, request(&limits)).await.unwrap();
    let error = send(&service, request(&limits)).await.unwrap_err();
    let failure = Failure::from_error(&*error);
    assert_eq!(failure.class(), ErrorClass::RateLimited);
    assert_eq!(failure.scope(), Some(Scope::Key));
    assert_eq!(failure.subkind(), Some("rpm"));
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(60)));
    assert!(!failure.is_fallback_eligible());
}

#[tokio::test(start_paused = true)]
async fn requests_without_limits_pass_untouched() {
    let (service, upstream) = setup();
    let response = send(
        &service,
        http::Request::new(tollgate_core::RequestBody::default()),
    )
    .await
    .unwrap();
    assert!(
        response
            .headers()
            .get("x-ratelimit-limit-requests")
            .is_none()
    );
    let unlimited = Arc::new(KeyLimits::new("free"));
    for _ in 0..1000 {
        send(&service, request(&unlimited)).await.unwrap();
    }
    assert_eq!(upstream.calls(), 1001);
}

#[tokio::test(start_paused = true)]
async fn an_rpm_of_zero_admits_nothing() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("blocked").rpm(0));
    let limited = rejection(send(&service, request(&limits)).await);
    assert_eq!(limited.limit(), Limit::Requests);
    assert_eq!(upstream.calls(), 0);
}
