//! A limit on every phase of a client connection, and on how many there
//! are: idle and header timeouts on HTTP/1 and HTTP/2, HTTP/2 keep-alive,
//! the connection cap with its health-check reserve, and the metrics of
//! each shed connection. Real sockets on 127.0.0.1; the timing tests run on
//! paused tokio time (the runtime moves the clock only when every task
//! waits, and loopback writes are readable at once), so a 20 s timeout
//! takes no wall time and is measured exactly.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestGateway, chat_body, openai_config};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tollgate_testkit::{Gate, Reply, Upstream, openai};

const TIMEOUTS: &str = "
model_list:
  - model_name: demo
    litellm_params:
      model: mock/demo
      mock_response: Hi!
tollgate:
  connection_idle_timeout: 20
  header_read_timeout: 7
  http2_keepalive_interval: 10
  http2_keepalive_timeout: 5
";

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The HPACK block of `POST <path>` (static-table names, literal values).
fn post_headers(path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    for (index, value) in [(4u8, path), (1u8, "127.0.0.1")] {
        // Literal without indexing, indexed name: :path, :authority.
        block.push(index);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Reads until the server closes the connection; returns when it did.
/// Bounded: a server that never closes fails the test (in paused time the
/// bound costs nothing).
async fn until_closed(stream: &mut TcpStream) -> Instant {
    let mut buf = vec![0; 16 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(600), read_all)
        .await
        .expect("the server closes the connection")
}

async fn connect(gateway: &TestGateway) -> TcpStream {
    TcpStream::connect(gateway.addr).await.unwrap()
}

/// One `GET` on a connection of its own; the status and the body.
async fn get(gateway: &TestGateway, path: &str) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let io = TokioIo::new(connect(gateway).await);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// A sample of the gateway's metrics, read on a connection of its own.
async fn metric(gateway: &TestGateway, series: &str) -> f64 {
    let (status, _, body) = get(gateway, "/metrics").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn shed(reason: &str) -> String {
    format!("tollgate_connections_shed_total{{reason=\"{reason}\"}}")
}

#[tokio::test(start_paused = true)]
async fn an_idle_http2_connection_is_closed_with_goaway_at_the_idle_timeout() {
    let gateway = TestGateway::start(TIMEOUTS, &[]).await;
    let io = TokioIo::new(connect(&gateway).await);
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::get(gateway.url("/health"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let idle_from = Instant::now();
    // hyper's client ends its connection future cleanly on the server's
    // GOAWAY and close; an error would mean a cut.
    tokio::time::timeout(Duration::from_secs(600), conn)
        .await
        .expect("the server closes the idle connection")
        .unwrap()
        .expect("closed with GOAWAY, not cut");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_secs(20) && idle < Duration::from_secs(21),
        "closed after {idle:?} idle"
    );
    assert!(sender.ready().await.is_err(), "no new stream after GOAWAY");
    assert_eq!(metric(&gateway, &shed("idle")).await, 1.0);
    gateway.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_http1_connection_follows_the_idle_timeout_not_the_header_timeout() {
    let gateway = TestGateway::start(TIMEOUTS, &[]).await;
    let mut stream = connect(&gateway).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_from = Instant::now();
    let closed = until_closed(&mut stream).await - idle_from;
    assert!(
        closed >= Duration::from_secs(20) && closed < Duration::from_secs(21),
        "closed after {closed:?} idle"
    );
    gateway.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_http1_head_that_never_ends_is_closed_at_the_header_timeout() {
    let gateway = TestGateway::start(TIMEOUTS, &[]).await;
    let mut stream = connect(&gateway).await;
    // Idle a while first: the header timer runs from the head's first
    // byte, not from the connection's start.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let closed = until_closed(&mut stream).await - started;
    assert!(
        closed >= Duration::from_secs(7) && closed < Duration::from_secs(8),
        "closed after {closed:?}"
    );
    assert_eq!(metric(&gateway, &shed("header_timeout")).await, 1.0);
    gateway.shutdown().await;
}

/// An HTTP/2 client that stops in the middle of a header block, in two
/// ways: a `HEADERS` frame without `END_HEADERS` and no `CONTINUATION`,
/// and a `HEADERS` frame whose payload never arrives.
#[tokio::test(start_paused = true)]
async fn an_http2_header_block_that_never_ends_is_closed_at_the_header_timeout() {
    let gateway = TestGateway::start(TIMEOUTS, &[]).await;
    let block = post_headers("/v1/chat/completions");
    let no_continuation = frame(0x1, 0x0, 1, &block);
    let mut short_payload = frame(0x1, 0x4, 1, &block);
    short_payload.truncate(9 + 3);
    for (i, stall) in [no_continuation, short_payload].into_iter().enumerate() {
        let mut stream = connect(&gateway).await;
        stream.write_all(PREFACE).await.unwrap();
        stream.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let started = Instant::now();
        stream.write_all(&stall).await.unwrap();
        let closed = until_closed(&mut stream).await - started;
        assert!(
            closed >= Duration::from_secs(7) && closed < Duration::from_secs(8),
            "stall {i}: closed after {closed:?}, not at the 7 s header timeout"
        );
    }
    assert_eq!(metric(&gateway, &shed("header_timeout")).await, 2.0);
    gateway.shutdown().await;
}

/// A client whose request body never ends and that answers nothing — not
/// even the server's pings — is gone at the keep-alive timeout. (A client
/// that answers pings and still never finishes its body is the request
/// body read timeout's.)
#[tokio::test(start_paused = true)]
async fn an_http2_body_that_never_ends_from_a_silent_peer_is_closed_by_keepalive() {
    let gateway = TestGateway::start(TIMEOUTS, &[]).await;
    let mut stream = connect(&gateway).await;
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    let headers = frame(0x1, 0x4, 1, &post_headers("/v1/chat/completions"));
    stream.write_all(&headers).await.unwrap();
    stream
        .write_all(&frame(0x0, 0x0, 1, br#"{"model":"demo","#))
        .await
        .unwrap();
    let started = Instant::now();
    let closed = until_closed(&mut stream).await - started;
    // 10 s of silence, then a ping unanswered for 5 s.
    assert!(
        closed >= Duration::from_secs(15) && closed < Duration::from_secs(16),
        "closed after {closed:?}"
    );
    assert_eq!(metric(&gateway, &shed("keepalive_timeout")).await, 1.0);
    assert_eq!(metric(&gateway, &shed("idle")).await, 0.0);
    gateway.shutdown().await;
}

/// A stream through the gateway that stays open until `gate` opens.
fn held_stream(gate: &Gate) -> Reply {
    // A role chunk, the first content, then the rest once the gate opens.
    let chunks = openai::chunks(&["held", " released"]);
    Reply::sse()
        .data(&chunks[0])
        .data(&chunks[1])
        .wait(gate)
        .data(&chunks[2])
        .data(&chunks[3])
        .done()
}

/// Starts a stream on a connection of its own; returns once its head and
/// first chunk are through, i.e. the request is in flight.
async fn start_stream(
    gateway: &TestGateway,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let io = TokioIo::new(connect(gateway).await);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::post("/v1/chat/completions")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat_body("gpt-test", true))))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    // The rest stays unread, and the request in flight.
    tokio::spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
    sender
}

/// Real time: nothing here waits on a timer but the reserve's 1 s wait.
#[tokio::test]
async fn at_the_connection_cap_health_checks_still_answer_and_the_rest_is_shed() {
    let upstream = Upstream::start().await;
    let gate = Gate::new();
    upstream.set_default(held_stream(&gate));
    let config = openai_config(&upstream.url(), "tollgate:\n  max_connections: 4\n");
    let gateway = TestGateway::start(&config, &[("UPSTREAM_KEY", "sk-test-upstream")]).await;
    // Every regular slot busy with a request in flight.
    let mut busy = Vec::new();
    for _ in 0..4 {
        busy.push(start_stream(&gateway).await);
    }
    // More connections than the reserve (8) holds, all idle: each newer one
    // takes the slot of the reserve's longest idle.
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(connect(&gateway).await);
    }
    // Liveness and readiness answer at once, each on a new connection.
    for path in ["/health", "/health/readiness"] {
        let (status, headers, body) = get(&gateway, path).await;
        assert_eq!(status, 200, "{path}: {body:?}");
        assert_eq!(
            headers["connection"], "close",
            "one answer per reserve slot"
        );
    }
    // Anything else waits for a slot, then gets an OpenAI-shaped 503.
    let waited = Instant::now();
    let (status, headers, body) = get(&gateway, "/v1/models").await;
    assert_eq!(status, 503);
    assert!(waited.elapsed() >= Duration::from_secs(1));
    assert_eq!(headers["retry-after"], "1");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "overloaded", "{error}");
    assert_eq!(error["error"]["type"], "server_error", "{error}");
    // The reserve's idle connections gave way: at least 12 - 8 of them.
    // Closed, they read the end.
    let mut closed = 0;
    for stream in &mut idle {
        let mut buf = [0; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 4, "{closed} idle reserve connections closed");
    // Once the streams end, their connections are idle: a new connection
    // takes one's slot and is served in full.
    gate.open();
    let gauge_before = {
        let (status, _, body) = get(&gateway, "/metrics").await;
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).unwrap()
    };
    assert!(
        gauge_before.contains("tollgate_connections_open "),
        "{gauge_before}"
    );
    let cap_shed = metric(&gateway, &shed("cap")).await;
    // The 503, and every eviction.
    assert!(cap_shed >= 5.0, "{cap_shed}");
    drop(busy);
    gateway.shutdown().await;
}

#[tokio::test]
async fn at_the_cap_the_longest_idle_connection_gives_its_slot_to_a_new_one() {
    let gateway = TestGateway::start(&format!("{TIMEOUTS}  max_connections: 2\n"), &[]).await;
    let mut oldest = connect(&gateway).await;
    oldest
        .write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 1024];
    assert!(oldest.read(&mut buf).await.unwrap() > 0);
    let _younger = connect(&gateway).await;
    // A third: the cap is 2, and the oldest idle one gives way.
    let (status, _, _) = get(&gateway, "/v1/models").await;
    assert_eq!(
        status, 200,
        "served in a regular slot, not the reserve's 503"
    );
    let closed = tokio::time::timeout(Duration::from_secs(10), oldest.read(&mut buf))
        .await
        .expect("the evicted connection is closed at once");
    assert!(matches!(closed, Ok(0) | Err(_)));
    assert!(metric(&gateway, &shed("cap")).await >= 1.0);
    gateway.shutdown().await;
}
