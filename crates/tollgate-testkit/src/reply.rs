//! Scripted replies: what the upstream answers to one request.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Response, StatusCode,
    header::{CACHE_CONTROL, CONTENT_TYPE},
};

use crate::{Gate, body::ReplyBody};

/// What the upstream answers to one request: a status, headers and a scripted body.
///
/// Start from [`Reply::json`], [`Reply::bytes`], [`Reply::sse`] or [`Reply::reset`],
/// adjust it with the builder methods, and hand it to
/// [`Upstream::push`](crate::Upstream::push) or
/// [`Upstream::set_default`](crate::Upstream::set_default).
///
/// The body is a script of steps run in order for each request that gets this reply.
/// The body methods ([`data`](Reply::data), [`raw`](Reply::raw), [`done`](Reply::done),
/// [`delay`](Reply::delay), [`wait`](Reply::wait), [`stall`](Reply::stall),
/// [`cut`](Reply::cut)) append steps, so any reply can be streamed slowly or broken
/// off: `Reply::bytes(200, "application/json", r#"{"id":"#).cut()` sends half a JSON
/// document and then aborts. A reply made only of chunks and not built by
/// [`Reply::sse`] is sent with `content-length`; anything else is streamed (chunked on
/// HTTP/1.1).
///
/// Cloning is cheap: the body script is shared.
#[derive(Clone, Debug)]
#[must_use = "a Reply does nothing until it is pushed to an Upstream"]
pub struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    header_delay: Duration,
    steps: Arc<Vec<Step>>,
    streaming: bool,
    reset: bool,
}

/// One step of a reply body.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// Send these bytes as one body frame.
    Chunk(Bytes),
    /// Sleep (tokio time) before the next step.
    Delay(Duration),
    /// Wait for the gate to open.
    Wait(Gate),
    /// Send nothing more, forever.
    Stall,
    /// End the body with an error, aborting the connection (or the h2 stream).
    Cut,
}

impl Reply {
    /// A JSON reply: `status`, `content-type: application/json` and `body` serialized.
    ///
    /// For a body that is not valid JSON, use [`Reply::bytes`].
    ///
    /// # Panics
    ///
    /// If `status` is not a valid status code.
    #[track_caller]
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Self::bytes(status, "application/json", body.to_string())
    }

    /// A reply with the given status, `content-type` and body bytes.
    ///
    /// # Panics
    ///
    /// If `status` is not a valid status code or `content_type` not a valid header value.
    #[track_caller]
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self::new(status)
            .header(CONTENT_TYPE, content_type)
            .raw(body)
    }

    /// A `200 text/event-stream` reply (with `cache-control: no-cache`) and an empty
    /// body script: add events with
    /// [`data`](Reply::data), [`raw`](Reply::raw) and [`done`](Reply::done).
    pub fn sse() -> Self {
        let mut reply = Self::new(200)
            .header(CONTENT_TYPE, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        reply.streaming = true;
        reply
    }

    /// Closes the connection without sending any response.
    ///
    /// On HTTP/1.1 the upstream reads the whole request, records it, then resets the
    /// TCP connection (`SO_LINGER` 0, so the client reads `ECONNRESET`). On h2c the
    /// stream is reset with `INTERNAL_ERROR` and the connection stays up. Status,
    /// headers and body steps are ignored; [`delay_headers`](Reply::delay_headers)
    /// still applies, so "reset after two seconds" can be scripted.
    pub fn reset() -> Self {
        let mut reply = Self::new(200);
        reply.reset = true;
        reply
    }

    #[track_caller]
    fn new(status: u16) -> Self {
        Self {
            status: status_code(status),
            headers: HeaderMap::new(),
            header_delay: Duration::ZERO,
            steps: Arc::default(),
            streaming: false,
            reset: false,
        }
    }

    /// Sets the status code.
    ///
    /// # Panics
    ///
    /// If `status` is not a valid status code.
    #[track_caller]
    pub fn status(mut self, status: u16) -> Self {
        self.status = status_code(status);
        self
    }

    /// Sets a header, replacing any value it had (`content-type` included).
    ///
    /// # Panics
    ///
    /// If the name or value is not valid.
    #[track_caller]
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Debug,
    {
        let name = name.try_into().expect("testkit: invalid header name");
        let value = value.try_into().expect("testkit: invalid header value");
        self.headers.insert(name, value);
        self
    }

    /// Waits this long (tokio time) before sending the response head.
    pub fn delay_headers(mut self, delay: Duration) -> Self {
        self.header_delay = delay;
        self
    }

    /// Appends one server-sent event: `data: {data}\n\n`.
    ///
    /// Anything `Display` works: a `serde_json::Value` is written as compact JSON, a
    /// `&str` as is. A value spanning several lines becomes one `data:` line per line.
    pub fn data(self, data: impl fmt::Display) -> Self {
        let data = data.to_string();
        let mut event = String::with_capacity(data.len() + 8);
        for line in data.split('\n') {
            event.push_str("data: ");
            event.push_str(line);
            event.push('\n');
        }
        event.push('\n');
        self.raw(event)
    }

    /// Appends one event per item, as [`data`](Reply::data) does; handy with
    /// [`openai::chunks`](crate::openai::chunks).
    pub fn data_each<I>(self, items: I) -> Self
    where
        I: IntoIterator,
        I::Item: fmt::Display,
    {
        items.into_iter().fold(self, Self::data)
    }

    /// Appends the stream terminator `data: [DONE]\n\n`.
    pub fn done(self) -> Self {
        self.raw(Bytes::from_static(b"data: [DONE]\n\n"))
    }

    /// Appends exact bytes as one body frame: comments, malformed or partial events.
    pub fn raw(self, bytes: impl Into<Bytes>) -> Self {
        self.step(Step::Chunk(bytes.into()))
    }

    /// Waits this long (tokio time) before the next step.
    pub fn delay(self, delay: Duration) -> Self {
        self.step(Step::Delay(delay))
    }

    /// Waits until `gate` is open before the next step.
    pub fn wait(self, gate: &Gate) -> Self {
        self.step(Step::Wait(gate.clone()))
    }

    /// Sends nothing more but keeps the connection open, until the client goes away or
    /// the [`Upstream`](crate::Upstream) is dropped. Later steps never run.
    pub fn stall(self) -> Self {
        self.step(Step::Stall)
    }

    /// Aborts the response here: what was sent so far is flushed, then the body ends
    /// with an error. On HTTP/1.1 the connection closes without the terminating chunk
    /// (a reply with a cut is chunked unless it sets `content-length` itself, which
    /// then goes unmet); on h2c the stream is reset. The client sees the body fail,
    /// not end. Later steps never run.
    pub fn cut(self) -> Self {
        self.step(Step::Cut)
    }

    fn step(mut self, step: Step) -> Self {
        Arc::make_mut(&mut self.steps).push(step);
        self
    }

    pub(crate) fn header_delay(&self) -> Duration {
        self.header_delay
    }

    pub(crate) fn is_reset(&self) -> bool {
        self.reset
    }

    /// Builds the response; cheap enough to run per request on a shared default reply.
    pub(crate) fn to_response(&self) -> Response<ReplyBody> {
        let body = ReplyBody::new(self.steps.clone(), !self.streaming);
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

#[track_caller]
fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).expect("testkit: invalid status code")
}
