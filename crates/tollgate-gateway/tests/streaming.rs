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

/// A stream of two content chunks that waits for `gate` between them.
fn gated_stream(gate: &Gate, first: &str, second: &str) -> Reply {
    let chunks = openai::chunks(&[first, second]);
    Reply::sse()
        .data(&chunks[0])
        .data(&chunks[1])
        .wait(gate)
        .data(&chunks[2])
        .data(&chunks[3])
        .done()
}

async fn start_stream(
    client: &common::TestClient,
    gateway: &TestGateway,
) -> http::Response<hyper::body::Incoming> {
    send(
        client,
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", true),
        &[("content-type", "application/json")],
    )
    .await
}

#[tokio::test]
async fn chunks_are_forwarded_before_the_stream_ends() {
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    // The upstream sends the rest only once the test's client has seen the
    // first chunk through the gateway: a gateway that buffered the stream
    // would wait here forever.
    upstream.push(gated_stream(&gate, "first-chunk", " second-chunk"));
    let gateway = TestGateway::start(&openai_config(&upstream.url(), ""), ENV).await;
    let client = client();
    let response = start_stream(&client, &gateway).await;
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

/// One scripted stream request through the gateway. No retries: a
/// continuation then meets the upstream's unscripted 500 at once, so these
/// tests see how a stream ends when nothing can continue it.
async fn answer_to(reply: Reply) -> common::Answer {
    let upstream = Upstream::start().await;
    upstream.push(reply);
    let config = openai_config(&upstream.url(), "router_settings:\n  num_retries: 0\n");
    let gateway = TestGateway::start(&config, ENV).await;
    let answer = common::call(
        &client(),
        "POST",
        &gateway.url("/v1/chat/completions"),
        chat_body("gpt-test", true),
        &[],
    )
    .await;
    gateway.shutdown().await;
    answer
}

/// The events of a scripted stream through the gateway, which answered 200.
async fn stream_through(reply: Reply) -> Vec<String> {
    let answer = answer_to(reply).await;
    assert_eq!(answer.status, 200);
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
            .data(&chunks[1])
            .raw(r#"data: {"id":"chatcmpl-1","choices":[{"delta":{"content":"trunc"#)
            .cut(),
    )
    .await;
    // The whole events, then the error; the half event never arrives.
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(!events.iter().any(|e| e.contains("trunc")));
    assert_eq!(last_error(&events)["code"], "stream_interrupted");
}

#[tokio::test]
async fn an_error_before_any_content_is_an_http_error() {
    let chunks = openai::chunks(&["Hello"]);
    let answer = answer_to(
        Reply::sse()
            .data(&chunks[0])
            .data(r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#),
    )
    .await;
    // Nothing had reached the client: it gets a proper error, not a stream.
    assert_eq!(answer.status, 502);
    assert_eq!(answer.openai_error()["code"], "upstream_unavailable");
}

#[tokio::test]
async fn an_upstream_error_event_is_replaced_by_a_sanitised_one() {
    let chunks = openai::chunks(&["Hello"]);
    let events = stream_through(
        Reply::sse()
            .data(&chunks[0])
            .data(&chunks[1])
            .data(r#"{"error":{"message":"internal host db-7.corp.example failed: see https://corp.example/x","type":"server_error","code":null}}"#)
            .data(&chunks[2])
            .done(),
    )
    .await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(!events[2].contains("corp.example"), "{events:?}");
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

#[tokio::test]
async fn shutdown_lets_an_open_stream_finish_and_refuses_new_connections() {
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    upstream.push(gated_stream(&gate, "before-shutdown", " after-shutdown"));
    let mut gateway = TestGateway::start(&openai_config(&upstream.url(), ""), ENV).await;
    let client = client();
    let response = start_stream(&client, &gateway).await;
    let mut body = response.into_body();
    let mut seen = Vec::new();
    read_until(&mut body, &mut seen, "before-shutdown").await;

    gateway.begin_shutdown();
    // Readiness fails once the server has stopped accepting (it drains
    // first); wait for that event, not for a clock.
    let ready = |gateway: &TestGateway| {
        let request = http::Request::get("/health/readiness")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let gateway = gateway.gateway.clone();
        async move { gateway.handle(request).await.status() }
    };
    let mut spins = 0;
    while ready(&gateway).await == 200 {
        spins += 1;
        assert!(spins < 100_000, "the gateway never started draining");
        tokio::task::yield_now().await;
    }
    assert_eq!(ready(&gateway).await, 503);
    let refused = tokio::net::TcpStream::connect(gateway.addr).await;
    assert!(refused.is_err(), "no new connections during the drain");

    // The stream that was already open completes.
    gate.open();
    read_until(&mut body, &mut seen, "[DONE]").await;
    assert!(String::from_utf8_lossy(&seen).contains("after-shutdown"));
    drop(body);
    gateway.finished().await;
}

#[tokio::test]
async fn an_http2_stream_cut_by_the_shutdown_ends_with_its_event_and_is_recorded_before_the_ledger_closes()
 {
    let dir = std::env::temp_dir().join(format!("tollgate-h2-shutdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("ledger.sqlite3");
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    upstream.push(gated_stream(&gate, "before-shutdown", " never-sent"));
    let extra = format!("tollgate:\n  ledger_path: {}\n", ledger.display());
    let mut gateway = TestGateway::start_with_grace(
        &openai_config(&upstream.url(), &extra),
        ENV,
        std::time::Duration::ZERO,
    )
    .await;

    // HTTP/2 without TLS, by prior knowledge: hyper serves each stream in
    // a task of its own, beside the connection's.
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(gateway.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(chat_body(
            "gpt-test", true,
        ))))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let mut body = response.into_body();
    let mut seen = Vec::new();
    read_until(&mut body, &mut seen, "before-shutdown").await;

    // No grace: the stream is cut — its last event says so — and its
    // attempt must reach the ledger before it closes.
    gateway.begin_shutdown();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the stream ends cleanly").into_data() {
            seen.extend_from_slice(&data);
        }
    }
    let events = sse_data(&seen);
    assert!(
        events.last().unwrap().contains(r#""code":"shutdown""#),
        "{events:?}"
    );
    gateway.finished().await;
    let rows: Vec<(String, String)> = rusqlite::Connection::open(&ledger)
        .unwrap()
        .prepare("SELECT outcome, cost_source FROM spend")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "shutdown", "{rows:?}");
    gate.open();
    let _ = std::fs::remove_dir_all(&dir);
}
