//! The load generator: closed-loop workers, one keep-alive connection each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::{BoxError, Histogram};

/// The path every target serves.
pub const CHAT_PATH: &str = "/v1/chat/completions";

/// At most this many connects in flight at once: a burst of a thousand SYNs
/// would overflow the accept backlog of a busy server and measure that
/// instead.
const CONNECT_CONCURRENCY: usize = 128;

/// What each request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A whole JSON answer: the latency is to the end of the body.
    Complete,
    /// An SSE stream: also times the first body byte and the events after
    /// it; a stream counts as failed unless it ends with `data: [DONE]`.
    Stream,
}

impl Mode {
    /// `"json"` or `"stream"`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Complete => "json",
            Mode::Stream => "stream",
        }
    }
}

/// When a load run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this many requests in all, every one of them measured.
    Requests(u64),
    /// After a warm-up (not measured) and a measured window; the run counts
    /// the requests that complete inside the window, whenever they started,
    /// which is the throughput of a steady state.
    Timed {
        /// Load before the window, to fill pools and caches.
        warm_up: Duration,
        /// The measured window.
        measure: Duration,
    },
}

/// One load run: `connections` workers, each with its own connection,
/// each sending its next request as soon as the last one ended.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The target, on loopback.
    pub addr: SocketAddr,
    /// The request body, sent as JSON to [`CHAT_PATH`].
    pub body: Bytes,
    /// What is measured of each answer.
    pub mode: Mode,
    /// Concurrent connections, one closed-loop worker each.
    pub connections: usize,
    /// When to stop.
    pub stop: Stop,
    /// A request not done by then counts as failed (and its connection is
    /// replaced), so one lost answer cannot hang the run.
    pub request_timeout: Duration,
}

/// The measured window of a [`Stop::Timed`] run, announced once every
/// connection is open, so that a sampler can read the target's CPU time at
/// its edges.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When measuring starts.
    pub start: Instant,
    /// When measuring ends.
    pub end: Instant,
}

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests answered in full with a 200 (and, for streams, `[DONE]`).
    pub completed: u64,
    /// Requests that failed: a transport error, another status, a stream
    /// cut short, a timeout.
    pub failed: u64,
    /// The measured time: the window, or the whole run for
    /// [`Stop::Requests`].
    pub elapsed: Duration,
    /// Request latency, from sending to the end of the body.
    pub latency: Histogram,
    /// Streams: time to the first body byte.
    pub first_byte: Histogram,
    /// Streams: the time after the first byte divided by the events after
    /// the first, one value per stream.
    pub per_event: Histogram,
    /// Streams: SSE events received in all.
    pub events: u64,
}

impl LoadReport {
    /// Completed requests per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.completed as f64 / self.elapsed.as_secs_f64()
        }
    }

    /// Adds `other`'s requests, time and histograms to these: two runs of
    /// the same load, taken as one.
    pub fn merge(&mut self, other: &LoadReport) {
        self.elapsed += other.elapsed;
        self.completed += other.completed;
        self.failed += other.failed;
        self.latency.merge(&other.latency);
        self.first_byte.merge(&other.first_byte);
        self.per_event.merge(&other.per_event);
        self.events += other.events;
    }
}

/// Runs `spec` to its end. With a `window` sender, a [`Stop::Timed`] run
/// announces its measured window on it once every connection is open.
///
/// # Errors
///
/// When a connection cannot be opened.
pub async fn run(
    spec: &LoadSpec,
    window: Option<oneshot::Sender<Window>>,
) -> Result<LoadReport, BoxError> {
    let senders = connect_all(spec.addr, spec.connections).await?;
    let started = Instant::now();
    let (start, end) = match spec.stop {
        Stop::Timed { warm_up, measure } => (started + warm_up, started + warm_up + measure),
        // Never ends by time; `Requests` ends by count.
        Stop::Requests(_) => (started, started + Duration::from_secs(86_400 * 365)),
    };
    if let Some(window) = window {
        let _ = window.send(Window { start, end });
    }
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        host: HeaderValue::from_str(&spec.addr.to_string())?,
        tickets: AtomicU64::new(0),
        start,
        end,
    });
    let mut workers = JoinSet::new();
    for sender in senders {
        workers.spawn(worker(shared.clone(), sender));
    }
    let mut report = LoadReport::default();
    while let Some(stats) = workers.join_next().await {
        report.merge(&stats?);
    }
    report.elapsed = match spec.stop {
        Stop::Timed { measure, .. } => measure,
        Stop::Requests(_) => started.elapsed(),
    };
    Ok(report)
}

struct Shared {
    spec: LoadSpec,
    host: HeaderValue,
    /// Requests claimed so far, for [`Stop::Requests`].
    tickets: AtomicU64,
    start: Instant,
    end: Instant,
}

impl Shared {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.spec.body.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = http::Uri::from_static(CHAT_PATH);
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request
    }

    /// Whether the worker may send another request.
    fn another(&self) -> bool {
        match self.spec.stop {
            Stop::Requests(n) => self.tickets.fetch_add(1, Ordering::Relaxed) < n,
            Stop::Timed { .. } => Instant::now() < self.end,
        }
    }
}

async fn worker(shared: Arc<Shared>, mut sender: SendRequest<Full<Bytes>>) -> LoadReport {
    let mut stats = LoadReport::default();
    let mode = shared.spec.mode;
    while shared.another() {
        let result = tokio::time::timeout(
            shared.spec.request_timeout,
            exchange(&mut sender, shared.request(), mode),
        )
        .await;
        let now = Instant::now();
        let counted = now >= shared.start && now < shared.end;
        match result {
            Ok(Ok(exchange)) if exchange.is_complete(mode) => {
                if counted {
                    stats.completed += 1;
                    exchange.record(&mut stats);
                }
            }
            Ok(Ok(_)) => {
                if counted {
                    stats.failed += 1;
                }
            }
            Ok(Err(_)) | Err(_) => {
                if counted {
                    stats.failed += 1;
                }
                // The connection is broken or owes us an answer: replace it.
                match connect(shared.spec.addr).await {
                    Ok(fresh) => sender = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    stats
}

/// One request and its answer, timed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange {
    pub(crate) start: Instant,
    pub(crate) status: StatusCode,
    /// When the first non-empty body frame arrived.
    pub(crate) first: Option<Instant>,
    /// When the last non-empty body frame arrived.
    pub(crate) last: Option<Instant>,
    pub(crate) end: Instant,
    /// SSE events seen (`\n\n` terminators).
    pub(crate) events: u64,
    /// Whether the body ended with `data: [DONE]\n\n`.
    pub(crate) done: bool,
    /// The longest silence: from the request to the first frame, or between
    /// two frames.
    pub(crate) max_gap: Duration,
}

impl Exchange {
    pub(crate) fn is_complete(&self, mode: Mode) -> bool {
        self.status == StatusCode::OK && (mode == Mode::Complete || self.done)
    }

    fn record(&self, stats: &mut LoadReport) {
        stats.latency.record(self.end - self.start);
        if let (Some(first), Some(last)) = (self.first, self.last) {
            stats.first_byte.record(first - self.start);
            if self.events > 1 {
                stats
                    .per_event
                    .record((last - first) / (self.events - 1) as u32);
            }
        }
        stats.events += self.events;
    }
}

/// Sends `request` and reads the whole answer.
pub(crate) async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
    mode: Mode,
) -> Result<Exchange, BoxError> {
    sender.ready().await?;
    let start = Instant::now();
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut exchange = Exchange {
        start,
        status,
        first: None,
        last: None,
        end: start,
        events: 0,
        done: false,
        max_gap: Duration::ZERO,
    };
    let mut scan = SseScan::default();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let now = Instant::now();
        let since = exchange.last.unwrap_or(start);
        exchange.max_gap = exchange.max_gap.max(now - since);
        exchange.first.get_or_insert(now);
        exchange.last = Some(now);
        if mode == Mode::Stream {
            scan.feed(&data);
        }
    }
    exchange.end = Instant::now();
    exchange.events = scan.events;
    exchange.done = scan.ends_with_done();
    Ok(exchange)
}

/// Counts SSE events across frames, and keeps the stream's last bytes.
#[derive(Debug, Default)]
pub(crate) struct SseScan {
    pub(crate) events: u64,
    /// Whether the previous frame ended with `\n`.
    newline: bool,
    tail: Vec<u8>,
}

const DONE: &[u8] = b"data: [DONE]\n\n";

impl SseScan {
    pub(crate) fn feed(&mut self, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            if byte == b'\n' {
                let previous = if i == 0 {
                    self.newline
                } else {
                    data[i - 1] == b'\n'
                };
                if previous {
                    self.events += 1;
                }
            }
        }
        self.newline = data.last() == Some(&b'\n');
        self.tail
            .extend_from_slice(&data[data.len().saturating_sub(DONE.len())..]);
        let excess = self.tail.len().saturating_sub(DONE.len());
        self.tail.drain(..excess);
    }

    pub(crate) fn ends_with_done(&self) -> bool {
        self.tail == DONE
    }
}

/// Opens one HTTP/1.1 connection to `addr`, with `TCP_NODELAY`.
///
/// # Errors
///
/// When the connection or the handshake fails.
pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when the sender is dropped (or the peer
    // closes): no handle to keep.
    tokio::spawn(connection);
    Ok(sender)
}

/// `GET path` on a fresh connection: the status and the whole body.
///
/// # Errors
///
/// When the connection or the exchange fails.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, Bytes), BoxError> {
    let mut sender = connect(addr).await?;
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Opens `n` connections to `addr`, at most [`CONNECT_CONCURRENCY`] at once.
pub(crate) async fn connect_all(
    addr: SocketAddr,
    n: usize,
) -> Result<Vec<SendRequest<Full<Bytes>>>, BoxError> {
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut connecting = JoinSet::new();
    for _ in 0..n {
        let permits = permits.clone();
        connecting.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            connect(addr).await
        });
    }
    let mut senders = Vec::with_capacity(n);
    while let Some(sender) = connecting.join_next().await {
        senders.push(sender??);
    }
    Ok(senders)
}

/// How many concurrent streams a target holds: `streams` slow streams opened
/// together, each watched for silences longer than `stall_after`.
#[derive(Debug, Clone)]
pub struct HoldSpec {
    /// The target, on loopback.
    pub addr: SocketAddr,
    /// The request body: a stream request for the slow upstream stream.
    pub body: Bytes,
    /// How many streams to hold open at once.
    pub streams: usize,
    /// A silence longer than this (before the first event or between two)
    /// is a stall.
    pub stall_after: Duration,
    /// A stream not done by then has failed.
    pub timeout: Duration,
}

/// What a hold run saw.
#[derive(Debug, Clone, Default)]
pub struct HoldReport {
    /// Streams asked for.
    pub streams: usize,
    /// Streams that ended with `[DONE]`, with no silence over the limit.
    pub held: usize,
    /// Streams that ended with `[DONE]` after a silence over the limit.
    pub stalled: usize,
    /// Streams that failed: an error, another status, cut short, timed out.
    pub failed: usize,
    /// The longest silence seen in any stream.
    pub max_gap: Duration,
    /// The most streams open at the same instant (between first and last
    /// byte).
    pub max_concurrent: usize,
    /// SSE events received in all.
    pub events: u64,
}

impl HoldReport {
    /// Every stream held, none stalled or failed.
    pub fn passed(&self) -> bool {
        self.held == self.streams
    }
}

/// Opens every connection first, then starts every stream at once, and
/// waits for them all.
///
/// # Errors
///
/// When a connection cannot be opened.
pub async fn hold(spec: &HoldSpec) -> Result<HoldReport, BoxError> {
    let senders = connect_all(spec.addr, spec.streams).await?;
    let shared = Arc::new(Shared {
        spec: LoadSpec {
            addr: spec.addr,
            body: spec.body.clone(),
            mode: Mode::Stream,
            connections: spec.streams,
            stop: Stop::Requests(spec.streams as u64),
            request_timeout: spec.timeout,
        },
        host: HeaderValue::from_str(&spec.addr.to_string())?,
        tickets: AtomicU64::new(0),
        start: Instant::now(),
        end: Instant::now(),
    });
    let mut streams = JoinSet::new();
    for mut sender in senders {
        let shared = shared.clone();
        streams.spawn(async move {
            let request = shared.request();
            let timeout = shared.spec.request_timeout;
            // The sender must outlive the exchange: dropping it closes the
            // connection.
            let result =
                tokio::time::timeout(timeout, exchange(&mut sender, request, Mode::Stream)).await;
            result.ok().and_then(Result::ok)
        });
    }
    let mut report = HoldReport {
        streams: spec.streams,
        ..HoldReport::default()
    };
    let mut edges = Vec::with_capacity(spec.streams * 2);
    while let Some(outcome) = streams.join_next().await {
        match outcome? {
            Some(exchange) if exchange.is_complete(Mode::Stream) => {
                report.max_gap = report.max_gap.max(exchange.max_gap);
                report.events += exchange.events;
                if exchange.max_gap > spec.stall_after {
                    report.stalled += 1;
                } else {
                    report.held += 1;
                }
                if let (Some(first), Some(last)) = (exchange.first, exchange.last) {
                    edges.push((first, 1i64));
                    edges.push((last, -1i64));
                }
            }
            _ => report.failed += 1,
        }
    }
    // Sweep the opens and closes in time order; at equal instants the close
    // goes first, so touching streams do not count as overlapping.
    edges.sort_unstable();
    let mut open = 0i64;
    for (_, step) in edges {
        open += step;
        report.max_concurrent = report.max_concurrent.max(open as usize);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_across_frames() {
        let mut scan = SseScan::default();
        scan.feed(b"data: a\n\ndata: b\n");
        scan.feed(b"\ndata: [DONE]\n");
        assert!(!scan.ends_with_done());
        scan.feed(b"\n");
        assert_eq!(scan.events, 3);
        assert!(scan.ends_with_done());
    }

    #[test]
    fn done_must_be_last() {
        let mut scan = SseScan::default();
        scan.feed(b"data: [DONE]\n\ndata: x\n\n");
        assert_eq!(scan.events, 2);
        assert!(!scan.ends_with_done());
    }
}
