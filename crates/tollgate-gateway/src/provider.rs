//! What answers a deployment: the upstream client or the mock provider.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tollgate_core::BoxError;

use crate::mock::MockBody;
use crate::upstream::TimedBody;

pin_project! {
    /// The body of a provider's response, whichever provider it was.
    #[project = ProviderBodyProj]
    pub(crate) enum ProviderBody {
        /// From a real upstream over HTTP.
        Http { #[pin] body: TimedBody<Incoming> },
        /// From the in-process mock provider.
        Mock { #[pin] body: TimedBody<MockBody> },
    }
}

impl Body for ProviderBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProviderBodyProj::Http { body } => body.poll_frame(cx),
            ProviderBodyProj::Mock { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProviderBody::Http { body } => body.is_end_stream(),
            ProviderBody::Mock { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProviderBody::Http { body } => body.size_hint(),
            ProviderBody::Mock { body } => body.size_hint(),
        }
    }
}
