//! [`Protocol`]: what an inbound API is, to the layer.

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, header};
use tollgate_core::extensions::NativeApi;
use tollgate_core::{ChatRequest, Failure};

/// An API clients speak, served by an OpenAI chat-completions service: how
/// its requests become chat requests, and how chat answers, chat streams
/// and failures become its answers.
pub trait Protocol: Send + Sync + 'static {
    /// Translates one stream.
    type Stream: TranslateStream;

    /// The provider API this one is, if it is one: its requests then travel
    /// beside their chat translation as a
    /// [`NativeRequest`](tollgate_core::extensions::NativeRequest), for a
    /// provider layer of the same API to send untouched.
    const NATIVE: Option<NativeApi> = None;

    /// The chat request for a request body of this API; a body that is not
    /// one is a [`BadRequest`](tollgate_core::ErrorClass::BadRequest)
    /// explaining what is wrong.
    ///
    /// A streamed request asks for the usage chunk (`stream_options.
    /// include_usage`): both APIs report usage at a stream's end.
    fn to_chat(body: &[u8]) -> Result<ChatRequest, Failure>;

    /// A complete `chat.completion` as this API's answer.
    fn answer(chat: &[u8]) -> Result<Bytes, Failure>;

    /// A translator for one stream of `chat.completion.chunk`s.
    fn stream() -> Self::Stream;

    /// The failure as this API's error body.
    fn error_body(failure: &Failure) -> Bytes;

    /// The failure as this API's complete error response: its status, its
    /// body and, when known, `retry-after`.
    fn error_response<B: From<Bytes>>(failure: &Failure) -> Response<B> {
        let mut response: Response<B> = failure.to_response();
        *response.body_mut() = B::from(Self::error_body(failure));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Turns a stream of OpenAI chunks into an API's event stream, one chunk at
/// a time: what it writes to `out` is complete SSE events.
pub trait TranslateStream: Send + 'static {
    /// One chunk (not an error event, not `[DONE]`).
    fn chunk(&mut self, chunk: &crate::ChatAnswer, out: &mut BytesMut);

    /// The stream ended as it should (`[DONE]` after a finish): the API's
    /// closing events.
    fn finish(&mut self, out: &mut BytesMut);

    /// The stream broke: the API's error event, which must never read as a
    /// clean end.
    fn fail(&mut self, failure: &Failure, out: &mut BytesMut);

    /// One event of a stream the upstream wrote in this API itself (a
    /// native answer, passed on untouched): the translator keeps what it
    /// needs to end the stream in the same terms ([`fail`](Self::fail)).
    /// Returns whether the event is the stream's last, cleanly or not. By
    /// default it keeps nothing and no event is the last.
    fn native_event(&mut self, event: &tollgate_core::sse::Event) -> bool {
        let _ = event;
        false
    }
}

/// Writes one named SSE event: `event: <name>` and its JSON data.
pub(crate) fn write_named(out: &mut BytesMut, name: &'static str, data: &serde_json::Value) {
    let data = serde_json::to_vec(data).unwrap_or_default();
    out.reserve(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // `serde_json` escapes line breaks inside strings: one data line.
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\n\n");
}
