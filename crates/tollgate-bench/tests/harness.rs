//! The harness machinery on tiny bounded loads, on loopback: counts only,
//! never timings (the machine is shared and its timings are noise).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use tokio::net::TcpListener;
use tollgate_bench::child::Process;
use tollgate_bench::harness::body;
use tollgate_bench::load::{self, HoldSpec, LoadSpec, Mode, Stop};
use tollgate_bench::upstream::{self, SLOW_MODEL, UpstreamConfig};
use tollgate_bench::{floor, harness};
use tollgate_testkit::{Reply, Upstream, openai};

fn spec(addr: SocketAddr, mode: Mode, connections: usize, requests: u64) -> LoadSpec {
    LoadSpec {
        addr,
        body: body(mode, harness::MODEL),
        mode,
        connections,
        stop: Stop::Requests(requests),
        request_timeout: Duration::from_secs(30),
    }
}

async fn bench_upstream(config: UpstreamConfig) -> SocketAddr {
    let listener = upstream::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(upstream::serve(listener, config));
    addr
}

async fn floor_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let authority = upstream.to_string().try_into().unwrap();
    tokio::spawn(floor::serve(listener, authority));
    addr
}

/// 50 requests at concurrency 2 against the testkit's upstream: every one
/// answered and timed, on exactly two connections.
#[tokio::test]
async fn fifty_requests_on_two_connections() {
    let upstream = Upstream::start().await;
    upstream.set_recording(false);
    upstream.set_default(Reply::json(200, openai::chat_completion("hi")));

    let report = load::run(&spec(upstream.addr(), Mode::Complete, 2, 50), None)
        .await
        .unwrap();

    assert_eq!(report.completed, 50);
    assert_eq!(report.failed, 0);
    assert_eq!(report.latency.count(), 50);
    assert_eq!(
        upstream.connections(),
        2,
        "one keep-alive connection per worker"
    );
    upstream.wait_for_requests(50).await;
}

/// An error status is a failed request, not a completed one.
#[tokio::test]
async fn error_answers_count_as_failed() {
    let upstream = Upstream::start().await;
    upstream.set_recording(false);
    upstream.set_default(Reply::json(
        503,
        openai::error_body("down", "server_error", None),
    ));

    let report = load::run(&spec(upstream.addr(), Mode::Complete, 2, 10), None)
        .await
        .unwrap();

    assert_eq!(report.completed, 0);
    assert_eq!(report.failed, 10);
    assert_eq!(report.latency.count(), 0);
}

/// Streams through the floor proxy arrive whole, every event counted, and
/// each stream gives one time to first byte and one time per event.
#[tokio::test]
async fn streams_through_the_floor_arrive_whole() {
    let config = UpstreamConfig::default();
    let events = config.stream_events() as u64;
    let upstream = bench_upstream(config).await;
    let floor = floor_proxy(upstream).await;

    let report = load::run(&spec(floor, Mode::Stream, 4, 40), None)
        .await
        .unwrap();

    assert_eq!(report.completed, 40);
    assert_eq!(report.failed, 0);
    assert_eq!(report.events, 40 * events);
    assert_eq!(report.first_byte.count(), 40);
    assert_eq!(report.per_event.count(), 40);
}

/// The hold test opens every stream and sees each one through; with a
/// stall limit far above anything a loopback can take, none stalls.
#[tokio::test]
async fn slow_streams_are_held_together() {
    let config = UpstreamConfig {
        slow_parts: 2,
        slow_interval: Duration::from_millis(20),
        ..UpstreamConfig::default()
    };
    let events = config.slow_events() as u64;
    let upstream = bench_upstream(config).await;
    let floor = floor_proxy(upstream).await;

    let report = load::hold(&HoldSpec {
        addr: floor,
        body: body(Mode::Stream, SLOW_MODEL),
        streams: 16,
        stall_after: Duration::from_secs(60),
        timeout: Duration::from_secs(60),
    })
    .await
    .unwrap();

    assert_eq!(report.streams, 16);
    assert_eq!(report.held, 16, "{report:?}");
    assert_eq!(report.stalled, 0);
    assert_eq!(report.failed, 0);
    assert_eq!(report.events, 16 * events);
    assert!(report.passed());
}

/// The two binaries as the harness runs them: the upstream mode of
/// `loadtest` and `floor-proxy`, each announcing its address, the floor
/// stopping cleanly on SIGTERM (valgrind needs a normal exit to write its
/// profile).
#[tokio::test]
async fn the_binaries_serve_and_stop() {
    let mut upstream = Process::spawn(
        "upstream",
        Command::new(env!("CARGO_BIN_EXE_loadtest")).arg("--serve-upstream"),
        None,
    )
    .unwrap();
    let upstream_addr = upstream.wait_listening(Duration::from_secs(30)).unwrap();
    let mut floor = Process::spawn(
        "floor",
        Command::new(env!("CARGO_BIN_EXE_floor-proxy"))
            .args(["--upstream", &upstream_addr.to_string()]),
        None,
    )
    .unwrap();
    let floor_addr = floor.wait_listening(Duration::from_secs(30)).unwrap();

    let json = load::run(&spec(floor_addr, Mode::Complete, 2, 20), None)
        .await
        .unwrap();
    let stream = load::run(&spec(floor_addr, Mode::Stream, 2, 6), None)
        .await
        .unwrap();
    assert_eq!((json.completed, json.failed), (20, 0));
    assert_eq!((stream.completed, stream.failed), (6, 0));

    let status = floor.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}");
}

/// The floor proxy refuses to be pointed anywhere but loopback.
#[test]
fn the_floor_binary_is_loopback_only() {
    let status = Command::new(env!("CARGO_BIN_EXE_floor-proxy"))
        .args(["--upstream", "192.0.2.1:80"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}
