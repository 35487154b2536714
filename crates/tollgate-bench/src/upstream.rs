//! The fixed-body upstream every target forwards to.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Sleep;
use tollgate_testkit::openai;

/// The model name that asks the upstream for a slow stream (one event every
/// [`UpstreamConfig::slow_interval`]). The gateway's config maps a model
/// group of that name to a deployment of the same upstream model, so the
/// marker reaches the upstream through every target unchanged.
pub const SLOW_MODEL: &str = "bench-slow";

/// How [`SLOW_MODEL`] reads in a compact JSON request body.
const SLOW_MARKER: &[u8] = br#""model":"bench-slow""#;

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Content deltas in a fast stream (it also has a role chunk, a finish
    /// chunk, a usage chunk and `data: [DONE]`).
    pub stream_parts: usize,
    /// Content deltas in a slow stream.
    pub slow_parts: usize,
    /// The pause before each event of a slow stream but the first.
    pub slow_interval: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            stream_parts: 16,
            slow_parts: 26,
            slow_interval: Duration::from_millis(100),
        }
    }
}

impl UpstreamConfig {
    /// The SSE events of a fast stream, `data: [DONE]` included.
    pub fn stream_events(&self) -> usize {
        self.stream_parts + 4
    }

    /// The SSE events of a slow stream, `data: [DONE]` included.
    pub fn slow_events(&self) -> usize {
        self.slow_parts + 4
    }
}

/// The replies, built once: serving one is a clone of `Bytes` handles.
#[derive(Debug)]
struct Replies {
    json: Bytes,
    stream: Arc<[Bytes]>,
    slow: Arc<[Bytes]>,
    slow_interval: Duration,
}

impl Replies {
    fn new(config: &UpstreamConfig) -> Self {
        Replies {
            json: Bytes::from(
                openai::chat_completion("Hello from the tollgate-bench upstream.").to_string(),
            ),
            stream: events(config.stream_parts),
            slow: events(config.slow_parts),
            slow_interval: config.slow_interval,
        }
    }
}

/// A stream's events: role, `parts` deltas, finish, usage, `[DONE]`.
fn events(parts: usize) -> Arc<[Bytes]> {
    let words: Vec<String> = (0..parts).map(|i| format!("tok{i} ")).collect();
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

/// Binds `addr` with a listen backlog of 4,096 (tokio's default is 1,024).
///
/// A proxy holding a thousand new streams opens a thousand upstream
/// connections at once; with a short backlog the kernel drops the excess
/// SYNs and the proxy's connects stall for the one-second SYN retry, which
/// would measure the upstream's accept queue instead of the proxy. (The
/// kernel caps the backlog at `net.core.somaxconn`.)
///
/// # Errors
///
/// When the address cannot be bound.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Serves the fixed replies on `listener` until the task is dropped: HTTP/1.1
/// with keep-alive and `TCP_NODELAY`, one task per connection.
///
/// Each request body is read whole, then answered by what it asks for: a
/// body with `"stream":true` gets an SSE stream (a slow one when its model is
/// [`SLOW_MODEL`]), any other body the `chat.completion` JSON. The request is
/// otherwise ignored, so the upstream costs the same whichever target sent
/// it.
pub async fn serve(listener: TcpListener, config: UpstreamConfig) {
    let replies = Arc::new(Replies::new(&config));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let replies = replies.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(replies.clone(), request));
            // An error is the client going away mid-exchange: nothing to do.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    replies: Arc<Replies>,
    request: Request<Incoming>,
) -> Result<Response<ReplyBody>, hyper::Error> {
    let body = request.into_body().collect().await?.to_bytes();
    let body = if !contains(&body, b"\"stream\":true") {
        let mut response = Response::new(ReplyBody::whole(replies.json.clone()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(response);
    } else if contains(&body, SLOW_MARKER) {
        ReplyBody::events(replies.slow.clone(), Some(replies.slow_interval))
    } else {
        ReplyBody::events(replies.stream.clone(), None)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Whether `needle` occurs in `haystack` (request bodies are a few hundred
/// bytes: the naive search is fine).
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A reply body: one whole frame, or events sent one by one.
#[derive(Debug)]
struct ReplyBody {
    frames: Arc<[Bytes]>,
    next: usize,
    /// `None`: each event goes out in its own write, as fast as the client
    /// takes them. `Some`: this pause before each event but the first.
    interval: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Between two events the body yields once: hyper writes what it has
    /// buffered whenever the body is pending, so each event is its own
    /// write, as a token-by-token upstream's would be.
    yielded: bool,
}

impl ReplyBody {
    fn whole(bytes: Bytes) -> Self {
        ReplyBody {
            frames: Arc::from([bytes]),
            next: 0,
            interval: None,
            sleep: None,
            yielded: true,
        }
    }

    fn events(frames: Arc<[Bytes]>, interval: Option<Duration>) -> Self {
        ReplyBody {
            frames,
            next: 0,
            interval,
            sleep: None,
            yielded: true,
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.next >= this.frames.len() {
            return Poll::Ready(None);
        }
        if this.next > 0 {
            match this.interval {
                Some(interval) => {
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.sleep = None;
                }
                None if !this.yielded => {
                    this.yielded = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                None => {}
            }
        }
        let frame = this.frames[this.next].clone();
        this.next += 1;
        this.yielded = false;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.frames.len()
    }

    fn size_hint(&self) -> SizeHint {
        // A whole reply goes out with content-length; a stream is chunked.
        if self.frames.len() == 1 && self.interval.is_none() {
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
    fn a_stream_has_role_parts_finish_usage_and_done() {
        let config = UpstreamConfig {
            stream_parts: 3,
            ..UpstreamConfig::default()
        };
        let events = events(config.stream_parts);
        assert_eq!(events.len(), config.stream_events());
        assert!(
            events
                .iter()
                .all(|e| e.starts_with(b"data: ") && e.ends_with(b"\n\n"))
        );
        assert_eq!(&events[events.len() - 1][..], b"data: [DONE]\n\n");
        assert!(contains(&events[events.len() - 2], b"\"usage\""));
    }

    #[test]
    fn finds_the_markers() {
        let body = br#"{"model":"bench-slow","stream":true,"messages":[]}"#;
        assert!(contains(body, b"\"stream\":true"));
        assert!(contains(body, SLOW_MARKER));
        assert!(contains(SLOW_MARKER, SLOW_MODEL.as_bytes()));
        assert!(!contains(br#"{"model":"bench"}"#, b"\"stream\":true"));
    }
}
