//! `RedisStore` against a real `redis-server` (Debian's `redis-server`
//! package; CI installs it): each test starts its own on a free loopback
//! port and kills it when done.
//!
//! Real time here (Redis has its own clock); the waits are bounded and
//! only wait for the server process to (re)start.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{limited, rejection, request, send};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tollgate_core::DeploymentQuota;
use tollgate_limits::gcra::Quota;
use tollgate_limits::{
    Budget, BudgetWindow, Clock, DeploymentRateLimits, KeyLimits, Limit, ManualClock, RedisStore,
    Store, SystemClock,
};
use tollgate_testkit::RedisServer;
use tower::ServiceExt;

/// A replica's store, patient enough for a loaded CI machine.
fn replica(server: &RedisServer) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::open(&server.url())
            .unwrap()
            .op_timeout(Duration::from_secs(2)),
    )
}

/// A replica that waits 100 ms for Redis, for tests that freeze it.
fn impatient(server: &RedisServer) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::open(&server.url())
            .unwrap()
            .op_timeout(Duration::from_millis(100)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_rpm_limit_exactly_under_a_concurrent_burst() {
    let server = RedisServer::start().await;
    let (a, b) = (replica(&server), replica(&server));
    let clock = Arc::new(ManualClock::new(0));
    let (service_a, upstream_a) = limited(a.clone(), clock.clone());
    let (service_b, upstream_b) = limited(b.clone(), clock);
    // 10 per minute: a cell comes back every 6 s, far longer than the burst.
    let limits = Arc::new(KeyLimits::new("shared-key").rpm(10));

    let mut burst = JoinSet::new();
    for i in 0..50 {
        let service = if i % 2 == 0 { &service_a } else { &service_b }.clone();
        let limits = limits.clone();
        burst.spawn(async move { service.oneshot(request(&limits)).await.map(drop) });
    }
    let mut admitted = 0;
    let mut rejected = 0;
    while let Some(result) = burst.join_next().await {
        match result.unwrap() {
            Ok(()) => admitted += 1,
            Err(error) => {
                assert_eq!(rejection(Err::<(), _>(error)).limit(), Limit::Requests);
                rejected += 1;
            }
        }
    }
    assert_eq!((admitted, rejected), (10, 40));
    assert_eq!(upstream_a.calls() + upstream_b.calls(), 10);
    assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));

    // Only hashed names in Redis, under the prefix.
    let keys = server.keys().await;
    assert!(!keys.is_empty());
    for key in keys {
        assert!(key.starts_with("tollgate:gcra:"), "{key}");
        assert!(!key.contains("shared-key"), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_tokens_permits_and_spend() {
    let server = RedisServer::start().await;
    let (a, b) = (replica(&server), replica(&server));
    let now = Instant::now();

    // tpm: reserve on one replica, reconcile on it, the other sees it.
    let quota = Quota::per_minute(1000);
    assert!(a.gcra("tpm:k", quota, 600, now).await.allowed);
    let decision = b.gcra("tpm:k", quota, 600, now).await;
    assert!(!decision.allowed);
    assert_eq!(decision.remaining, 400);
    a.adjust("tpm:k", quota, -500, now).await;
    let decision = b.gcra("tpm:k", quota, 600, now).await;
    assert!(decision.allowed);
    assert_eq!(decision.remaining, 300);

    // parallel: one permit between two replicas.
    let lease = a.acquire("parallel:k", 1, now).await.unwrap();
    assert!(b.acquire("parallel:k", 1, now).await.is_none());
    a.release("parallel:k", lease).await;
    a.release("parallel:k", lease).await;
    let other = b.acquire("parallel:k", 1, now).await.unwrap();
    assert!(a.acquire("parallel:k", 1, now).await.is_none());
    b.release("parallel:k", other).await;

    // spend: per window, shared.
    let day = Some(Duration::from_secs(86_400));
    let now_ms = SystemClock.now_unix_ms();
    let today = BudgetWindow::at(now_ms, day);
    let tomorrow = BudgetWindow::at(now_ms + 86_400_000, day);
    a.add_spend("budget:k", today, 7).await;
    b.add_spend("budget:k", today, Budget::dollars(1)).await;
    assert_eq!(a.spend("budget:k", today).await, Budget::dollars(1) + 7);
    assert_eq!(b.spend("budget:k", tomorrow).await, 0);
    b.add_spend("budget:k", BudgetWindow::lifetime(), 3).await;
    assert_eq!(a.spend("budget:k", BudgetWindow::lifetime()).await, 3);

    assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_open_while_redis_is_down_and_shares_again_once_it_is_back() {
    let mut server = RedisServer::start().await;
    let reported = Arc::new(AtomicU64::new(0));
    let counter = reported.clone();
    let a = Arc::new(
        RedisStore::open(&server.url())
            .unwrap()
            .op_timeout(Duration::from_secs(2))
            .on_fallback(Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })),
    );
    let b = replica(&server);
    let clock = Arc::new(ManualClock::new(0));
    let (service_a, _) = limited(a.clone(), clock.clone());
    let (service_b, _) = limited(b.clone(), clock);

    // Shared while Redis is up.
    let before = Arc::new(KeyLimits::new("before").rpm(2));
    send(&service_a, request(&before)).await.unwrap();
    send(&service_b, request(&before)).await.unwrap();
    rejection(send(&service_a, request(&before)).await);
    assert_eq!(a.fallbacks(), 0);

    // Redis dies: calls keep answering, from each replica's local state.
    server.kill();
    let during = Arc::new(KeyLimits::new("during").rpm(3));
    let started = Instant::now();
    for _ in 0..3 {
        send(&service_a, request(&during)).await.unwrap();
    }
    assert_eq!(
        rejection(send(&service_a, request(&during)).await).limit(),
        Limit::Requests
    );
    // B has its own local state: the outage splits the limit.
    send(&service_b, request(&during)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(a.fallbacks() >= 4, "{}", a.fallbacks());
    assert_eq!(reported.load(Ordering::SeqCst), a.fallbacks());

    // Redis is back on the same port: both replicas return to it on their
    // next call (a call that finds the connection dropped is made again,
    // on a new connection).
    server.restart().await;
    for store in [&a, &b] {
        let fallbacks = store.fallbacks();
        store
            .gcra("probe", Quota::per_minute(1000), 0, Instant::now())
            .await;
        assert_eq!(store.fallbacks(), fallbacks, "the store is back on Redis");
    }
    let fallbacks = (a.fallbacks(), b.fallbacks());
    let after = Arc::new(KeyLimits::new("after").rpm(2));
    send(&service_a, request(&after)).await.unwrap();
    send(&service_b, request(&after)).await.unwrap();
    rejection(send(&service_a, request(&after)).await);
    rejection(send(&service_b, request(&after)).await);
    assert_eq!((a.fallbacks(), b.fallbacks()), fallbacks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_at_most_the_operation_timeout() {
    let server = RedisServer::start().await;
    let store = impatient(&server);
    let quota = Quota::per_minute(1);
    // Connect first, then freeze the server.
    assert!(store.gcra("k", quota, 1, Instant::now()).await.allowed);
    server.signal("-STOP");
    let started = Instant::now();
    // The local state knows nothing of the Redis one: admitted locally.
    let decision = store.gcra("k", quota, 1, Instant::now()).await;
    let waited = started.elapsed();
    server.signal("-CONT");
    assert!(decision.allowed);
    assert_eq!(store.fallbacks(), 1);
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(1), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_counted_during_an_outage_reaches_redis_afterwards() {
    let mut server = RedisServer::start().await;
    let (a, b) = (replica(&server), replica(&server));
    let window = BudgetWindow::lifetime();
    a.add_spend("budget:k", window, 10).await;
    assert_eq!(a.spend("budget:k", window).await, 10);

    server.kill();
    // The last shared value, plus what this replica spends meanwhile.
    a.add_spend("budget:k", window, 5).await;
    assert_eq!(a.spend("budget:k", window).await, 15);

    server.restart().await;
    // A fresh Redis (no persistence) knows nothing; A's local 5 goes
    // there with its next spend.
    let fallbacks = a.fallbacks();
    a.add_spend("budget:k", window, 1).await;
    assert_eq!(a.fallbacks(), fallbacks, "A is back on Redis");
    // 5 from the outage, plus this 1.
    assert_eq!(b.spend("budget:k", window).await, 6);
    assert_eq!(a.spend("budget:k", window).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_redis_granted_after_a_timeout_is_released_there_too() {
    let server = RedisServer::start().await;
    let a = impatient(&server);
    let b = replica(&server);
    // Connect first, then freeze the server: the acquire times out and is
    // granted locally — and Redis grants it too once it thaws, as the
    // command was already sent.
    // (The acquire script is loaded first: a frozen EVALSHA of an unknown
    // script would only fail once Redis thaws.)
    let warm = a.acquire("warm", 1, Instant::now()).await.unwrap();
    a.release("warm", warm).await;
    server.signal("-STOP");
    let lease = a
        .acquire("k", 1, Instant::now())
        .await
        .expect("granted from local state while Redis is frozen");
    server.signal("-CONT");
    a.release("k", lease).await;
    // Released on every replica, not held in Redis until its TTL.
    assert!(
        b.acquire("k", 1, Instant::now()).await.is_some(),
        "the permit is free again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_sent_before_a_timeout_counts_once() {
    let server = RedisServer::start().await;
    let a = impatient(&server);
    let b = replica(&server);
    let window = BudgetWindow::lifetime();
    // Connected, and the script loaded, before Redis freezes.
    a.add_spend("budget:k", window, 10).await;
    server.signal("-STOP");
    // Times out; Redis applies it once it thaws.
    a.add_spend("budget:k", window, 5).await;
    server.signal("-CONT");
    assert_eq!(b.spend("budget:k", window).await, 15);
    assert_eq!(
        a.spend("budget:k", window).await,
        15,
        "not 20: counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_rpm_holds_exactly_across_replicas_in_one_round_trip_each() {
    let server = RedisServer::start().await;
    let (a, b) = (replica(&server), replica(&server));
    let (limits_a, limits_b) = (
        DeploymentRateLimits::new(a.clone()),
        DeploymentRateLimits::new(b.clone()),
    );
    let quota = DeploymentQuota {
        rpm: Some(10),
        tpm: Some(100_000),
    };
    let mut burst = JoinSet::new();
    for i in 0..30 {
        let limits = if i % 2 == 0 { &limits_a } else { &limits_b }.clone();
        burst.spawn(async move { limits.admit("gpt-1", quota, 50).await });
    }
    let answers = burst.join_all().await;
    let admitted = answers.iter().filter(|a| a.admitted).count();
    assert_eq!(admitted, 10, "one limit of 10 for both replicas");
    for refused in answers.iter().filter(|a| !a.admitted) {
        assert_eq!(refused.refused_by, Some(Limit::Requests));
        // 10 a minute: the next request in about 6 s.
        assert!(refused.retry_after > Duration::from_secs(4), "{refused:?}");
        assert!(refused.retry_after <= Duration::from_secs(6), "{refused:?}");
    }
    assert_eq!((a.fallbacks(), b.fallbacks()), (0, 0));

    // Tokens counted on one replica are seen by the other.
    limits_a.record_tokens("gpt-1", quota, 99_000);
    let mut seen = None;
    for _ in 0..100 {
        // The count goes to Redis on a task: waiting for that task.
        seen = limits_b.headroom("gpt-1", quota).await.tokens;
        // 1000 left, and 1667 more each second.
        if seen.is_some_and(|left| left < 3_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen.is_some_and(|left| left < 3_000), "{seen:?}");
    let refused = limits_b
        .admit("gpt-1", DeploymentQuota { rpm: None, ..quota }, 5_000)
        .await;
    assert_eq!(refused.refused_by, Some(Limit::Tokens));

    // Only hashed names in Redis, under the prefix.
    for key in server.keys().await {
        assert!(key.starts_with("tollgate:gcra:"), "{key}");
        assert!(!key.contains("gpt-1"), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_limits_fail_open_to_local_state_and_share_again() {
    let mut server = RedisServer::start().await;
    let (a, b) = (replica(&server), replica(&server));
    let (limits_a, limits_b) = (
        DeploymentRateLimits::new(a.clone()),
        DeploymentRateLimits::new(b.clone()),
    );
    let quota = DeploymentQuota {
        rpm: Some(2),
        tpm: None,
    };
    server.kill();
    // Each replica counts on its own: 2 each.
    for limits in [&limits_a, &limits_b] {
        assert!(limits.admit("d", quota, 0).await.admitted);
        assert!(limits.admit("d", quota, 0).await.admitted);
        assert!(!limits.admit("d", quota, 0).await.admitted);
    }
    assert!(a.fallbacks() >= 3 && b.fallbacks() >= 3);

    server.restart().await;
    let fallbacks = (a.fallbacks(), b.fallbacks());
    // A fresh Redis: one shared limit of 2 again.
    assert!(limits_a.admit("d", quota, 0).await.admitted);
    assert!(limits_b.admit("d", quota, 0).await.admitted);
    assert!(!limits_a.admit("d", quota, 0).await.admitted);
    assert!(!limits_b.admit("d", quota, 0).await.admitted);
    assert_eq!((a.fallbacks(), b.fallbacks()), fallbacks);
}
