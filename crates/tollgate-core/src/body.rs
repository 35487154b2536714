//! The request body the stack passes around, and reading it at ingress.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};

use crate::class::ErrorClass;
use crate::failure::Failure;

/// A request body read once at ingress and held in memory, so that retries
/// and fallbacks can resend it: cloning it clones a [`Bytes`] (a reference
/// count), never the content.
#[derive(Debug, Clone, Default)]
pub struct RequestBody {
    data: Option<Bytes>,
}

impl RequestBody {
    /// A body of `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        RequestBody {
            data: (!bytes.is_empty()).then_some(bytes),
        }
    }

    /// The bytes not yet polled out of the body.
    pub fn bytes(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        RequestBody::new(bytes)
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
