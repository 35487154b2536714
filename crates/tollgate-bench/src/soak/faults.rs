//! The soak's upstream: OpenAI-shaped answers, with faults injected at
//! fixed rates — error statuses, connections reset before an answer,
//! streams cut in the middle, slow first tokens — and a count of every
//! request it sees, which the ledgers must match row for row.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tollgate_testkit::openai;

use crate::upstream::contains;

/// The model group whose streams are large (for slow-reading clients).
pub const BIG_MODEL: &str = "soak-big";

/// What can happen to one upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A normal answer.
    None,
    /// An error status (500, 502 or 503) with an OpenAI error body.
    Status,
    /// The connection is closed without an answer.
    Reset,
    /// The body stops half-way and the connection is closed.
    Cut,
    /// The answer starts after a pause of 0.5 to 3 s.
    SlowFirstToken,
}

/// The names of [`Fault`]s, in `FAULTS` order, for reports.
pub const FAULT_NAMES: [&str; 5] = ["none", "status", "reset", "cut", "slow_first_token"];

/// How often each fault is injected, in requests per thousand.
#[derive(Debug, Clone, Copy)]
pub struct FaultMix {
    /// Error statuses.
    pub status: u64,
    /// Resets before the answer.
    pub reset: u64,
    /// Bodies cut half-way.
    pub cut: u64,
    /// Slow first tokens.
    pub slow_first_token: u64,
}

impl Default for FaultMix {
    /// 4% error statuses, 2% resets, 3% cuts, 5% slow first tokens.
    fn default() -> Self {
        FaultMix {
            status: 40,
            reset: 20,
            cut: 30,
            slow_first_token: 50,
        }
    }
}

impl FaultMix {
    /// The fault of the request whose draw (uniform on 0..1000) is `draw`.
    pub fn pick(&self, draw: u64) -> Fault {
        let mut edge = self.status;
        if draw < edge {
            return Fault::Status;
        }
        edge += self.reset;
        if draw < edge {
            return Fault::Reset;
        }
        edge += self.cut;
        if draw < edge {
            return Fault::Cut;
        }
        edge += self.slow_first_token;
        if draw < edge {
            return Fault::SlowFirstToken;
        }
        Fault::None
    }
}

/// What the upstream has seen: every request, and each fault injected.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    requests: AtomicU64,
    faults: [AtomicU64; 5],
}

impl UpstreamStats {
    /// Requests received (each one an attempt of the gateway).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests that got each fault, in [`FAULT_NAMES`] order.
    pub fn faults(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.faults[i].load(Ordering::Relaxed))
    }
}

/// splitmix64: the `n`th draw of a seeded sequence, so that a seed gives
/// the same faults to the same request numbers on every run.
pub fn draw(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The answers, built once.
#[derive(Debug)]
struct Replies {
    json: Bytes,
    stream: Arc<[Bytes]>,
    big: Arc<[Bytes]>,
}

/// Serves on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, mix: FaultMix, seed: u64, stats: Arc<UpstreamStats>) {
    let replies = Arc::new(Replies {
        json: Bytes::from(openai::chat_completion("Hello from the soak upstream.").to_string()),
        stream: events(16, 8),
        // About 200 KB: enough to fill the socket buffers of a client that
        // reads slowly, so the gateway feels it.
        big: events(200, 1000),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (replies, stats) = (replies.clone(), stats.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                respond(replies.clone(), stats.clone(), mix, seed, request)
            });
            // An error is a reset this upstream chose, or the gateway going
            // away mid-exchange: nothing to do.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A reset: hyper closes the connection when the service fails.
#[derive(Debug)]
struct ResetByUpstream;

impl std::fmt::Display for ResetByUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the soak upstream")
    }
}

impl std::error::Error for ResetByUpstream {}

async fn respond(
    replies: Arc<Replies>,
    stats: Arc<UpstreamStats>,
    mix: FaultMix,
    seed: u64,
    request: Request<Incoming>,
) -> Result<Response<FaultBody>, ResetByUpstream> {
    // Counted on arrival: from here the gateway has made an attempt.
    let n = stats.requests.fetch_add(1, Ordering::Relaxed);
    let random = draw(seed, n);
    let fault = mix.pick(random % 1000);
    stats.faults[fault as usize].fetch_add(1, Ordering::Relaxed);
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|_| ResetByUpstream)?
        .to_bytes();
    let stream = contains(&body, b"\"stream\":true");
    match fault {
        Fault::Reset => return Err(ResetByUpstream),
        Fault::Status => return Ok(error_status(random)),
        Fault::SlowFirstToken => {
            let pause = Duration::from_millis(500 + (random >> 10) % 2500);
            tokio::time::sleep(pause).await;
        }
        Fault::None | Fault::Cut => {}
    }
    let cut = fault == Fault::Cut;
    let mut response = if !stream {
        Response::new(FaultBody::new(Arc::from([replies.json.clone()]), None, cut))
    } else {
        let events = if contains(&body, BIG_MODEL.as_bytes()) {
            replies.big.clone()
        } else {
            replies.stream.clone()
        };
        Response::new(FaultBody::new(events, Some(Duration::from_millis(5)), cut))
    };
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// 500, 502 or 503, by the request's draw. (No 429: an upstream's 429 with
/// `Retry-After` opens its deployment's breaker on every replica for that
/// long, by design, and at soak rates would keep both deployments open.)
fn error_status(random: u64) -> Response<FaultBody> {
    let status = match (random >> 20) % 3 {
        0 => StatusCode::INTERNAL_SERVER_ERROR,
        1 => StatusCode::BAD_GATEWAY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body =
        openai::error_body("injected by the soak upstream", "server_error", None).to_string();
    let mut response = Response::new(FaultBody::new(Arc::from([Bytes::from(body)]), None, false));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A stream's events: role, `parts` deltas of `width` bytes of text,
/// finish, usage, `[DONE]`.
fn events(parts: usize, width: usize) -> Arc<[Bytes]> {
    let words: Vec<String> = (0..parts)
        .map(|i| format!("{:<width$}", format!("tok{i}")))
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    openai::chunks(&words)
        .into_iter()
        .chain(std::iter::once(openai::usage_chunk(
            openai::PROMPT_TOKENS,
            parts as u64,
        )))
        .map(|chunk| Bytes::from(format!("data: {chunk}\n\n")))
        .chain(std::iter::once(Bytes::from_static(b"data: [DONE]\n\n")))
        .collect()
}

/// A reply body: its frames, `interval` apart; a cut one fails half-way,
/// which makes hyper close the connection without ending the body.
#[derive(Debug)]
struct FaultBody {
    frames: Arc<[Bytes]>,
    next: usize,
    interval: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Where a cut body fails; `None`: it ends normally.
    cut_at: Option<usize>,
}

impl FaultBody {
    fn new(frames: Arc<[Bytes]>, interval: Option<Duration>, cut: bool) -> Self {
        // A one-frame answer is cut by sending half of it first.
        let (frames, cut_at) = match (cut, frames.len()) {
            (false, _) => (frames, None),
            (true, 1) => {
                let whole = &frames[0];
                let half = whole.slice(..whole.len() / 2);
                (Arc::from([half]), Some(1))
            }
            (true, n) => (frames, Some(n / 2)),
        };
        FaultBody {
            frames,
            next: 0,
            interval,
            sleep: None,
            cut_at,
        }
    }
}

impl Body for FaultBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.cut_at == Some(this.next) {
            return Poll::Ready(Some(Err(Box::new(ResetByUpstream))));
        }
        if this.next >= this.frames.len() {
            return Poll::Ready(None);
        }
        if this.next > 0
            && let Some(interval) = this.interval
        {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let frame = this.frames[this.next].clone();
        this.next += 1;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.cut_at.is_none() && self.next >= self.frames.len()
    }

    fn size_hint(&self) -> SizeHint {
        // Only a whole answer that is not cut goes out with a length.
        if self.frames.len() == 1 && self.cut_at.is_none() {
            SizeHint::with_exact(self.frames[0].len() as u64)
        } else {
            SizeHint::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_gives_each_fault_its_share() {
        let mix = FaultMix::default();
        let mut counts = [0u64; 5];
        for n in 0..100_000 {
            counts[mix.pick(draw(7, n) % 1000) as usize] += 1;
        }
        // Per thousand, within 10% of the configured rates.
        for (count, rate) in counts[1..].iter().zip([40, 20, 30, 50]) {
            let expected = rate * 100;
            assert!(count.abs_diff(expected) < expected / 10, "{counts:?}");
        }
    }

    #[test]
    fn a_seed_gives_the_same_draws() {
        assert_eq!(draw(1, 5), draw(1, 5));
        assert_ne!(draw(1, 5), draw(2, 5));
    }

    #[test]
    fn big_streams_are_about_200_kb() {
        let big = events(200, 1000);
        let bytes: usize = big.iter().map(Bytes::len).sum();
        assert!((200_000..300_000).contains(&bytes), "{bytes}");
        assert_eq!(&big[big.len() - 1][..], b"data: [DONE]\n\n");
    }
}
