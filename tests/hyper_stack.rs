//! Tollgate's layers stacked à la carte on a plain hyper client, against
//! testkit upstreams on loopback: each layer must act — a retry hides a
//! 503, a breaker opens (and the retry above it does not wait for it), a
//! cost is recorded, a fallback answers.

mod common;

use std::time::Duration;

use http::header;
use tollgate::breaker::{CircuitOpen, State};
use tollgate::core::Failure;
use tollgate::cost::{Charge, Outcome, Usd};
use tollgate::retry::{GaveUp, StopReason};
use tollgate_testkit::{Reply, Upstream, openai};

use common::{
    call, chat, overloaded, push_503_then_answer, push_stream_with_its_length, records, stack,
};

/// A guard against a hang, never a wait: each test finishes in
/// milliseconds when the layers behave.
const GUARD: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_retry_hides_a_503_and_each_attempt_is_recorded() {
    let upstream = Upstream::start().await;
    push_503_then_answer(&upstream, 3, 2);
    let (stack, handles) = stack(&[("a", upstream.url())], &[], 5, Duration::from_secs(30));

    let (parts, body) = tokio::time::timeout(GUARD, call(&stack, chat("a", false)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["x-tollgate-attempted-retries"], "1");
    // 3 × $1 + 2 × $2.
    assert_eq!(parts.headers["x-tollgate-response-cost"], "7");
    assert!(body.starts_with(b"{"), "{body:?}");
    assert_eq!(upstream.requests().len(), 2);

    let records = records(&handles, 2).await;
    assert_eq!(records[0].cost, Charge::NotBilled);
    assert_eq!(records[1].outcome, Outcome::Success);
    assert_eq!(
        records[1].cost,
        Charge::Priced(Usd::from_picos(7_000_000_000_000))
    );
}

#[tokio::test]
async fn the_breaker_opens_and_the_retry_above_it_fails_fast() {
    let upstream = Upstream::start().await;
    upstream.set_default(overloaded());
    // Two failures open the host's breaker for a minute: a retry that
    // waited for it would hit the guard.
    let (stack, handles) = stack(&[("a", upstream.url())], &[], 2, Duration::from_secs(60));

    // The first call: a 503, retried once, opens the breaker; the second
    // retry is rejected by it and goes up at once.
    let error = tokio::time::timeout(GUARD, call(&stack, chat("a", false)))
        .await
        .expect("the retry did not wait for the open breaker")
        .unwrap_err();
    let gave_up = std::iter::successors(Some(&*error as &dyn std::error::Error), |e| e.source())
        .find_map(|e| e.downcast_ref::<GaveUp>())
        .unwrap_or_else(|| panic!("the retry gave up: {error}"));
    assert_eq!(gave_up.reason(), StopReason::CircuitOpen);
    assert!(Failure::from_error(&*error).is_circuit_open());
    let key = upstream.addr().to_string();
    assert_eq!(handles.breakers.snapshot(&key).unwrap().state, State::Open);
    assert_eq!(upstream.requests().len(), 2);

    // While open, nothing reaches the upstream.
    let error = tokio::time::timeout(GUARD, call(&stack, chat("a", false)))
        .await
        .unwrap()
        .unwrap_err();
    let open = std::iter::successors(Some(&*error as &dyn std::error::Error), |e| e.source())
        .find_map(|e| e.downcast_ref::<CircuitOpen>())
        .expect("rejected by the breaker");
    assert_eq!(open.key(), key);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn a_fallback_answers_when_a_group_is_down() {
    let primary = Upstream::start().await;
    primary.set_default(overloaded());
    let backup = Upstream::start().await;
    backup.push(Reply::json(200, openai::chat_completion("From the backup")));
    let (stack, _handles) = stack(
        &[("primary", primary.url()), ("backup", backup.url())],
        &[("primary", "backup")],
        10,
        Duration::from_secs(30),
    );

    let (parts, body) = tokio::time::timeout(GUARD, call(&stack, chat("primary", false)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["x-tollgate-attempted-fallbacks"], "1");
    assert!(
        String::from_utf8_lossy(&body).contains("From the backup"),
        "{body:?}"
    );
    // Three attempts (one try, two retries) on the primary, then one on the backup.
    assert_eq!(primary.requests().len(), 3);
    assert_eq!(backup.requests().len(), 1);
}

#[tokio::test]
async fn a_stream_is_costed_and_its_stale_length_dropped() {
    let upstream = Upstream::start().await;
    push_stream_with_its_length(&upstream);
    let (stack, handles) = stack(&[("a", upstream.url())], &[], 5, Duration::from_secs(30));

    let (parts, body) = tokio::time::timeout(GUARD, call(&stack, chat("a", true)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parts.status, 200);
    // The layer took out the usage chunk it asked for: the length is gone.
    assert_eq!(parts.headers.get(header::CONTENT_LENGTH), None);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("Hel") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(!text.contains("\"usage\""), "{text}");
    // The upstream was asked for the usage.
    let sent = upstream.requests()[0].json();
    assert_eq!(sent["stream_options"]["include_usage"], true);

    let records = records(&handles, 1).await;
    // 4 × $1 + 2 × $2.
    assert_eq!(
        records[0].cost,
        Charge::Priced(Usd::from_picos(8_000_000_000_000))
    );
}
