//! Budgets: spend per window (aligned to the Unix epoch, on an injected
//! clock) or per lifetime, charged from the usage report when the response
//! ends. Paused time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{limited, rejection, request, send, send_and_finish};
use http::{Response, StatusCode};
use tollgate_core::{ErrorClass, Failure};
use tollgate_limits::{Budget, KeyLimits, Limit, ManualClock, MemoryStore};

const DAY_MS: i64 = 86_400_000;
const DOLLAR: u64 = Budget::dollars(1);

#[tokio::test(start_paused = true)]
async fn a_daily_budget_resets_at_the_window_boundary() {
    // Ten seconds before midnight UTC of day 20 000.
    let clock = Arc::new(ManualClock::new(20_000 * DAY_MS - 10_000));
    let (service, upstream) = limited(Arc::new(MemoryStore::new()), clock.clone());
    let limits = Arc::new(
        KeyLimits::new("alias").max_budget(Budget::per(2 * DOLLAR, Duration::from_secs(86_400))),
    );
    upstream.report(Some(10), Some(DOLLAR + DOLLAR / 2));

    send_and_finish(&service, request(&limits)).await.unwrap();
    // $1.50 of $2: still under, so the next goes (and overshoots).
    send_and_finish(&service, request(&limits)).await.unwrap();
    let limited = rejection(send(&service, request(&limits)).await);
    assert_eq!(limited.limit(), Limit::Budget);
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(
        limited.to_string(),
        "Budget exceeded for key 'alias': spent $3.00 of $2.00 this 1d window. Retry after 10 s."
    );
    assert_eq!(upstream.calls(), 2);

    let response: Response<Bytes> = limited.to_response();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "10");
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error"]["type"], "budget_exceeded");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert_eq!(
        Failure::find(&limited).unwrap().class(),
        ErrorClass::BudgetExceeded
    );

    // A millisecond before midnight: still the old window.
    clock.advance(Duration::from_millis(9_999));
    rejection(send(&service, request(&limits)).await);
    // Midnight: a new window, a new budget.
    clock.advance(Duration::from_millis(1));
    send_and_finish(&service, request(&limits)).await.unwrap();
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_lifetime_budget_never_resets() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (service, upstream) = limited(Arc::new(MemoryStore::new()), clock.clone());
    let limits = Arc::new(KeyLimits::new("alias").max_budget(Budget::lifetime(DOLLAR)));
    upstream.report(None, Some(DOLLAR));

    send_and_finish(&service, request(&limits)).await.unwrap();
    let limited = rejection(send(&service, request(&limits)).await);
    assert_eq!(limited.retry_after(), None);
    assert_eq!(
        limited.to_string(),
        "Budget exceeded for key 'alias': spent $1.00 of $1.00 (lifetime budget)."
    );
    let response: Response<Bytes> = limited.to_response();
    assert!(response.headers().get("retry-after").is_none());

    clock.advance(Duration::from_secs(400 * 86_400));
    tokio::time::advance(Duration::from_secs(3600)).await;
    rejection(send(&service, request(&limits)).await);
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn spend_is_charged_when_the_body_ends_not_before() {
    let clock = Arc::new(ManualClock::new(0));
    let (service, upstream) = limited(Arc::new(MemoryStore::new()), clock);
    let limits = Arc::new(KeyLimits::new("alias").max_budget(Budget::lifetime(DOLLAR)));
    upstream.report(None, Some(DOLLAR));

    let open = send(&service, request(&limits)).await.unwrap();
    // Not charged yet: the stream is still going.
    let also = send(&service, request(&limits)).await.unwrap();
    drop(open);
    drop(also);
    rejection(send(&service, request(&limits)).await);
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_cost_never_arrives_is_not_charged() {
    let clock = Arc::new(ManualClock::new(0));
    let (service, upstream) = limited(Arc::new(MemoryStore::new()), clock);
    let limits = Arc::new(KeyLimits::new("alias").max_budget(Budget::lifetime(DOLLAR)));
    upstream.report(Some(1000), None);
    for _ in 0..5 {
        send_and_finish(&service, request(&limits)).await.unwrap();
    }
    assert_eq!(upstream.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn limits_are_checked_in_order_rpm_first() {
    let clock = Arc::new(ManualClock::new(0));
    let (service, upstream) = limited(Arc::new(MemoryStore::new()), clock);
    let limits = Arc::new(
        KeyLimits::new("alias")
            .rpm(1)
            .max_budget(Budget::lifetime(DOLLAR)),
    );
    upstream.report(None, Some(DOLLAR));
    send_and_finish(&service, request(&limits)).await.unwrap();
    // Both are exhausted: the request limit answers.
    let limited = rejection(send(&service, request(&limits)).await);
    assert_eq!(limited.limit(), Limit::Requests);
    tokio::time::advance(Duration::from_secs(60)).await;
    let limited = rejection(send(&service, request(&limits)).await);
    assert_eq!(limited.limit(), Limit::Budget);
    assert_eq!(limited.headers().requests.unwrap().limit, 1);
}
