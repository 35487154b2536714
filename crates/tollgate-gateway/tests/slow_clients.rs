//! Clients too slow to send their request or to read their answer: each is
//! cut at its limit — answered 408 or closed — counted, and lets go of what
//! it held (memory, the upstream's connection).
//!
//! Real sockets on 127.0.0.1 and real time (paused time does not mix with
//! sockets): the limits are set to a second or so, and the tests wait for
//! events — an answer, a closed connection — each bounded by a timeout.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{Captured, TestGateway, call, chat_body, client, sse_data};
use http::Request;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tollgate_testkit::{Reply, Upstream, openai};

const ENV: [(&str, &str); 1] = [("UPSTREAM_KEY", "sk-upstream")];
/// The bound of every wait: far longer than any limit the tests set.
const PATIENCE: Duration = Duration::from_secs(20);

/// One OpenAI-compatible deployment at `upstream`, whose own deadline (60 s)
/// is far off: what ends a response here is the request's (`router`).
fn config(upstream: &str, router: &str, tollgate: &str) -> String {
    format!(
        "model_list:\n  - model_name: gpt-test\n    litellm_params:\n      model: openai/gpt-4o-mini\n      \
         api_base: {upstream}/v1\n      api_key: os.environ/UPSTREAM_KEY\n      timeout: 60\n    \
         model_info:\n      id: primary\nrouter_settings:\n  num_retries: 0\n{router}tollgate:\n{tollgate}"
    )
}

/// The head of a chat request over HTTP/1.1 declaring `length` bytes of body.
fn head(length: usize) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n"
    )
}

/// Everything the gateway sends until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    // A reset after the answer is a close too.
    let _ = timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and the JSON body of a raw HTTP/1.1 answer.
fn parse(answer: &str) -> (u16, serde_json::Value) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    (status, body)
}

async fn metrics(gateway: &TestGateway) -> String {
    call(&client(), "GET", &gateway.url("/metrics"), "", &[])
        .await
        .text()
}

fn client_timeouts(metrics: &str, phase: &str) -> u64 {
    let series = format!("tollgate_client_timeouts_total{{phase=\"{phase}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in\n{metrics}"))
}

#[tokio::test]
async fn a_body_that_stalls_half_way_is_answered_408_at_the_idle_timeout() {
    let upstream = Upstream::start().await;
    let tollgate = "  request_body_timeout: 10\n  request_body_idle_timeout: 0.5\n";
    let gateway = TestGateway::start(&config(&upstream.url(), "", tollgate), &ENV).await;
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(head(2000).as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 1000]).await.unwrap();
    let sent = Instant::now();

    let answer = read_to_close(&mut stream).await;
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    let (status, body) = parse(&answer);
    assert_eq!(status, 408, "{answer}");
    assert_eq!(body["error"]["code"], "request_body_timeout", "{answer}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{answer}");
    assert_eq!(
        body["error"]["message"],
        "the request body stalled for more than 0.5 s"
    );
    assert_eq!(
        client_timeouts(&metrics(&gateway).await, "request_body_idle"),
        1
    );
    assert!(upstream.requests().is_empty());
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_body_trickling_under_the_idle_limit_is_answered_408_at_the_body_timeout() {
    let upstream = Upstream::start().await;
    let tollgate = "  request_body_timeout: 1.5\n  request_body_idle_timeout: 1\n";
    let gateway = TestGateway::start(&config(&upstream.url(), "", tollgate), &ENV).await;
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head(100).as_bytes()).await.unwrap();
    let sent = Instant::now();
    // The trickle itself: a byte every 200 ms, never a second of silence,
    // never the whole body (at most 100 bytes, 20 s).
    let trickle = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(200));
        for _ in 0..99 {
            pace.tick().await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });

    let mut answer = Vec::new();
    let _ = timeout(PATIENCE, reader.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection");
    let waited = sent.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    let (status, body) = parse(&answer);
    assert_eq!(status, 408, "{answer}");
    assert_eq!(
        body["error"]["message"],
        "the request body did not arrive within 1.5 s"
    );
    let metrics = metrics(&gateway).await;
    assert_eq!(client_timeouts(&metrics, "request_body"), 1);
    assert_eq!(client_timeouts(&metrics, "request_body_idle"), 0);
    gateway.shutdown().await;
}

/// A request body the test feeds; it ends when the sender is dropped.
struct Fed(mpsc::Receiver<Bytes>);

impl http_body::Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[tokio::test]
async fn an_http2_body_that_stalls_is_answered_408() {
    let upstream = Upstream::start().await;
    let tollgate = "  request_body_timeout: 10\n  request_body_idle_timeout: 0.5\n";
    let gateway = TestGateway::start(&config(&upstream.url(), "", tollgate), &ENV).await;
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Fed>();
    let (tx, rx) = mpsc::channel(4);
    tx.send(Bytes::from_static(b"{\"model\":\"gpt-test\","))
        .await
        .unwrap();
    let request = Request::post(gateway.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("content-length", "200")
        .body(Fed(rx))
        .unwrap();
    let sent = Instant::now();
    let response = timeout(PATIENCE, h2.request(request))
        .await
        .expect("an answer")
        .expect("an HTTP/2 answer");
    assert!(sent.elapsed() >= Duration::from_millis(500));
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 408);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "request_body_timeout");
    drop(tx);
    assert_eq!(
        client_timeouts(&metrics(&gateway).await, "request_body_idle"),
        1
    );
    gateway.shutdown().await;
}

/// A stream far larger than every buffer between the gateway and a client
/// that reads nothing (the client's 4 KiB, the kernel's few MiB, hyper's),
/// which then never ends.
fn endless_flood() -> Reply {
    let content = "x".repeat(32 * 1024);
    let chunks = openai::chunks(&vec![content.as_str(); 400]);
    Reply::sse().data_each(chunks).stall()
}

fn access_lines(logs: &Captured) -> Vec<serde_json::Value> {
    logs.text()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "tollgate::access")
        .collect()
}

// One thread, so that every task of the gateway logs to this test's
// subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_client_that_does_not_read_loses_its_stream_at_the_deadline_and_the_upstream_is_released()
{
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let dir = std::env::temp_dir().join(format!("tollgate-slow-clients-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let upstream = Upstream::start().await;
    upstream.push(endless_flood());
    let tollgate = format!(
        "  ledger_path: {}\n  request_deadline: 1\n",
        dir.join("ledger.sqlite3").display()
    );
    let gateway = TestGateway::start(&config(&upstream.url(), "", &tollgate), &ENV).await;

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(gateway.addr).await.unwrap();
    let body = chat_body("gpt-test", true);
    let request = format!("{}{body}", head(body.len()))
        .replace("host: gateway", "host: gateway\r\nx-request-id: req-stuck");
    stream.write_all(request.as_bytes()).await.unwrap();
    timeout(PATIENCE, upstream.wait_for_requests(1))
        .await
        .expect("the request reaches the upstream");
    let asked = Instant::now();
    assert_eq!(upstream.open_connections(), 1);

    // The stream is cut at the deadline (1 s) and the grace (1 s): the
    // upstream's connection closes though the client never read a byte.
    timeout(PATIENCE, upstream.wait_for_open_connections(0))
        .await
        .expect("the upstream connection is let go");
    let waited = asked.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    // And the client's connection is closed: what was sent, then the end.
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 OK"),
        "{:?}",
        answer.get(..100)
    );
    assert!(!answer.contains("[DONE]"));

    assert_eq!(
        client_timeouts(&metrics(&gateway).await, "response_write"),
        1
    );
    gateway.gateway.flush_spend().await;
    let logs_answer = call(&client(), "GET", &gateway.url("/spend/logs"), "", &[])
        .await
        .json();
    let attempt = logs_answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["request_id"] == "req-stuck")
        .unwrap_or_else(|| panic!("no ledger row: {logs_answer}"))
        .clone();
    assert_eq!(attempt["outcome"], "cancelled", "{attempt}");
    gateway.shutdown().await;

    let lines = access_lines(&logs);
    let line = lines
        .iter()
        .find(|line| line["request_id"] == "req-stuck")
        .unwrap_or_else(|| panic!("no access line: {lines:?}"));
    assert_eq!(line["outcome"], "write_timeout", "{line}");
    assert_eq!(line["class"], "timeout", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_http2_stream_not_read_is_reset_at_the_deadline_and_its_connection_lives_on() {
    let upstream = Upstream::start().await;
    upstream.push(endless_flood());
    // The request's deadline (`timeout` bounds one attempt).
    let tollgate = "  request_deadline: 1\n";
    let gateway = TestGateway::start(&config(&upstream.url(), "", tollgate), &ENV).await;
    // The stream's window is HTTP/2's initial 64 KiB: the gateway can send
    // no more until the client reads.
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(65_535)
        .build_http::<http_body_util::Full<Bytes>>();
    let request = Request::post(gateway.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(chat_body(
            "gpt-test", true,
        ))))
        .unwrap();
    let response = timeout(PATIENCE, h2.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let asked = Instant::now();

    timeout(PATIENCE, upstream.wait_for_open_connections(0))
        .await
        .expect("the upstream connection is let go");
    assert!(asked.elapsed() >= Duration::from_millis(900));
    // The stream was reset: reading it now fails after what was sent.
    let mut body = response.into_body();
    let broken = timeout(PATIENCE, async {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => return true,
                None => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(broken, "the stream ends with a reset, not as if complete");
    // The connection itself is still good.
    let health = timeout(
        PATIENCE,
        h2.request(
            Request::get(gateway.url("/health"))
                .body(http_body_util::Full::default())
                .unwrap(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        client_timeouts(&metrics(&gateway).await, "response_write"),
        1
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_stream_still_waiting_on_its_upstream_at_the_deadline_ends_with_an_error_event() {
    let upstream = Upstream::start().await;
    let chunks = openai::chunks(&["Hel"]);
    upstream.push(Reply::sse().data(&chunks[0]).data(&chunks[1]).stall());
    // The request's deadline (`timeout` bounds one attempt).
    let tollgate = "  request_deadline: 1\n";
    let gateway = TestGateway::start(&config(&upstream.url(), "", tollgate), &ENV).await;
    let started = Instant::now();
    let answer = timeout(
        PATIENCE,
        call(
            &client(),
            "POST",
            &gateway.url("/v1/chat/completions"),
            chat_body("gpt-test", true),
            &[],
        ),
    )
    .await
    .expect("the stream ends at the deadline, not at the 30 s idle timeout");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(answer.status, 200);
    let events = sse_data(&answer.body);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    // The cascade holds its attempt to the same deadline: whichever of the
    // two sees it first ends the stream, and both say it timed out.
    let (code, message) = (&last["error"]["code"], last["error"]["message"].as_str());
    assert!(
        code == "timeout"
            || (code == "stream_interrupted" && message.is_some_and(|m| m.contains("timeout"))),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e != "[DONE]"));
    timeout(PATIENCE, upstream.wait_for_open_connections(0))
        .await
        .expect("the upstream connection is let go");
    // Not the client's doing.
    assert_eq!(
        client_timeouts(&metrics(&gateway).await, "response_write"),
        0
    );
    gateway.shutdown().await;
}

/// `VmRSS` and `VmHWM` (its peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Fifty clients each declare a 10 MiB body, send all of it but the last
/// KiB as fast as the gateway takes it, and stall. Before the bodies had a
/// budget this pinned 527 MB; now the bodies being read hold at most the
/// budget (64 MiB by default), plus their first 64 KiB and one read of
/// hyper's buffer (under 512 KiB) each: the bound the README gives.
#[tokio::test]
async fn fifty_stalled_10_mib_bodies_stay_within_the_memory_bound() {
    const BODIES: usize = 50;
    const MIB: usize = 1024 * 1024;
    let dir = std::env::temp_dir().join(format!("tollgate-stalled-bodies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "model_list:\n  - model_name: demo\n    litellm_params:\n      model: mock/demo\n\
         tollgate:\n  request_body_timeout: 60\n  request_body_idle_timeout: 60\n",
    )
    .unwrap();
    let gateway = common::binary::GatewayProcess::start(&config, &dir, &[]);
    let addr: std::net::SocketAddr = gateway
        .url("")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let pid = gateway.pid();
    let (baseline, _) = memory_kib(pid);

    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..BODIES {
        let chunk = chunk.clone();
        // A small send buffer: what the gateway does not take waits in the
        // client, not in kernel memory by the hundred megabytes.
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(64 * 1024).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        writers.spawn(async move {
            stream.write_all(head(10 * MIB).as_bytes()).await?;
            for _ in 0..(10 * MIB / chunk.len() - 1) {
                stream.write_all(&chunk).await?;
            }
            stream.write_all(&chunk[..chunk.len() - 1024]).await?;
            // Stalled, the last KiB unsent; the connection stays open.
            std::future::pending::<()>().await;
            Ok::<_, std::io::Error>(())
        });
    }
    // Waiting on another process: sample its memory every 100 ms until it
    // has not grown for a second (at most 30 s), the gateway having taken
    // all it will.
    let (mut last, mut still) = (0, 0);
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (rss, _) = memory_kib(pid);
        still = if rss <= last + 1024 { still + 1 } else { 0 };
        last = last.max(rss);
        if still >= 10 {
            break;
        }
    }
    assert!(still >= 10, "the gateway's memory kept growing: {last} KiB");
    let (rss, peak) = memory_kib(pid);
    assert!(
        writers.try_join_next().is_none(),
        "no body could be sent whole"
    );
    let bound_kib = (64 * MIB + BODIES * 576 * 1024) as u64 / 1024;
    eprintln!(
        "{BODIES} stalled 10 MiB bodies: RSS {baseline} KiB at start, {rss} KiB stalled, \
         peak {peak} KiB; bound {bound_kib} KiB above the start"
    );
    assert!(
        peak <= baseline + bound_kib,
        "peak RSS {peak} KiB over {baseline} KiB + {bound_kib} KiB"
    );
    // And the gateway answers meanwhile.
    let answers = tokio::time::timeout(
        PATIENCE,
        common::call(&client(), "GET", &gateway.url("/health"), "", &[]),
    )
    .await
    .expect("the gateway still answers");
    assert_eq!(answers.status, 200);
    writers.abort_all();
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_body_limits_are_checked_at_startup() {
    let load = |tollgate: &str| {
        let yaml = format!(
            "model_list:\n  - model_name: demo\n    litellm_params:\n      model: mock/demo\n\
             general_settings:\n  max_request_size_mb: 16\ntollgate:\n{tollgate}"
        );
        tollgate_gateway::config::load_str(&yaml, &|_| None)
    };
    for (setting, complaint) in [
        ("request_body_timeout: 0", "more than 0 seconds"),
        ("request_body_idle_timeout: -1", "must not be negative"),
        ("request_body_memory_mb: 0", "must be more than 0"),
    ] {
        let error = load(&format!("  {setting}\n")).unwrap_err().to_string();
        let key = setting.split(':').next().unwrap();
        assert!(error.contains(&format!("tollgate.{key}")), "{error}");
        assert!(error.contains(complaint), "{error}");
    }
    // A budget smaller than the largest body could never read one.
    let loaded = load("  request_body_memory_mb: 8\n").unwrap();
    let error = tollgate_gateway::Gateway::new(&loaded.config)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("tollgate.request_body_memory_mb: "),
        "{error}"
    );
    let loaded = load("  request_body_memory_mb: 16\n  request_body_timeout: 2.5\n").unwrap();
    assert!(tollgate_gateway::Gateway::new(&loaded.config).is_ok());
    assert_eq!(
        loaded.config.tollgate.request_body_timeout,
        Some(Duration::from_millis(2500))
    );
}
