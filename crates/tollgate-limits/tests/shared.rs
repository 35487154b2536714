//! Shared limits: a request counts against its key's limits and against
//! each of its `SharedLimits` (a team's, an end user's), under their own
//! names; the stricter wins, and a refusal by one gives back what the
//! others took. Paused time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{chat, limited, rejection, request, send, send_and_finish};
use http::Request;
use tollgate_limits::{Budget, KeyLimits, Limit, ManualClock, MemoryStore, SharedLimits};

fn with_shared(
    mut request: Request<tollgate_core::RequestBody>,
    shared: &[&Arc<KeyLimits>],
) -> Request<tollgate_core::RequestBody> {
    let shared = shared.iter().map(|limits| Arc::clone(limits)).collect();
    request
        .extensions_mut()
        .insert(Arc::new(SharedLimits(shared)));
    request
}

#[tokio::test(start_paused = true)]
async fn a_team_limit_holds_across_its_keys_and_the_stricter_wins() {
    let (service, upstream) = limited(Arc::new(MemoryStore::new()), Arc::new(ManualClock::new(0)));
    let (key_a, key_b) = (
        Arc::new(KeyLimits::new("key-a").rpm(10)),
        Arc::new(KeyLimits::new("key-b").rpm(10)),
    );
    let team = Arc::new(KeyLimits::new("team:search").rpm(2));
    let response = send(&service, with_shared(request(&key_a), &[&team]))
        .await
        .unwrap();
    // The headers show the stricter limit: the team's.
    assert_eq!(response.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "1");
    send_and_finish(&service, with_shared(request(&key_b), &[&team]))
        .await
        .unwrap();
    // The team's two are spent, by two keys: both are refused now.
    for key in [&key_a, &key_b] {
        let refused = rejection(send(&service, with_shared(request(key), &[&team])).await);
        assert_eq!(refused.limit(), Limit::Requests);
        assert!(refused.to_string().contains("team:search"), "{refused}");
        assert!(refused.retry_after().unwrap() > Duration::ZERO);
    }
    // Each key by itself is far from its own limit.
    send_and_finish(&service, request(&key_a)).await.unwrap();
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_by_a_shared_limit_gives_back_the_keys_tokens() {
    let (service, _upstream) = limited(Arc::new(MemoryStore::new()), Arc::new(ManualClock::new(0)));
    let key = Arc::new(KeyLimits::new("key").tpm(1000));
    let closed = Arc::new(KeyLimits::new("user:noisy").rpm(0));
    rejection(send(&service, with_shared(chat(&key, Some(600)), &[&closed])).await);
    // The 600 reserved for the refused request came back: 600 fit again.
    let response = send(&service, chat(&key, Some(600))).await.unwrap();
    assert_eq!(response.headers()["x-ratelimit-remaining-tokens"], "400");
}

#[tokio::test(start_paused = true)]
async fn spend_is_charged_to_the_key_and_to_every_shared_budget() {
    let clock = Arc::new(ManualClock::new(0));
    let (service, upstream) = limited(Arc::new(MemoryStore::new()), clock);
    let dollar = Budget::dollars(1);
    let (key_a, key_b) = (
        Arc::new(KeyLimits::new("key-a").max_budget(Budget::lifetime(10 * dollar))),
        Arc::new(KeyLimits::new("key-b")),
    );
    let team = Arc::new(KeyLimits::new("team:t").max_budget(Budget::lifetime(2 * dollar)));
    upstream.report(Some(10), Some(dollar));
    send_and_finish(&service, with_shared(request(&key_a), &[&team]))
        .await
        .unwrap();
    send_and_finish(&service, with_shared(request(&key_b), &[&team]))
        .await
        .unwrap();
    // $2 of the team's $2 spent through two keys: both stop.
    for key in [&key_a, &key_b] {
        let refused = rejection(send(&service, with_shared(request(key), &[&team])).await);
        assert_eq!(refused.limit(), Limit::Budget);
        assert!(refused.to_string().contains("team:t"), "{refused}");
    }
    // Key A's own budget was charged too: $1 of $10, so it goes alone.
    send_and_finish(&service, request(&key_a)).await.unwrap();
    assert_eq!(upstream.calls(), 3);
}
