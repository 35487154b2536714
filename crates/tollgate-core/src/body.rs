//! The request body the stack passes around, and reading it at ingress.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};

use crate::chat::ChatRequest;
use crate::class::ErrorClass;
use crate::failure::Failure;

/// A request body read once at ingress and held in memory, so that retries
/// and fallbacks can resend it: cloning it clones a [`Bytes`] (a reference
/// count), never the content.
///
/// It is also the one source of truth for the request: a body made from a
/// [`ChatRequest`] carries that parsed view beside its bytes, so the layers
/// read the request's model, stream flag and limits from it without parsing
/// again, and a layer that changes the request ([`set_chat`](Self::set_chat):
/// the cost layer asking for the usage chunk, a fallback's continuation)
/// replaces bytes and view together. A plain body ([`new`](Self::new)) is
/// parsed once, by the first layer that needs the view
/// ([`parse_chat`](Self::parse_chat)), and carries the view from then on.
///
/// ```
/// use bytes::Bytes;
/// use tollgate_core::{ChatRequest, RequestBody};
///
/// let bytes = Bytes::from_static(br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
/// let mut body = RequestBody::new(bytes);
/// assert!(body.chat().is_none());
/// // Parsed once, on first need; the view stays with the body.
/// assert_eq!(body.parse_chat().map(|chat| chat.model()), Some("m"));
/// let with_usage = body.chat().unwrap().with_include_usage();
/// body.set_chat(with_usage);
/// assert!(body.chat().unwrap().include_usage());
/// assert_eq!(body.bytes(), Some(body.chat().unwrap().bytes()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestBody {
    /// The bytes not yet polled out of the body.
    data: Option<Bytes>,
    /// The parsed view of the bytes, when one was made: its bytes are
    /// `data`'s until the body is polled.
    chat: Option<Arc<ChatRequest>>,
}

impl RequestBody {
    /// A body of `bytes`, not parsed yet.
    pub fn new(bytes: Bytes) -> Self {
        RequestBody {
            data: (!bytes.is_empty()).then_some(bytes),
            chat: None,
        }
    }

    /// The body of a parsed request: its bytes, with the view that reads
    /// them.
    pub fn from_chat(chat: impl Into<Arc<ChatRequest>>) -> Self {
        let mut body = RequestBody::default();
        body.set_chat(chat);
        body
    }

    /// The bytes not yet polled out of the body.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }

    /// The parsed view of the body, if it carries one.
    pub fn chat(&self) -> Option<&Arc<ChatRequest>> {
        self.chat.as_ref()
    }

    /// The parsed view of the body, parsing its bytes as a chat request the
    /// first time it is asked for (a layer composed à la carte, given a
    /// plain body); `None` when they are not one. Once parsed, the view
    /// stays with the body (and its clones), for the layers below.
    pub fn parse_chat(&mut self) -> Option<&Arc<ChatRequest>> {
        if self.chat.is_none() {
            let parsed = ChatRequest::parse(self.data.clone()?).ok()?;
            // A parsed request's bytes are what goes upstream: the same
            // bytes, less the gateway's own members (body fallbacks).
            self.set_chat(parsed);
        }
        self.chat.as_ref()
    }

    /// Replaces the request with `chat`: the body's bytes become its bytes,
    /// so the two never disagree.
    pub fn set_chat(&mut self, chat: impl Into<Arc<ChatRequest>>) {
        let chat = chat.into();
        let bytes = chat.bytes();
        self.data = (!bytes.is_empty()).then(|| bytes.clone());
        self.chat = Some(chat);
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        RequestBody::new(bytes)
    }
}

impl From<ChatRequest> for RequestBody {
    fn from(chat: ChatRequest) -> Self {
        RequestBody::from_chat(chat)
    }
}

impl From<Arc<ChatRequest>> for RequestBody {
    fn from(chat: Arc<ChatRequest>) -> Self {
        RequestBody::from_chat(chat)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Reads a whole request body, refusing one over `limit` bytes.
///
/// A declared `Content-Length` over the limit is refused before a byte is
/// read; a body without one is cut off as soon as it passes the limit, so an
/// oversized upload never sits in memory.
pub async fn read_body_limited<B>(
    body: B,
    content_length: Option<u64>,
    limit: usize,
) -> Result<Bytes, Failure>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if content_length.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(_) => Err(Failure::new(
            ErrorClass::BadRequest,
            "the request body could not be read",
        )),
    }
}

fn too_large(limit: usize) -> Failure {
    Failure::new(
        ErrorClass::BadRequest,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
    .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
    .with_code("request_too_large")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn request_body_clones_share_bytes_and_yield_once() {
        let body = RequestBody::new(Bytes::from_static(b"{}"));
        let copy = body.clone();
        assert_eq!(copy.size_hint().exact(), Some(2));
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read, "{}");
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "{}");
        assert!(RequestBody::new(Bytes::new()).is_end_stream());
    }

    #[test]
    fn the_view_and_the_bytes_change_together() {
        let sent = r#"{"model":"m","stream":true,"fallbacks":["n"],"messages":[{"role":"user","content":"hi"}]}"#;
        let mut body = RequestBody::new(Bytes::from_static(sent.as_bytes()));
        let chat = body.parse_chat().expect("a chat request").clone();
        // The bytes are the parsed request's: the body's fallbacks are cut.
        assert_eq!(body.bytes(), Some(chat.bytes()));
        assert!(!chat.bytes().windows(9).any(|w| w == b"fallbacks"));
        // Parsed once: asking again gives the same view.
        assert!(Arc::ptr_eq(body.parse_chat().unwrap(), &chat));
        // A clone carries the view.
        assert!(Arc::ptr_eq(body.clone().chat().unwrap(), &chat));
        body.set_chat(chat.with_include_usage());
        assert!(body.chat().unwrap().include_usage());
        assert_eq!(body.bytes(), Some(body.chat().unwrap().bytes()));
        // Not a chat request: no view, the bytes untouched.
        let mut plain = RequestBody::new(Bytes::from_static(b"not json"));
        assert!(plain.parse_chat().is_none());
        assert_eq!(plain.bytes().map(|b| &b[..]), Some(&b"not json"[..]));
    }

    #[tokio::test]
    async fn limit_applies_to_declared_and_actual_length() {
        let small = Full::new(Bytes::from_static(b"hello"));
        assert_eq!(read_body_limited(small, Some(5), 5).await.unwrap(), "hello");

        let declared = Full::new(Bytes::from_static(b"hello"));
        let err = read_body_limited(declared, Some(50), 10).await.unwrap_err();
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);

        let undeclared = Full::new(Bytes::from(vec![b'x'; 11]));
        let err = read_body_limited(undeclared, None, 10).await.unwrap_err();
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    }
}
