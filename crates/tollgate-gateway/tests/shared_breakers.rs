//! Circuit breakers shared by two replicas through one real Redis (issue
//! 21, item 2): a breaker opened on one replica is open on the other
//! within the sync interval, both close once the deployment recovers, and
//! a Redis outage leaves each replica with its own breakers (logged and
//! counted) until Redis is back, when what opened meanwhile is shared.
//!
//! Two gateways in this process that share nothing but Redis, a real
//! `redis-server`, a testkit upstream; all on loopback. Real time: the
//! breakers' open times and Redis's key expiry are the wall clock's, so
//! the waits below are bounded polls of the other replica.

mod common;

use std::time::Duration;

use common::{Captured, TestClient, TestGateway, call, chat_body, client};
use tokio::time::Instant;
use tollgate_testkit::{RedisServer, Reply, Upstream, openai};

const ENV: [(&str, &str); 1] = [("UPSTREAM_KEY", "sk-upstream-secret")];

/// How often a replica reads the shared breakers.
const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// Two replicas of one deployment, `gpt-1`, on `upstream`, whose breaker
/// opens at the first failure and stays open `cooldown_secs`.
async fn replicas(
    redis: &RedisServer,
    upstream: &Upstream,
    cooldown_secs: u32,
) -> (TestGateway, TestGateway) {
    let yaml = format!(
        "model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-upstream
      api_base: {}/v1
      api_key: os.environ/UPSTREAM_KEY
    model_info:
      id: gpt-1
router_settings:
  num_retries: 0
  allowed_fails: 0
  cooldown_time: {cooldown_secs}
  redis_host: 127.0.0.1
  redis_port: {}
",
        upstream.url(),
        redis.port()
    );
    (
        TestGateway::start(&yaml, &ENV).await,
        TestGateway::start(&yaml, &ENV).await,
    )
}

async fn chat(client: &TestClient, replica: &TestGateway) -> http::StatusCode {
    call(
        client,
        "POST",
        &replica.url("/v1/chat/completions"),
        chat_body("gpt", false),
        &[("content-type", "application/json")],
    )
    .await
    .status
}

/// The state of `gpt-1`'s breaker on `replica`.
async fn state(client: &TestClient, replica: &TestGateway) -> String {
    let body = call(
        client,
        "GET",
        &replica.url("/health/circuit-breakers"),
        "",
        &[],
    )
    .await
    .json();
    body["circuit_breakers"]
        .as_array()
        .and_then(|all| all.iter().find(|b| b["key"] == "gpt-1"))
        .map_or_else(
            || "closed".to_owned(),
            |b| b["state"].as_str().unwrap().to_owned(),
        )
}

/// Polls `replica` until its breaker is in `wanted`, for at most `within`;
/// how long that took.
async fn until_state(
    client: &TestClient,
    replica: &TestGateway,
    wanted: &str,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let seen = state(client, replica).await;
        if seen == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {seen} after {within:?}, not {wanted}"
        );
        // Waiting on the other replica's poll of Redis.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn fallbacks(client: &TestClient, replica: &TestGateway) -> f64 {
    let text = call(client, "GET", &replica.url("/metrics"), "", &[])
        .await
        .text();
    text.lines()
        .find_map(|line| {
            line.strip_prefix("tollgate_shared_state_fallbacks_total")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn failing(upstream: &Upstream) {
    upstream.set_default(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
}

fn answering(upstream: &Upstream) {
    upstream.set_default(Reply::json(200, openai::chat_completion("hello")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_replica_opens_on_the_other_and_both_close_after_recovery() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    failing(&upstream);
    let (a, b) = replicas(&redis, &upstream, 2).await;
    let client = client();
    assert_eq!(state(&client, &b).await, "closed");

    assert!(chat(&client, &a).await.is_server_error());
    assert_eq!(state(&client, &a).await, "open");
    // One sync interval, and some slack for a loaded machine.
    let took = until_state(&client, &b, "open", SYNC_INTERVAL * 4).await;
    eprintln!("B saw the breaker open after {took:?}");
    // B refuses at once, without asking the upstream.
    let before = upstream.requests().len();
    assert_eq!(chat(&client, &b).await, 503);
    assert_eq!(upstream.requests().len(), before);

    // The upstream recovers; once the open time is over each replica
    // probes on its own, and both close.
    answering(&upstream);
    for replica in [&a, &b] {
        until_state(&client, replica, "half_open", Duration::from_secs(5)).await;
        assert_eq!(chat(&client, replica).await, 200);
        assert_eq!(state(&client, replica).await, "closed");
    }
    // And stay closed: nothing in Redis opens them again.
    tokio::time::sleep(SYNC_INTERVAL * 3).await;
    for replica in [&a, &b] {
        assert_eq!(state(&client, replica).await, "closed");
        assert_eq!(chat(&client, replica).await, 200);
    }
    for replica in [&a, &b] {
        assert_eq!(fallbacks(&client, replica).await, 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_leaves_breakers_local_and_what_opened_meanwhile_is_shared_after() {
    let logs = Captured::default();
    tracing::subscriber::set_global_default(logs.subscriber()).expect("the only subscriber");
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::start().await;
    failing(&upstream);
    let (a, b) = replicas(&redis, &upstream, 30).await;
    let client = client();

    redis.kill();
    // A's breaker opens while Redis is away: B does not hear of it, and
    // goes on with its own breaker.
    assert!(chat(&client, &a).await.is_server_error());
    assert_eq!(state(&client, &a).await, "open");
    tokio::time::sleep(SYNC_INTERVAL * 3).await;
    assert_eq!(state(&client, &b).await, "closed");
    for replica in [&a, &b] {
        assert!(fallbacks(&client, replica).await > 0.0, "counted");
    }
    assert!(
        logs.text()
            .contains("Redis is unavailable to the circuit breakers"),
        "logged: {}",
        logs.text()
    );

    // Redis is back (empty): A shares the breaker that opened meanwhile,
    // and B opens it within a sync interval or so.
    redis.restart().await;
    let took = until_state(&client, &b, "open", Duration::from_secs(2)).await;
    eprintln!("B saw the breaker open {took:?} after Redis came back");
    let before = upstream.requests().len();
    assert_eq!(chat(&client, &b).await, 503);
    assert_eq!(upstream.requests().len(), before, "B refused at once");
    assert!(
        logs.text().contains("circuit breakers are shared again"),
        "{}",
        logs.text()
    );
}
