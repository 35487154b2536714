//! What the response fuzz targets share: an upstream answer scripted by the
//! fuzzer's bytes, served by a `tower::service_fn`, and the runtime that
//! drives the layers under test.
//!
//! # Input format
//!
//! ```text
//! byte 0   status: STATUSES[b % 16]
//! byte 1   flags (FLAG_*)
//! byte 2   body chunk length; 0: the whole body in one frame
//! [headers "name: value" lines, ended by an empty line, when FLAG_HEADERS]
//! body
//! ```
//!
//! A seed is three bytes followed by a fixture: `00 05 00` then an SSE
//! stream is a 200 event stream the client asked for, in one chunk.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

/// Upstream statuses, success weighted as upstreams do.
pub const STATUSES: [u16; 16] = [
    200, 200, 200, 200, 200, 400, 401, 402, 403, 404, 408, 429, 500, 502, 503, 529,
];

/// `content-type: text/event-stream`.
pub const FLAG_EVENT_STREAM: u8 = 1;
/// The client's request asks for a stream.
pub const FLAG_CLIENT_STREAM: u8 = 1 << 1;
/// A header block precedes the body.
pub const FLAG_HEADERS: u8 = 1 << 2;
/// The client's request already asks for `include_usage`.
pub const FLAG_CLIENT_USAGE: u8 = 1 << 3;
/// The body fails (a reset) after its last chunk instead of ending.
pub const FLAG_BODY_ERROR: u8 = 1 << 4;
/// The inner service fails before any response (a refused connection).
pub const FLAG_CALL_ERROR: u8 = 1 << 5;
/// The caller drops the response body after its first frame.
pub const FLAG_CLIENT_GONE: u8 = 1 << 6;

/// An upstream answer, decoded from fuzzer bytes.
#[derive(Debug, Clone)]
pub struct Script {
    /// The status line.
    pub status: StatusCode,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// The header block, lines that parse as headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body, as the frames it comes in.
    pub chunks: Vec<Bytes>,
}

impl Script {
    /// How many frames a body made from this script may take before a
    /// reader calls it a hang: a stream goes out one event a frame (events
    /// are split once and handed out whole, even an event a byte long), so
    /// the bound is the script's bytes, not its chunks.
    pub fn frame_bound(&self) -> usize {
        let bytes: usize = self.chunks.iter().map(|chunk| chunk.len()).sum();
        bytes + self.chunks.len() + 16
    }

    /// Decodes `input`; `None` when it is shorter than the three control
    /// bytes.
    pub fn decode(input: &[u8]) -> Option<Script> {
        let (&[status, flags, chunk], mut rest) = input.split_first_chunk::<3>()?;
        let mut headers = Vec::new();
        if flags & FLAG_HEADERS != 0 {
            let end = rest
                .windows(2)
                .position(|w| w == b"\n\n")
                .map_or(rest.len(), |at| at + 1);
            for line in rest[..end].split(|&b| b == b'\n') {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                let name = HeaderName::from_bytes(line[..colon].trim_ascii());
                let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
                if let (Ok(name), Ok(value)) = (name, value) {
                    headers.push((name, value));
                }
            }
            rest = rest.get(end + 1..).unwrap_or_default();
        }
        let chunks = match chunk {
            0 => vec![Bytes::copy_from_slice(rest)],
            n => rest
                .chunks(usize::from(n))
                .map(Bytes::copy_from_slice)
                .collect(),
        };
        Some(Script {
            status: StatusCode::from_u16(STATUSES[usize::from(status % 16)])
                .expect("a valid status"),
            flags,
            headers,
            chunks,
        })
    }

    /// Whether `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The client's request body.
    pub fn request_body(&self) -> Bytes {
        let stream = self.has(FLAG_CLIENT_STREAM);
        let usage = if self.has(FLAG_CLIENT_USAGE) {
            r#","stream_options":{"include_usage":true}"#
        } else {
            ""
        };
        Bytes::from(format!(
            r#"{{"model":"deepseek/deepseek-chat:free","stream":{stream}{usage},"messages":[{{"role":"user","content":"hi"}}]}}"#
        ))
    }

    /// The upstream's response, or its failure to answer.
    pub fn response(&self) -> Result<Response<ScriptBody>, std::io::Error> {
        if self.has(FLAG_CALL_ERROR) {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        let mut response = Response::new(ScriptBody {
            chunks: self.chunks.iter().cloned().collect(),
            fail: self.has(FLAG_BODY_ERROR),
        });
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        let content_type = if self.has(FLAG_EVENT_STREAM) {
            "text/event-stream"
        } else {
            "application/json"
        };
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        // The block's headers replace the defaults (a fixture's own
        // content-type included).
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        Ok(response)
    }
}

/// A body that yields its chunks, then ends — or fails, as a reset
/// connection does.
#[derive(Debug)]
pub struct ScriptBody {
    chunks: VecDeque<Bytes>,
    fail: bool,
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if std::mem::take(&mut self.fail) {
            return Poll::Ready(Some(Err(std::io::ErrorKind::ConnectionReset.into())));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && !self.fail
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Runs `future` to completion on this thread's runtime (one per process:
/// building a runtime per input would dominate the run).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// Reads a response body to its end or its first error, at most `limit`
/// frames (every body here is finite; the bound keeps a bug from hanging
/// the run).
pub async fn read_body<B>(body: B, limit: usize) -> (Vec<u8>, bool)
where
    B: Body<Data = Bytes>,
{
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    for _ in 0..limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => return (out, false),
            None => return (out, true),
        }
    }
    panic!("the body did not end within {limit} frames");
}

/// Checks a failure a layer under test returned: it is classified, renders
/// as an OpenAI error body, and none of `keys` (the layer's configured
/// secrets, which the seeds echo) is in its message.
pub fn check_failure(error: &(dyn std::error::Error + 'static), keys: &[&str]) {
    let failure = tollgate_core::Failure::from_error(error);
    let body: serde_json::Value =
        serde_json::from_slice(&failure.to_openai_body()).expect("error body is JSON");
    assert!(body["error"]["message"].is_string());
    for key in keys {
        assert!(!failure.message().contains(key), "the key in an error");
    }
}

/// Reads a layer's response as the script's client would: `None` when the
/// client drops it after its first frame ([`FLAG_CLIENT_GONE`]), else
/// whether it is an event stream and the bytes it yielded.
pub async fn read_response<B>(script: &Script, response: Response<B>) -> Option<(bool, Vec<u8>)>
where
    B: Body<Data = Bytes>,
{
    let stream = tollgate_core::classify::is_event_stream(response.headers());
    let body = response.into_body();
    if script.has(FLAG_CLIENT_GONE) {
        let mut body = std::pin::pin!(body);
        let _ = http_body_util::BodyExt::frame(&mut body).await;
        return None;
    }
    let (out, _clean) = read_body(body, script.frame_bound()).await;
    Some((stream, out))
}
