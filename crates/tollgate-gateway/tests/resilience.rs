//! Retries and circuit breakers through the whole gateway, against a testkit
//! upstream reached in memory, under paused time: backoffs and cooldowns
//! pass at once and exactly.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::chat_body;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tollgate_gateway::upstream::UpstreamClient;
use tollgate_gateway::{Gateway, config};
use tollgate_testkit::{Reply, Upstream, openai};

fn gateway_over(upstream: &Arc<Upstream>, router_settings: &str) -> Gateway {
    let yaml = format!(
        "model_list:\n  - model_name: gpt-test\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: http://upstream.invalid/v1\n      api_key: os.environ/UPSTREAM_KEY\n    model_info:\n      id: primary\nrouter_settings:\n{router_settings}"
    );
    let loaded = config::load_str(&yaml, &|_| Some("sk-test".to_owned())).unwrap();
    let upstream = Arc::clone(upstream);
    let client = UpstreamClient::in_memory(Gateway::client_config(&loaded.config), move |_| {
        Ok(upstream.connect_in_memory())
    });
    Gateway::with_client(&loaded.config, client).unwrap()
}

async fn send(gateway: &Gateway, method: &str, path: &str, body: String) -> http::Response<Bytes> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (parts, body) = gateway.handle(request).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

async fn chat(gateway: &Gateway) -> http::Response<Bytes> {
    send(
        gateway,
        "POST",
        "/v1/chat/completions",
        chat_body("gpt-test", false),
    )
    .await
}

async fn breaker_state(gateway: &Gateway) -> String {
    let response = send(gateway, "GET", "/health/circuit-breakers", String::new()).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    let breakers = body["circuit_breakers"].as_array().unwrap();
    assert_eq!(breakers.len(), 1, "{body}");
    assert_eq!(breakers[0]["key"], "primary");
    breakers[0]["state"].as_str().unwrap().to_owned()
}

fn unavailable() -> Reply {
    Reply::json(503, openai::error_body("overloaded", "server_error", None))
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_probes_after_the_cooldown_and_closes_on_recovery() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(
        &upstream,
        "  num_retries: 0\n  allowed_fails: 2\n  cooldown_time: 10\n",
    );
    assert_eq!(breaker_state(&gateway).await, "closed");

    // Three failures in a row open it.
    for _ in 0..3 {
        upstream.push(unavailable());
        assert_eq!(chat(&gateway).await.status(), 502);
    }
    assert_eq!(breaker_state(&gateway).await, "open");

    // While open, the gateway answers at once and the upstream sees nothing.
    let start = Instant::now();
    let rejected = chat(&gateway).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(rejected.status(), 503);
    let retry_after: u64 = rejected.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert_eq!(upstream.requests().len(), 3);

    // After the cooldown, one probe goes through; its success closes it.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(breaker_state(&gateway).await, "half_open");
    upstream.push(Reply::json(200, openai::chat_completion("back")));
    let recovered = chat(&gateway).await;
    assert_eq!(recovered.status(), 200);
    assert_eq!(upstream.requests().len(), 4);
    assert_eq!(breaker_state(&gateway).await, "closed");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_longer() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(
        &upstream,
        "  num_retries: 0\n  allowed_fails: 0\n  cooldown_time: 10\n",
    );
    upstream.push(unavailable());
    assert_eq!(chat(&gateway).await.status(), 502);
    assert_eq!(breaker_state(&gateway).await, "open");
    tokio::time::advance(Duration::from_secs(10)).await;
    upstream.push(unavailable());
    assert_eq!(
        chat(&gateway).await.status(),
        502,
        "the probe reached the upstream"
    );
    assert_eq!(breaker_state(&gateway).await, "open");
    // The second open time is longer than the first (doubled, less jitter).
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(breaker_state(&gateway).await, "open");
    assert_eq!(chat(&gateway).await.status(), 503);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn retries_hide_transient_failures_and_say_so() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(&upstream, "  num_retries: 3\n");
    upstream.push(unavailable());
    upstream.push(unavailable());
    upstream.push(Reply::json(200, openai::chat_completion("third time")));
    let response = chat(&gateway).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-attempted-retries"], "2");
    let requests = upstream.requests();
    assert_eq!(requests.len(), 3);
    // Every attempt sent the same request.
    assert!(requests.iter().all(|r| r.body == requests[0].body));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_bad_requests_are_not_retried() {
    let upstream = Arc::new(Upstream::start().await);
    let gateway = gateway_over(&upstream, "  num_retries: 3\n");
    upstream.push(
        Reply::json(
            429,
            openai::error_body("slow down", "requests", Some("rate_limit_exceeded")),
        )
        .header("retry-after", "2"),
    );
    upstream.push(Reply::json(200, openai::chat_completion("ok")));
    let response = chat(&gateway).await;
    assert_eq!(response.status(), 200);
    let requests = upstream.requests();
    assert!(requests[1].received_at - requests[0].received_at >= Duration::from_secs(2));

    upstream.push(Reply::json(
        400,
        openai::error_body("bad", "invalid_request_error", None),
    ));
    let response = chat(&gateway).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-tollgate-attempted-retries"], "0");
    assert_eq!(upstream.requests().len(), 3, "a bad request is sent once");
}

#[tokio::test(start_paused = true)]
async fn a_retry_never_waits_past_the_request_deadline() {
    let upstream = Arc::new(Upstream::start().await);
    // The whole request has 5 s; the upstream asks for 30.
    let gateway = gateway_over(
        &upstream,
        "  num_retries: 3\n  timeout: 5\n  cooldown_time: 0\ntollgate:\n  request_deadline: 5\n",
    );
    upstream.push(
        Reply::json(429, openai::error_body("slow down", "requests", None))
            .header("retry-after", "30"),
    );
    let start = Instant::now();
    let response = chat(&gateway).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(response.status(), 429);
    assert_eq!(upstream.requests().len(), 1);
}
