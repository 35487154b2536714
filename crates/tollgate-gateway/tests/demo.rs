//! The offline demo (`examples/demo.yaml`) and the mock provider's faults.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestGateway, call, chat_body, client, sse_data, streamed_text};
use http_body_util::{BodyExt, Full};
use tollgate_gateway::{Gateway, config};

fn demo_yaml() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo.yaml");
    std::fs::read_to_string(path).expect("examples/demo.yaml")
}

#[tokio::test]
async fn the_demo_answers_completions_and_streams() {
    let gateway = TestGateway::start(&demo_yaml(), &[]).await;
    let client = client();
    let url = gateway.url("/v1/chat/completions");

    let answer = call(&client, "POST", &url, chat_body("demo", false), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Hello from Tollgate!")
    );
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let answer = call(&client, "POST", &url, chat_body("demo", true), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "text/event-stream");
    let events = sse_data(&answer.body);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text = streamed_text(&events);
    assert_eq!(
        text,
        "Hello from Tollgate! This answer came from the offline mock provider."
    );

    let models = call(&client, "GET", &gateway.url("/v1/models"), "", &[]).await;
    let ids: Vec<String> = models.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "demo",
            "demo-slow",
            "demo-flaky",
            "demo-down",
            "demo-broken-stream",
            "demo-embed"
        ]
    );
    // Embeddings and a legacy completion, as the README shows them.
    let json = [("content-type", "application/json")];
    let embed = serde_json::json!({"model": "demo-embed", "input": ["Hello", "World"]});
    let answer = call(
        &client,
        "POST",
        &gateway.url("/v1/embeddings"),
        embed.to_string(),
        &json,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["data"].as_array().unwrap().len(), 2);
    assert!(answer.headers.contains_key("x-tollgate-response-cost"));
    let prompt = serde_json::json!({"model": "demo", "prompt": "Say hello", "max_tokens": 20});
    let answer = call(
        &client,
        "POST",
        &gateway.url("/v1/completions"),
        prompt.to_string(),
        &json,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["object"], "text_completion");
    assert!(
        answer.json()["choices"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Hello from Tollgate!")
    );
    for path in ["/health", "/health/readiness"] {
        assert_eq!(
            call(&client, "GET", &gateway.url(path), "", &[])
                .await
                .status,
            200
        );
    }
    gateway.shutdown().await;
}

fn demo_gateway() -> Gateway {
    let loaded = config::load_str(&demo_yaml(), &|_| None).unwrap();
    Gateway::new(&loaded.config).unwrap()
}

async fn handle_group(gateway: &Gateway, group: &str, stream: bool) -> http::Response<Bytes> {
    let request = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(chat_body(group, stream))))
        .unwrap();
    let (parts, body) = gateway.handle(request).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

fn retries(response: &http::Response<Bytes>) -> &str {
    response.headers()["x-tollgate-attempted-retries"]
        .to_str()
        .unwrap()
}

// Paused time: the retry backoff and the breaker's cooldown pass at once.
#[tokio::test(start_paused = true)]
async fn the_demo_shows_retries_and_the_breaker() {
    let gateway = demo_gateway();
    // Every second request to the flaky group fails; the retry hides it.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = handle_group(&gateway, "demo-flaky", false).await;
        assert_eq!(response.status(), 200);
        seen.push(retries(&response).to_owned());
    }
    assert_eq!(seen, ["0", "1", "1", "1"]);

    // The down group fails every attempt: retried, then its breaker opens
    // and the gateway answers at once, with Retry-After, without calling it.
    let first = handle_group(&gateway, "demo-down", false).await;
    assert_eq!(first.status(), 502);
    assert_eq!(retries(&first), "3");
    let second = handle_group(&gateway, "demo-down", false).await;
    let start = tokio::time::Instant::now();
    let third = handle_group(&gateway, "demo-down", false).await;
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "an open breaker answers at once"
    );
    assert_eq!(third.status(), 503, "{:?}", third.body());
    assert!(third.headers().contains_key("retry-after"));
    let _ = second;
    let breakers = handle_group_get(&gateway, "/health/circuit-breakers").await;
    let states: serde_json::Value = serde_json::from_slice(breakers.body()).unwrap();
    let down = states["circuit_breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["key"] == "demo-down")
        .unwrap()
        .clone();
    assert_eq!(down["state"], "open", "{states}");

    // The first stream of the broken group is cut after two chunks; the
    // gateway continues it on another attempt, and the client gets the
    // whole answer, once.
    let response = handle_group(&gateway, "demo-broken-stream", true).await;
    let events = sse_data(response.body());
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    let text = streamed_text(&events);
    assert_eq!(
        text,
        "Hello from Tollgate's offline mock provider (broken-model)."
    );
}

async fn handle_group_get(gateway: &Gateway, path: &str) -> http::Response<Bytes> {
    let request = http::Request::get(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (parts, body) = gateway.handle(request).await.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    http::Response::from_parts(parts, body)
}

fn mock_gateway(fault: &str) -> Gateway {
    let yaml = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n      stream_timeout: 5\n      timeout: 60\n    model_info:\n      id: m-1\nrouter_settings:\n  num_retries: 0\ntollgate:\n  stream_idle_timeout: 3\n  mock:\n    m-1:\n      chunk_delay_ms: 100\n      fault: {fault}\n"
    );
    let loaded = config::load_str(&yaml, &|_| None).unwrap();
    Gateway::new(&loaded.config).unwrap()
}

async fn handle(gateway: &Gateway, stream: bool) -> (u16, Bytes) {
    let request = http::Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(chat_body("m", stream))))
        .unwrap();
    let response = gateway.handle(request).await;
    let status = response.status().as_u16();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_ends_with_an_error_after_the_idle_timeout() {
    // Every attempt stalls after its first word: the stall is detected after
    // the 3 s idle timeout, the cascade continues the answer, and once it
    // can no more, ends the stream with an error naming the stall.
    let gateway = mock_gateway("{ kind: stall, after_chunks: 2 }");
    let start = tokio::time::Instant::now();
    let (status, body) = handle(&gateway, true).await;
    assert_eq!(status, 200);
    let events = sse_data(&body);
    let error: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "stream_interrupted", "{events:?}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{error}"
    );
    assert!(!events.iter().any(|e| e == "[DONE]"));
    // What did arrive is a prefix of the answer, each word once.
    let text = streamed_text(&events);
    let answer = "Hello from Tollgate's offline mock provider (m).";
    assert!(answer.starts_with(&text), "{text:?}");
    assert!(
        text.len() > "Hello".len(),
        "a continuation added to it: {text:?}"
    );
    // At least two attempts, each stalled for the whole idle timeout.
    assert!(
        start.elapsed() >= Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_response_that_never_starts_times_out_at_the_first_byte() {
    let gateway = mock_gateway("{ kind: stall, after_chunks: 0 }");
    let start = tokio::time::Instant::now();
    // Non-streaming: the mock never sends headers; the total timeout (60 s)
    // applies to the first byte.
    let (status, body) = handle(&gateway, false).await;
    assert_eq!(status, 504);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "timeout");
    assert_eq!(start.elapsed(), Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn an_error_event_before_content_becomes_an_http_error() {
    let gateway = mock_gateway("{ kind: stream_error, after_chunks: 1 }");
    let (status, body) = handle(&gateway, true).await;
    // Only the role chunk had come: nothing reached the client yet.
    assert_eq!(status, 502);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
}
