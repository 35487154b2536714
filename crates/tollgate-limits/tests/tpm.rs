//! The token limit (tpm): reserved from the request's estimate, reconciled
//! with the reported usage when the response ends. Paused time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{chat, limited, rejection, send, send_and_finish};
use http_body_util::BodyExt;
use tollgate_core::extensions::UsageReport;
use tollgate_limits::{KeyLimits, Limit, ManualClock, MemoryStore};

fn setup() -> (common::Limited, Arc<common::Upstream>) {
    limited(Arc::new(MemoryStore::new()), Arc::new(ManualClock::new(0)))
}

#[tokio::test(start_paused = true)]
async fn max_tokens_are_reserved_and_what_does_not_fit_waits() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("alias").tpm(1000));

    let response = send(&service, chat(&limits, Some(600))).await.unwrap();
    let headers = response.headers();
    assert_eq!(headers["x-ratelimit-limit-tokens"], "1000");
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "400");
    // 600 tokens at 1000 per minute come back in 36 s.
    assert_eq!(headers["x-ratelimit-reset-tokens"], "36s");
    assert!(headers.get("x-ratelimit-limit-requests").is_none());

    let limited = rejection(send(&service, chat(&limits, Some(600))).await);
    assert_eq!(limited.limit(), Limit::Tokens);
    // 200 more tokens are needed: 12 s.
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(12)));
    assert_eq!(
        limited.to_string(),
        "Rate limit exceeded for key 'alias': 1000 tokens per minute. Retry after 12 s."
    );
    let tokens = limited.headers().tokens.unwrap();
    assert_eq!((tokens.limit, tokens.remaining), (1000, 400));
    assert_eq!(upstream.calls(), 1);

    // A smaller request still fits.
    assert!(send(&service, chat(&limits, Some(400))).await.is_ok());
    tokio::time::advance(Duration::from_secs(12)).await;
    rejection(send(&service, chat(&limits, Some(600))).await);
    tokio::time::advance(Duration::from_secs(24)).await;
    assert!(send(&service, chat(&limits, Some(600))).await.is_ok());
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn reconciling_down_lets_the_next_request_in() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("alias").tpm(1000));
    // The upstream used 100 tokens of the 600 reserved.
    upstream.report(Some(100), None);

    let response = send(&service, chat(&limits, Some(600))).await.unwrap();
    // While the response is open, the reservation holds.
    rejection(send(&service, chat(&limits, Some(600))).await);
    // Its end gives 500 back.
    response.into_body().collect().await.unwrap();
    let response = send(&service, chat(&limits, Some(600))).await.unwrap();
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], "300");
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn usage_above_the_reservation_is_taken_too() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("alias").tpm(1000));
    upstream.report(Some(900), None);
    send_and_finish(&service, chat(&limits, Some(100)))
        .await
        .unwrap();
    // 900 used: 100 left, so 200 does not fit.
    let limited = rejection(send(&service, chat(&limits, Some(200))).await);
    assert_eq!(limited.headers().tokens.unwrap().remaining, 100);
}

#[tokio::test(start_paused = true)]
async fn usage_that_never_arrives_keeps_the_reservation() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("alias").tpm(1000));
    upstream.report(None, None);
    send_and_finish(&service, chat(&limits, Some(600)))
        .await
        .unwrap();
    let limited = rejection(send(&service, chat(&limits, Some(600))).await);
    assert_eq!(limited.headers().tokens.unwrap().remaining, 400);
}

#[tokio::test(start_paused = true)]
async fn without_max_tokens_the_body_length_is_the_estimate() {
    let (service, _) = setup();
    let limits = Arc::new(KeyLimits::new("alias").tpm(1000));
    let request = chat(&limits, None);
    let estimate = (request.body().bytes().map_or(0, |b| b.len()) as u64).div_ceil(4);
    let response = send(&service, request).await.unwrap();
    assert_eq!(
        response.headers()["x-ratelimit-remaining-tokens"],
        (1000 - estimate).to_string()
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_the_limit_waits_for_a_full_bucket() {
    let (service, _) = setup();
    let limits = Arc::new(KeyLimits::new("alias").tpm(1000));
    let response = send(&service, chat(&limits, Some(5000))).await.unwrap();
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], "0");
    let limited = rejection(send(&service, chat(&limits, Some(5000))).await);
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(60)));
}

#[tokio::test(start_paused = true)]
async fn a_report_the_caller_inserted_is_the_one_read() {
    let (service, upstream) = setup();
    let limits = Arc::new(KeyLimits::new("alias").tpm(1000));
    upstream.report(None, None);
    let report = Arc::new(UsageReport::new());
    let mut request = chat(&limits, Some(600));
    request.extensions_mut().insert(report.clone());
    let response = send(&service, request).await.unwrap();
    // The caller learns the usage before the body ends.
    report.add_tokens(50);
    response.into_body().collect().await.unwrap();
    let response = send(&service, chat(&limits, Some(600))).await.unwrap();
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], "350");
}
