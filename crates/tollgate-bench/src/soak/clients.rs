//! The soak's clients: well-behaved JSON and stream clients, a key held to
//! a low rate, clients that read slowly, stall, or never finish sending.
//!
//! Every client loops until the soak's end, each request bounded by a
//! deadline, and records one outcome per request in the shared [`Tally`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

use super::faults::BIG_MODEL;
use crate::load::CHAT_PATH;

/// The model group of ordinary requests.
pub const MODEL: &str = "soak";

/// The longest a well-behaved request may take before the client gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stalling client stops reading, and a slow-body client stops
/// sending.
const STALL: Duration = Duration::from_secs(20);

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole JSON answer.
    Json,
    /// A stream, read as fast as it comes.
    Stream,
    /// JSON answers on the rate-limited key, faster than its limit.
    Limited,
    /// A large stream read at about 40 KB/s through a small socket buffer.
    SlowReader,
    /// A large stream whose client reads the head, then nothing for 20 s,
    /// then leaves.
    Staller,
    /// A request whose body stops after 100 of its 4,000 bytes for 20 s.
    SlowBody,
}

impl Kind {
    /// The name outcomes are filed under.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Stream => "stream",
            Kind::Limited => "limited",
            Kind::SlowReader => "slow-reader",
            Kind::Staller => "staller",
            Kind::SlowBody => "slow-body",
        }
    }
}

/// Outcomes so far, by class: `"<kind> ok"`, `"<kind> <status> <code>"`,
/// `"<kind> stream error <code>"`, `"<kind> client <what>"`.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    /// Files one outcome.
    pub fn add(&self, kind: Kind, outcome: &str) {
        let key = format!("{} {outcome}", kind.name());
        *self
            .counts
            .lock()
            .expect("tally lock")
            .entry(key)
            .or_default() += 1;
    }

    /// Every class and its count.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("tally lock").clone()
    }
}

/// What every client needs.
#[derive(Debug)]
pub struct Ctx {
    /// The replica this client talks to.
    pub gateway: SocketAddr,
    /// The virtual key it sends.
    pub key: String,
    /// The soak's end: no request starts after it.
    pub end: Instant,
    /// Set when the soak stops early.
    pub stop: AtomicBool,
    /// Where outcomes go.
    pub tally: std::sync::Arc<Tally>,
    /// Pause between two requests of one client.
    pub pause: Duration,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.end
    }
}

/// A request body for `model`.
fn body(model: &str, stream: bool) -> String {
    let messages = r#""messages":[{"role":"user","content":"Say hello."}]"#;
    if stream {
        format!(r#"{{"model":"{model}","stream":true,{messages}}}"#)
    } else {
        format!(r#"{{"model":"{model}",{messages}}}"#)
    }
}

/// Runs one client of `kind` until the soak ends (at most `max_requests`).
pub async fn run(kind: Kind, ctx: std::sync::Arc<Ctx>, max_requests: u64) {
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    for _ in 0..max_requests {
        if !ctx.running() {
            return;
        }
        let outcome = match kind {
            Kind::Json | Kind::Stream | Kind::Limited => {
                http_request(kind, &ctx, &mut sender).await
            }
            Kind::SlowReader => slow_reader(&ctx).await,
            Kind::Staller => staller(&ctx).await,
            Kind::SlowBody => slow_body(&ctx).await,
        };
        ctx.tally.add(kind, &outcome);
        tokio::time::sleep(ctx.pause).await;
    }
}

/// One request on the client's keep-alive connection (opened again after
/// an error).
async fn http_request(
    kind: Kind,
    ctx: &Ctx,
    sender: &mut Option<SendRequest<Full<Bytes>>>,
) -> String {
    let stream = kind == Kind::Stream;
    let exchange = async {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            let tcp = TcpStream::connect(ctx.gateway)
                .await
                .map_err(|_| "connect")?;
            let _ = tcp.set_nodelay(true);
            let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|_| "handshake")?;
            tokio::spawn(connection);
            *sender = Some(send);
        }
        let send = sender.as_mut().ok_or("no connection")?;
        send.ready().await.map_err(|_| "connection lost")?;
        let mut request = Request::post(CHAT_PATH)
            .body(Full::new(Bytes::from(body(MODEL, stream))))
            .map_err(|_| "request")?;
        let headers = request.headers_mut();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let bearer = HeaderValue::from_str(&format!("Bearer {}", ctx.key)).map_err(|_| "key")?;
        headers.insert(AUTHORIZATION, bearer);
        let response = send.send_request(request).await.map_err(|_| "reset")?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| "body cut")?
            .to_bytes();
        Ok::<_, &'static str>((status, body))
    };
    match timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => {
            *sender = None;
            String::from("client timeout")
        }
        Ok(Err(what)) => {
            *sender = None;
            format!("client {what}")
        }
        Ok(Ok((status, body))) if status.is_success() => {
            if !stream {
                return String::from("ok");
            }
            if let Some(code) = stream_error(&body) {
                format!("stream error {code}")
            } else if body.ends_with(b"data: [DONE]\n\n") {
                String::from("ok")
            } else {
                String::from("stream without [DONE]")
            }
        }
        Ok(Ok((status, body))) => format!("{} {}", status.as_u16(), error_code(&body)),
    }
}

/// The `code` of an OpenAI error body.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from("(no OpenAI error body)"))
}

/// The `code` of a stream's error event, if it has one.
fn stream_error(body: &[u8]) -> Option<String> {
    let at = find(body, b"data: {\"error\"")?;
    let line = &body[at + 6..];
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    Some(error_code(&line[..end]))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A raw HTTP/1.1 request, `Connection: close`.
fn raw_request(ctx: &Ctx, body: &str, content_length: usize) -> Vec<u8> {
    format!(
        "POST {CHAT_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         authorization: Bearer {}\r\ncontent-length: {content_length}\r\nconnection: close\r\n\r\n{body}",
        ctx.key
    )
    .into_bytes()
}

/// The status code of a response's first bytes.
fn status_of(head: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(head.get(..12)?).ok()?;
    line.strip_prefix("HTTP/1.1 ")
}

/// Reads a large stream at about 40 KB/s through a 4 KiB receive buffer:
/// the gateway's writes back up, and so do its reads from the upstream.
async fn slow_reader(ctx: &Ctx) -> String {
    let body = body(BIG_MODEL, true);
    let exchange = async {
        let socket = TcpSocket::new_v4().map_err(|_| "socket")?;
        let _ = socket.set_recv_buffer_size(4096);
        let mut tcp = socket.connect(ctx.gateway).await.map_err(|_| "connect")?;
        tcp.write_all(&raw_request(ctx, &body, body.len()))
            .await
            .map_err(|_| "write")?;
        let mut head = Vec::new();
        let mut tail = Vec::new();
        let mut buf = [0u8; 2048];
        // Bounded in reads as well as by the timeout: the stream is about
        // 220 KB, 110 full reads.
        for _ in 0..2000 {
            let n = tcp.read(&mut buf).await.map_err(|_| "reset")?;
            if n == 0 {
                break;
            }
            if head.len() < 12 {
                head.extend_from_slice(&buf[..n.min(12)]);
            }
            tail.extend_from_slice(&buf[..n]);
            let keep = tail.len().saturating_sub(64);
            tail.drain(..keep);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, &'static str>((head, tail))
    };
    match timeout(Duration::from_secs(60), exchange).await {
        Err(_) => String::from("client timeout"),
        Ok(Err(what)) => format!("client {what}"),
        Ok(Ok((head, tail))) => match status_of(&head) {
            Some(status) if status.starts_with("200") => {
                if find(&tail, b"data: [DONE]").is_some() {
                    String::from("ok")
                } else {
                    String::from("stream without [DONE]")
                }
            }
            Some(status) => status[..3].to_owned(),
            None => String::from("client no response"),
        },
    }
}

/// Asks for a large stream, reads its head, stops reading for [`STALL`],
/// then leaves: the gateway must let go of the stream and its upstream.
async fn staller(ctx: &Ctx) -> String {
    let body = body(BIG_MODEL, true);
    let exchange = async {
        let socket = TcpSocket::new_v4().map_err(|_| "socket")?;
        let _ = socket.set_recv_buffer_size(4096);
        let mut tcp = socket.connect(ctx.gateway).await.map_err(|_| "connect")?;
        tcp.write_all(&raw_request(ctx, &body, body.len()))
            .await
            .map_err(|_| "write")?;
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).await.map_err(|_| "reset")?;
        tokio::time::sleep(STALL).await;
        Ok::<_, &'static str>(buf[..n].to_vec())
    };
    match timeout(STALL + Duration::from_secs(30), exchange).await {
        Err(_) => String::from("client timeout"),
        Ok(Err(what)) => format!("client {what}"),
        Ok(Ok(head)) => match status_of(&head) {
            Some(status) if status.starts_with("200") => String::from("left after stalling"),
            Some(status) => status[..3].to_owned(),
            None => String::from("client no response"),
        },
    }
}

/// Sends the head and 100 bytes of a 4,000-byte body, then nothing for
/// [`STALL`]; records the gateway's answer if one comes (a 408 once body
/// reads have a timeout), else that none came.
async fn slow_body(ctx: &Ctx) -> String {
    let body = body(MODEL, false);
    let exchange = async {
        let mut tcp = TcpStream::connect(ctx.gateway)
            .await
            .map_err(|_| "connect")?;
        let mut request = raw_request(ctx, &body, 4000);
        request.truncate(request.len() - body.len() + 100.min(body.len()));
        tcp.write_all(&request).await.map_err(|_| "write")?;
        let mut buf = [0u8; 512];
        match timeout(STALL, tcp.read(&mut buf)).await {
            Err(_) => Ok(None),
            Ok(Ok(0)) => Ok(Some(Vec::new())),
            Ok(Ok(n)) => Ok(Some(buf[..n].to_vec())),
            Ok(Err(_)) => Err("reset"),
        }
    };
    match timeout(STALL + Duration::from_secs(10), exchange).await {
        Err(_) => String::from("client timeout"),
        Ok(Err(what)) => format!("client {what}"),
        Ok(Ok(None)) => String::from("no answer in 20 s (left)"),
        Ok(Ok(Some(head))) => match status_of(&head) {
            Some(status) => format!("{} (body stalled)", &status[..3]),
            None => String::from("closed by the gateway"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_error_codes_and_stream_errors() {
        let body = br#"{"error":{"message":"x","type":"t","param":null,"code":"timeout"}}"#;
        assert_eq!(error_code(body), "timeout");
        assert_eq!(error_code(b"nope"), "(no OpenAI error body)");
        let stream =
            b"data: {\"choices\":[]}\n\ndata: {\"error\":{\"code\":\"stream_interrupted\"}}\n\n";
        assert_eq!(stream_error(stream).as_deref(), Some("stream_interrupted"));
        assert_eq!(stream_error(b"data: [DONE]\n\n"), None);
    }

    #[test]
    fn reads_a_status_line() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some("200"));
        assert_eq!(status_of(b"HTTP/1.1 408 Request Timeout"), Some("408"));
        assert_eq!(status_of(b"garbage"), None);
    }
}
