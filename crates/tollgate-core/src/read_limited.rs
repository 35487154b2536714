//! [`ReadLimited`]: a whole response body read from inside a `poll`, up to
//! a limit — the form a layer's response future needs (the async
//! [`read_body_limited`](crate::read_body_limited) is its twin for
//! handlers).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::Body;

use crate::class::ErrorClass;
use crate::failure::{BoxError, Failure};

/// Reads a body to its end, at most `limit` bytes of data (trailers are
/// skipped). A body that arrives in one frame — most complete answers — is
/// handed back as that frame, without a copy.
///
/// ```
/// use std::pin::pin;
/// use std::task::{Context, Poll, Waker};
///
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tollgate_core::{ReadLimited, ReadLimitedError};
///
/// let mut cx = Context::from_waker(Waker::noop());
/// let mut body = pin!(Full::new(Bytes::from_static(b"{\"ok\":true}")));
/// let mut read = ReadLimited::new(64);
/// let Poll::Ready(Ok(bytes)) = read.poll_read(body.as_mut(), &mut cx) else { panic!() };
/// assert_eq!(bytes, "{\"ok\":true}");
///
/// let mut body = pin!(Full::new(Bytes::from_static(b"too long for four")));
/// let Poll::Ready(Err(ReadLimitedError::TooLarge)) = ReadLimited::new(4).poll_read(body.as_mut(), &mut cx) else { panic!() };
/// ```
#[derive(Debug)]
pub struct ReadLimited {
    first: Option<Bytes>,
    rest: BytesMut,
    len: usize,
    limit: usize,
}

/// Why [`ReadLimited`] gave up.
#[derive(Debug)]
pub enum ReadLimitedError {
    /// More than the limit arrived: [`ReadLimited::too_large`] is the
    /// failure it stands for.
    TooLarge,
    /// The body failed.
    Body(BoxError),
}

impl ReadLimited {
    /// A reader of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ReadLimited {
            first: None,
            rest: BytesMut::new(),
            len: 0,
            limit,
        }
    }

    /// Polls `body` until it ends (the whole data), fails, or passes the
    /// limit.
    pub fn poll_read<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Bytes, ReadLimitedError>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        loop {
            let data = match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_trailers) => continue,
                },
                Some(Err(error)) => return Poll::Ready(Err(ReadLimitedError::Body(error.into()))),
                None => {
                    let bytes = match self.first.take() {
                        Some(first) => first,
                        None => self.rest.split().freeze(),
                    };
                    return Poll::Ready(Ok(bytes));
                }
            };
            self.len += data.len();
            if self.len > self.limit {
                return Poll::Ready(Err(ReadLimitedError::TooLarge));
            }
            if self.first.is_none() && self.rest.is_empty() {
                self.first = Some(data);
            } else {
                if let Some(first) = self.first.take() {
                    self.rest.reserve(first.len() + data.len());
                    self.rest.extend_from_slice(&first);
                }
                self.rest.extend_from_slice(&data);
            }
        }
    }

    /// The failure an upstream answer over the limit stands for.
    pub fn too_large() -> Failure {
        Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the upstream response exceeded the size limit",
        )
        .with_subkind("response_too_large")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::pin;
    use std::task::Waker;

    use http_body::Frame;

    use super::*;

    /// A body that hands out scripted frames.
    struct Frames(VecDeque<Result<Frame<Bytes>, BoxError>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    #[test]
    fn frames_are_joined_trailers_skipped_and_the_limit_held() {
        let mut cx = Context::from_waker(Waker::noop());
        let parts = || {
            Frames(VecDeque::from([
                Ok(Frame::data(Bytes::from_static(b"ab"))),
                Ok(Frame::trailers(http::HeaderMap::new())),
                Ok(Frame::data(Bytes::from_static(b"cd"))),
            ]))
        };
        let mut body = pin!(parts());
        let read = ReadLimited::new(4).poll_read(body.as_mut(), &mut cx);
        assert!(matches!(read, Poll::Ready(Ok(ref b)) if b == "abcd"));
        let mut body = pin!(parts());
        let read = ReadLimited::new(3).poll_read(body.as_mut(), &mut cx);
        assert!(matches!(read, Poll::Ready(Err(ReadLimitedError::TooLarge))));
        let mut body = pin!(Frames(VecDeque::from([Err("reset".into())])));
        let read = ReadLimited::new(3).poll_read(body.as_mut(), &mut cx);
        assert!(matches!(read, Poll::Ready(Err(ReadLimitedError::Body(_)))));
        assert_eq!(
            ReadLimited::too_large().subkind(),
            Some("response_too_large")
        );
    }
}
