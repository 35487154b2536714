//! Balancing inside a model group, through the whole gateway: mock
//! deployments, or testkit upstreams reached in memory, under paused time
//! (latencies and rate limits are exact, and nothing here is random: the
//! balancer's shuffle is a fixed sequence).

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use common::chat_body;
use http_body_util::{BodyExt, Full};
use tollgate_gateway::upstream::UpstreamClient;
use tollgate_gateway::{Gateway, GatewayBody, config};
use tollgate_testkit::{Reply, Upstream, openai};

fn mock_gateway(yaml: &str) -> Gateway {
    let loaded = config::load_str(yaml, &|_| Some("sk-test".to_owned()))
        .unwrap_or_else(|error| panic!("test config does not load: {error}"));
    Gateway::new(&loaded.config).expect("test config builds")
}

/// A gateway whose `openai/` deployments reach `upstreams` in memory, by
/// the host of their `api_base` (`http://<name>.invalid/v1`).
fn gateway_over(yaml: &str, upstreams: &[(&str, &Arc<Upstream>)]) -> Gateway {
    let loaded = config::load_str(yaml, &|_| Some("sk-test".to_owned())).unwrap();
    let by_host: HashMap<String, Arc<Upstream>> = upstreams
        .iter()
        .map(|(name, upstream)| (format!("{name}.invalid"), Arc::clone(upstream)))
        .collect();
    let client = UpstreamClient::in_memory(Gateway::client_config(&loaded.config), move |uri| {
        let upstream = uri.host().and_then(|host| by_host.get(host));
        Ok(upstream.expect("a known upstream").connect_in_memory())
    });
    Gateway::with_client(&loaded.config, client).unwrap()
}

/// Mock deployments of group `g`: `(id, extra litellm_params lines)`, each
/// `mock/<id>` with `model_info.id: <id>`.
fn mock_group(deployments: &[(&str, &str)]) -> String {
    let mut yaml = String::from("model_list:\n");
    for (id, params) in deployments {
        yaml.push_str(&format!(
            "  - model_name: g\n    litellm_params:\n      model: mock/{id}\n{params}    model_info:\n      id: {id}\n"
        ));
    }
    yaml
}

/// An `openai/` deployment of group `g` on upstream `name`.
fn upstream_deployment(name: &str, params: &str) -> String {
    format!(
        "  - model_name: g\n    litellm_params:\n      model: openai/gpt-test\n      api_base: http://{name}.invalid/v1\n      api_key: os.environ/KEY\n{params}    model_info:\n      id: {name}\n"
    )
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(chat_body("g", false))))
        .unwrap()
}

/// The deployment that answered a response, after reading its body.
async fn answered_by(response: http::Response<GatewayBody>) -> String {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    assert_eq!(parts.status, 200, "{}", String::from_utf8_lossy(&body));
    parts.headers["x-tollgate-deployment"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Sends one request and names the deployment that answered it.
async fn chat(gateway: &Gateway) -> String {
    answered_by(gateway.handle(request()).await).await
}

/// Polls `future` once: far enough for a request to reach its deployment
/// and wait there (nothing on the way waits for anything else).
async fn poll_once<F: Future>(future: &mut Pin<Box<F>>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

fn tally(answers: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for answer in answers {
        *counts.entry(answer.as_str()).or_default() += 1;
    }
    counts
}

/// Acceptance 12: three deployments weighted 1:1:2 share 4,000 requests
/// within ±5 % of their weights.
#[tokio::test(start_paused = true)]
async fn weights_split_4000_requests_within_five_percent() {
    let gateway = mock_gateway(&mock_group(&[
        ("a", "      weight: 1\n"),
        ("b", "      weight: 1\n"),
        ("c", "      weight: 2\n"),
    ]));
    let mut answers = Vec::with_capacity(4000);
    for _ in 0..4000 {
        answers.push(chat(&gateway).await);
    }
    let counts = tally(&answers);
    for (id, expected) in [("a", 1000.0), ("b", 1000.0), ("c", 2000.0)] {
        let got = counts.get(id).copied().unwrap_or(0) as f64;
        assert!(
            (got - expected).abs() <= expected * 0.05,
            "{id}: {got} of 4000, expected {expected} ± 5 % ({counts:?})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn rpm_stands_in_for_weight_and_an_unweighted_group_is_even() {
    let weighted = mock_gateway(&mock_group(&[
        ("a", "      rpm: 100\n"),
        ("b", "      rpm: 300\n"),
    ]));
    let mut answers = Vec::new();
    for _ in 0..400 {
        answers.push(chat(&weighted).await);
    }
    let counts = tally(&answers);
    assert!(counts["a"].abs_diff(100) <= 5, "{counts:?}");

    let even = mock_gateway(&mock_group(&[("a", ""), ("b", ""), ("c", "")]));
    let mut answers = Vec::new();
    for _ in 0..300 {
        answers.push(chat(&even).await);
    }
    let counts = tally(&answers);
    for id in ["a", "b", "c"] {
        assert!(counts[id].abs_diff(100) <= 5, "{counts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn least_busy_sends_the_next_request_to_the_idle_deployment() {
    let mut yaml = mock_group(&[("a", ""), ("b", ""), ("c", "")]);
    yaml.push_str(
        "router_settings:\n  routing_strategy: least-busy\ntollgate:\n  mock:\n    a: { latency_ms: 100 }\n    b: { latency_ms: 100 }\n    c: { latency_ms: 100 }\n",
    );
    let gateway = mock_gateway(&yaml);

    // Two requests reach their deployments and wait there for an answer.
    let mut first = Box::pin(gateway.handle(request()));
    let mut second = Box::pin(gateway.handle(request()));
    assert!(poll_once(&mut first).await.is_pending());
    assert!(poll_once(&mut second).await.is_pending());
    // The third goes to the one left idle.
    let third = chat(&gateway).await;
    let first = answered_by(first.await).await;
    let second = answered_by(second.await).await;
    let mut all = [first, second, third.clone()];
    all.sort();
    assert_eq!(all, ["a", "b", "c"], "third went to {third}");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_leaves_its_deployment_idle_again() {
    let mut yaml = mock_group(&[("a", ""), ("b", "")]);
    yaml.push_str(
        "router_settings:\n  routing_strategy: least-busy\ntollgate:\n  mock:\n    a: { latency_ms: 100 }\n    b: { latency_ms: 100 }\n",
    );
    let gateway = mock_gateway(&yaml);
    let mut held = Box::pin(gateway.handle(request()));
    assert!(poll_once(&mut held).await.is_pending());
    // While it waits, every other request goes to the other deployment.
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(chat(&gateway).await);
    }
    let other = answers[0].clone();
    assert!(answers.iter().all(|a| *a == other), "{answers:?}");
    // The client goes away: its deployment is idle again and shares the
    // traffic.
    drop(held);
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(chat(&gateway).await);
    }
    assert!(answers.iter().any(|a| *a != other), "{answers:?}");
}

#[tokio::test(start_paused = true)]
async fn latency_based_routing_sends_traffic_to_the_fastest() {
    let mut yaml = mock_group(&[("slow", ""), ("fast", "")]);
    yaml.push_str(
        "router_settings:\n  routing_strategy: latency-based-routing\ntollgate:\n  mock:\n    slow: { latency_ms: 50 }\n    fast: { latency_ms: 10 }\n",
    );
    let gateway = mock_gateway(&yaml);
    // Each is measured once, the ones never measured first...
    let mut warm_up = vec![chat(&gateway).await, chat(&gateway).await];
    warm_up.sort();
    assert_eq!(warm_up, ["fast", "slow"]);
    // ...then the fast one takes the traffic.
    for _ in 0..50 {
        assert_eq!(chat(&gateway).await, "fast");
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_down_moves_traffic_and_recovery_brings_it_back() {
    let a = Arc::new(Upstream::start().await);
    let b = Arc::new(Upstream::start().await);
    let answer = |delay_ms: u64| {
        Reply::json(200, openai::chat_completion("hi"))
            .delay_headers(Duration::from_millis(delay_ms))
    };
    a.set_default(answer(10));
    b.set_default(answer(30));
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  routing_strategy: latency-based-routing\n",
        upstream_deployment("a", ""),
        upstream_deployment("b", "")
    );
    let gateway = gateway_over(&yaml, &[("a", &a), ("b", &b)]);
    assert_eq!(chat(&gateway).await, "a");
    assert_eq!(chat(&gateway).await, "b", "not measured yet");
    for _ in 0..10 {
        assert_eq!(chat(&gateway).await, "a");
    }

    // `a` slows down: its first slow answer moves the traffic to `b`.
    a.set_default(answer(200));
    assert_eq!(chat(&gateway).await, "a");
    for _ in 0..10 {
        assert_eq!(chat(&gateway).await, "b");
    }

    // `a` recovers; its estimate fades while `b` serves, it is measured
    // again, and takes the traffic back.
    a.set_default(answer(10));
    let mut requests = 0;
    while chat(&gateway).await == "b" {
        requests += 1;
        assert!(requests < 2_000, "a is never measured again");
    }
    for _ in 0..10 {
        assert_eq!(chat(&gateway).await, "a");
    }
}

#[tokio::test(start_paused = true)]
async fn usage_based_routing_follows_rpm_headroom_and_the_limits_hold() {
    let mut yaml = mock_group(&[("small", "      rpm: 2\n"), ("large", "      rpm: 10\n")]);
    yaml.push_str("router_settings:\n  routing_strategy: usage-based-routing\n");
    let gateway = mock_gateway(&yaml);
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(chat(&gateway).await);
    }
    assert_eq!(answers[0], "large", "the most headroom first");
    // Each fills its own limit: 2 + 10...
    let counts = tally(&answers);
    assert_eq!((counts["small"], counts["large"]), (2, 10), "{answers:?}");
    // ...and then neither takes more: 429 until the first has room again,
    // the large one's next request, in 6 s.
    let (parts, body) = gateway.handle(request()).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    assert_eq!(parts.status, 429, "{}", String::from_utf8_lossy(&body));
    assert_eq!(parts.headers["retry-after"], "6");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(chat(&gateway).await, "large");

    // A minute on, the buckets are full again: the most headroom first.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(chat(&gateway).await, "large");
}

#[tokio::test(start_paused = true)]
async fn the_first_order_takes_all_traffic_while_it_is_available() {
    let gateway = mock_gateway(&mock_group(&[
        ("backup", "      order: 2\n"),
        ("one", "      order: 1\n"),
        ("two", "      order: 1\n"),
        ("unordered", ""),
    ]));
    let mut answers = Vec::new();
    for _ in 0..100 {
        answers.push(chat(&gateway).await);
    }
    let counts = tally(&answers);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts["one"].abs_diff(50) <= 2, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn the_next_order_serves_while_the_first_is_open_and_not_after() {
    let primary = Arc::new(Upstream::start().await);
    let backup = Arc::new(Upstream::start().await);
    primary.set_default(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
    backup.set_default(Reply::json(200, openai::chat_completion("from backup")));
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 1\n  allowed_fails: 0\n  cooldown_time: 10\n",
        upstream_deployment("primary", "      order: 1\n"),
        upstream_deployment("backup", "      order: 2\n"),
    );
    let gateway = gateway_over(&yaml, &[("primary", &primary), ("backup", &backup)]);

    // The primary fails once (the retry goes to the backup) and its breaker
    // opens.
    assert_eq!(chat(&gateway).await, "backup");
    assert_eq!(primary.requests().len(), 1);
    // While it is open, the backup serves and the primary sees nothing.
    for _ in 0..5 {
        assert_eq!(chat(&gateway).await, "backup");
    }
    assert_eq!(primary.requests().len(), 1);

    // The primary recovers; after the cooldown its probe succeeds and it
    // takes all the traffic back.
    primary.set_default(Reply::json(200, openai::chat_completion("from primary")));
    tokio::time::advance(Duration::from_secs(10)).await;
    for _ in 0..5 {
        assert_eq!(chat(&gateway).await, "primary");
    }
    assert_eq!(backup.requests().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_half_open_deployment_busy_with_its_probe_sends_others_elsewhere() {
    let primary = Arc::new(Upstream::start().await);
    let backup = Arc::new(Upstream::start().await);
    primary.push(Reply::json(
        503,
        openai::error_body("overloaded", "server_error", None),
    ));
    primary.push(
        Reply::json(200, openai::chat_completion("probe")).delay_headers(Duration::from_secs(1)),
    );
    primary.set_default(Reply::json(200, openai::chat_completion("from primary")));
    backup.set_default(Reply::json(200, openai::chat_completion("from backup")));
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 1\n  allowed_fails: 0\n  cooldown_time: 10\n",
        upstream_deployment("primary", "      order: 1\n"),
        upstream_deployment("backup", "      order: 2\n"),
    );
    let gateway = gateway_over(&yaml, &[("primary", &primary), ("backup", &backup)]);
    assert_eq!(
        chat(&gateway).await,
        "backup",
        "the primary failed, its breaker opened"
    );
    tokio::time::advance(Duration::from_secs(10)).await;

    // Half-open: the next request is its probe, and takes a while.
    let mut probe = Box::pin(gateway.handle(request()));
    assert!(poll_once(&mut probe).await.is_pending());
    // Meanwhile the primary is still first in order, but its breaker admits
    // no second probe: that request is served by the backup, not refused.
    assert_eq!(chat(&gateway).await, "backup");
    assert_eq!(answered_by(probe.await).await, "primary");
    assert_eq!(chat(&gateway).await, "primary", "closed again");
}

#[tokio::test(start_paused = true)]
async fn every_deployment_open_fails_fast_with_retry_after() {
    let a = Arc::new(Upstream::start().await);
    let b = Arc::new(Upstream::start().await);
    for upstream in [&a, &b] {
        upstream.set_default(Reply::json(
            503,
            openai::error_body("overloaded", "server_error", None),
        ));
    }
    let yaml = format!(
        "model_list:\n{}{}router_settings:\n  num_retries: 1\n  allowed_fails: 0\n  cooldown_time: 10\n",
        upstream_deployment("a", ""),
        upstream_deployment("b", ""),
    );
    let gateway = gateway_over(&yaml, &[("a", &a), ("b", &b)]);
    let response = gateway.handle(request()).await;
    assert_eq!(response.status(), 502, "both tried, both failed");
    assert_eq!(a.requests().len() + b.requests().len(), 2);

    let start = tokio::time::Instant::now();
    let response = gateway.handle(request()).await;
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait, no retry");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(a.requests().len() + b.requests().len(), 2, "nothing sent");
}

#[tokio::test(start_paused = true)]
async fn retries_go_to_deployments_the_request_has_not_tried() {
    let upstreams: Vec<Arc<Upstream>> = vec![
        Arc::new(Upstream::start().await),
        Arc::new(Upstream::start().await),
        Arc::new(Upstream::start().await),
    ];
    for failing in &upstreams[..2] {
        failing.set_default(Reply::json(
            503,
            openai::error_body("overloaded", "server_error", None),
        ));
    }
    upstreams[2].set_default(Reply::json(200, openai::chat_completion("ok")));
    // No breakers (`cooldown_time: 0`): only the balancer keeps retries
    // away from what failed.
    let yaml = format!(
        "model_list:\n{}{}{}router_settings:\n  num_retries: 2\n  cooldown_time: 0\n",
        upstream_deployment("a", ""),
        upstream_deployment("b", ""),
        upstream_deployment("c", ""),
    );
    let named: Vec<(&str, &Arc<Upstream>)> = ["a", "b", "c"].into_iter().zip(&upstreams).collect();
    let gateway = gateway_over(&yaml, &named);
    let seen = || -> Vec<usize> { upstreams.iter().map(|u| u.requests().len()).collect() };
    for _ in 0..10 {
        let before = seen();
        let response = gateway.handle(request()).await;
        let retries: usize = response.headers()["x-tollgate-attempted-retries"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(answered_by(response).await, "c");
        let after = seen();
        let tried: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert!(
            tried.iter().all(|&n| n <= 1),
            "one deployment twice: {tried:?}"
        );
        assert_eq!(tried.iter().sum::<usize>(), retries + 1);
    }
}
