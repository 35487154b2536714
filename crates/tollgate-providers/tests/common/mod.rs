//! What the layer tests share: a real HTTP client to the testkit upstream.

#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tollgate_core::{BoxError, RequestBody};
use tower::ServiceExt;

/// An HTTP/1.1 client over loopback.
pub type HttpClient = Client<HttpConnector, RequestBody>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A request to the layer as the gateway sends it: relative, with the
/// client's OpenAI body.
pub fn chat_request(body: &Value) -> Request<RequestBody> {
    Request::post("/chat/completions")
        .header("content-type", "application/json")
        .body(RequestBody::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Calls `service` and reads the whole answer.
pub async fn call<S, B>(
    service: S,
    request: Request<RequestBody>,
) -> Result<(Response<()>, Bytes), BoxError>
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>, Error = BoxError>,
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    let response = service.oneshot(request).await?;
    let (head, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok((Response::from_parts(head, ()), bytes))
}

/// The JSON of every data event of an OpenAI stream but `[DONE]`, and
/// whether it ended with `[DONE]`.
pub fn chunks(stream: &[u8]) -> (Vec<Value>, bool) {
    let text = std::str::from_utf8(stream).unwrap();
    let mut done = false;
    let mut out = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").expect("a data event");
        if data == "[DONE]" {
            done = true;
        } else {
            assert!(!done, "an event after [DONE]");
            out.push(serde_json::from_str(data).unwrap());
        }
    }
    (out, done)
}

/// The text of a stream's content deltas.
pub fn text_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// An in-memory body: one frame per chunk.
pub struct Chunks(pub std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .0
                .pop_front()
                .map(|c| Ok(http_body::Frame::data(c))),
        )
    }
}

/// `bytes` cut at `cuts` (positions, in any order).
pub fn split(bytes: &Bytes, mut cuts: Vec<usize>) -> std::collections::VecDeque<Bytes> {
    cuts.sort_unstable();
    let mut out = std::collections::VecDeque::new();
    let mut from = 0;
    for cut in cuts {
        out.push_back(bytes.slice(from..cut));
        from = cut;
    }
    out.push_back(bytes.slice(from..));
    out
}
