//! Streams go through the gateway chunk by chunk, and never end as a
//! truncated success.

mod common;

use std::time::Duration;

use common::{TestGateway, chat_body, client, openai_config, send, sse_data};
use http_body_util::BodyExt;
use tollgate_testkit::{Gate, Reply, Upstream, openai};

const ENV: &[(&str, &str)] = &[("UPSTREAM_KEY", "sk-test-upstream")];

/// Reads body frames until `needle` has arrived; returns all bytes read.
async fn read_until(body: &mut hyper::body::Incoming, seen: &mut Vec<u8>, needle: &str) {
    while !String::from_utf8_lossy(seen).contains(needle) {
        let frame = body
            .frame()
            .await
            .expect("the stream ended before the expected chunk")
            .expect("the stream failed");
        if let Ok(data) = frame.into_data() {
            seen.extend_from_slice(&data);
        }
    }
}

#[tokio::test]
async fn chunks_are_forwarded_before_the_stream_ends() {
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    let chunks = openai::chunks(&["first-chunk", " second-chunk"]);
    upstream.push(
        Reply::sse()
            .data(&chunks[0])
            .data(&chunks[1])
            // The upstream sends the rest only once the test's client has seen
            // the first chunk through the gateway: a gateway that buffered the
            // stream would wait here forever.
            .wait(&gate)
            .data(&chunks[2])
            .data(&chunks[3])
            .done(),
    );
    let gateway = TestGateway::start(&openai_config(&upstream.url(), ""), ENV).await;
    let client = client();
    let response = send(
        &client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", true),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-tollgate-deployment"], "primary");
    let mut body = response.into_body();
    let mut seen = Vec::new();
    // Guard against a deadlock turning into a hung test run; not a timing
    // assertion.
    tokio::time::timeout(
        Duration::from_secs(30),
        read_until(&mut body, &mut seen, "first-chunk"),
    )
    .await
    .expect("chunk 1 never reached the client: the gateway buffers streams");
    assert!(!String::from_utf8_lossy(&seen).contains("second-chunk"));
    gate.open();
    read_until(&mut body, &mut seen, "[DONE]").await;
    let events = sse_data(&seen);
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events[2].contains("second-chunk"));
    assert_eq!(events.last().unwrap(), "[DONE]");

    // The upstream got the upstream model name and the gateway's key.
    let request = &upstream.requests()[0];
    assert_eq!(request.uri.path(), "/v1/chat/completions");
    assert_eq!(request.json()["model"], "gpt-4o-mini");
    assert_eq!(request.headers["authorization"], "Bearer sk-test-upstream");
    gateway.shutdown().await;
}

async fn stream_through(reply: Reply) -> Vec<String> {
    let upstream = Upstream::start().await;
    upstream.push(reply);
    let gateway = TestGateway::start(&openai_config(&upstream.url(), ""), ENV).await;
    let answer = common::call(
        &client(),
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", true),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200);
    gateway.shutdown().await;
    sse_data(&answer.body)
}

fn last_error(events: &[String]) -> serde_json::Value {
    let last: serde_json::Value = serde_json::from_str(events.last().expect("events")).unwrap();
    last.get("error")
        .unwrap_or_else(|| panic!("the stream does not end with an error event: {events:?}"))
        .clone()
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_event_not_a_truncated_success() {
    let chunks = openai::chunks(&["Hello", " world"]);
    let events = stream_through(Reply::sse().data(&chunks[0]).data(&chunks[1]).cut()).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let error = last_error(&events);
    assert_eq!(error["code"], "stream_interrupted");
}

#[tokio::test]
async fn a_stream_that_ends_without_done_is_reported_as_interrupted() {
    let chunks = openai::chunks(&["Hello"]);
    let events = stream_through(Reply::sse().data(&chunks[0]).data(&chunks[1])).await;
    assert_eq!(last_error(&events)["code"], "stream_interrupted");
}

#[tokio::test]
async fn half_an_event_is_never_forwarded() {
    let chunks = openai::chunks(&["Hello"]);
    let events = stream_through(
        Reply::sse()
            .data(&chunks[0])
            .raw(r#"data: {"id":"chatcmpl-1","choices":[{"delta":{"content":"trunc"#)
            .cut(),
    )
    .await;
    // The whole first event, then the error; the half event never arrives.
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(!events.iter().any(|e| e.contains("trunc")));
    assert_eq!(last_error(&events)["code"], "stream_interrupted");
}

#[tokio::test]
async fn an_upstream_error_event_is_replaced_by_a_sanitised_one() {
    let chunks = openai::chunks(&["Hello"]);
    let events = stream_through(
        Reply::sse()
            .data(&chunks[0])
            .data(r#"{"error":{"message":"internal host db-7.corp.example failed: see https://corp.example/x","type":"server_error","code":null}}"#)
            .data(&chunks[1])
            .done(),
    )
    .await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(!events[1].contains("corp.example"), "{events:?}");
    let error = last_error(&events);
    assert_eq!(error["code"], "stream_interrupted");
}

#[tokio::test]
async fn comments_and_crlf_streams_pass_through_unchanged() {
    let body = ": OPENROUTER PROCESSING\r\n\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n";
    let upstream = Upstream::start().await;
    upstream.push(Reply::sse().raw(body));
    let gateway = TestGateway::start(&openai_config(&upstream.url(), ""), ENV).await;
    let answer = common::call(
        &client(),
        "POST",
        &gateway.url("/chat/completions"),
        chat_body("gpt-test", true),
        &[],
    )
    .await;
    assert_eq!(answer.text(), body);
    gateway.shutdown().await;
}

#[tokio::test]
async fn non_streaming_bodies_are_forwarded_unchanged() {
    let upstream = Upstream::start().await;
    let completion = openai::chat_completion("Hello there");
    upstream.push(Reply::json(200, completion.clone()));
    let gateway = TestGateway::start(&openai_config(&upstream.url(), ""), ENV).await;
    let answer = common::call(
        &client(),
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", false),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json(), completion);
    assert_eq!(answer.headers["x-tollgate-model-group"], "gpt-test");
    assert!(answer.headers.contains_key("x-request-id"));
    gateway.shutdown().await;
}
