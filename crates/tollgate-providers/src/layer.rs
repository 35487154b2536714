//! [`ProviderLayer`] and its service, [`Provider`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tollgate_core::extensions::NativeRequest;
use tollgate_core::{BoxError, Redactor};
use tower::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::buffered::BufferedBody;
use crate::future::ResponseFuture;
use crate::protocol::Protocol;

/// The largest complete (non-streaming) answer read, in bytes: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Puts a provider's native API behind OpenAI's chat-completions shape:
/// the OpenAI request the layer gets goes out in the provider's protocol
/// `P`, and what comes back is an OpenAI answer — a `chat.completion`, or a
/// stream of `chat.completion.chunk`s translated event by event — or an
/// `Err` holding a classified [`Failure`](tollgate_core::Failure).
///
/// Built once from a protocol (itself built from a
/// [`ProviderConfig`](crate::ProviderConfig)); every service it makes
/// shares it.
pub struct ProviderLayer<P> {
    shared: Shared<P>,
}

pub(crate) struct Shared<P> {
    pub(crate) protocol: Arc<P>,
    pub(crate) max_body_bytes: usize,
    clock: Clock,
}

impl<P> Shared<P> {
    /// Now, in Unix seconds, by the layer's clock.
    pub(crate) fn created(&self) -> u64 {
        (self.clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl<P> Clone for Shared<P> {
    fn clone(&self) -> Self {
        Shared {
            protocol: self.protocol.clone(),
            max_body_bytes: self.max_body_bytes,
            clock: self.clock.clone(),
        }
    }
}

impl<P: Protocol> ProviderLayer<P> {
    /// A layer speaking `protocol`.
    pub fn new(protocol: P) -> Self {
        ProviderLayer {
            shared: Shared {
                protocol: Arc::new(protocol),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                clock: Arc::new(SystemTime::now),
            },
        }
    }

    /// Bounds the complete answers read, in bytes (default
    /// [`DEFAULT_MAX_BODY_BYTES`], at least 1); a larger one fails as
    /// `upstream_unavailable`.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.shared.max_body_bytes = max.max(1);
        self
    }

    /// Reads the time answers are stamped with (`created`) from `clock`
    /// instead of the system clock.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.shared.clock = Arc::new(clock);
        self
    }

    /// The protocol.
    pub fn protocol(&self) -> &P {
        &self.shared.protocol
    }
}

impl<P> Clone for ProviderLayer<P> {
    fn clone(&self) -> Self {
        ProviderLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<P: fmt::Debug> fmt::Debug for ProviderLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderLayer")
            .field("protocol", &self.shared.protocol)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl<S, P> Layer<S> for ProviderLayer<P> {
    type Service = Provider<S, P>;

    fn layer(&self, inner: S) -> Provider<S, P> {
        Provider {
            inner,
            shared: Arc::new(self.shared.clone()),
        }
    }
}

/// Translates requests to, and answers from, a native provider API; built
/// by [`ProviderLayer`].
pub struct Provider<S, P> {
    inner: S,
    shared: Arc<Shared<P>>,
}

impl<S, P> Provider<S, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The protocol.
    pub fn protocol(&self) -> &P {
        &self.shared.protocol
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The service that answers OpenAI embeddings requests through this
    /// provider's embeddings API, over a clone of the inner service, with
    /// this one's protocol, body limit and clock.
    #[cfg(any(feature = "gemini", feature = "bedrock"))]
    pub fn embeddings(&self) -> crate::embeddings::Embeddings<S, P>
    where
        S: Clone,
    {
        crate::embeddings::Embeddings::new(self.inner.clone(), self.shared.clone())
    }
}

impl<S: Clone, P> Clone for Provider<S, P> {
    fn clone(&self) -> Self {
        Provider {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, P: fmt::Debug> fmt::Debug for Provider<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("inner", &self.inner)
            .field("protocol", &self.shared.protocol)
            .finish()
    }
}

impl<S, P, ReqB, ResB> Service<Request<ReqB>> for Provider<S, P>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    P: Protocol,
    ReqB: BufferedBody,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResB, P::Stream>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResB, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let (mut head, body) = request.into_parts();
        let created = self.shared.created();
        let prepared = self
            .shared
            .protocol
            .prepare(&mut head, &body.buffered(), created);
        match prepared {
            Ok((translated, exchange)) => {
                // The client's own request in the provider's API, when it
                // came with one: sent untouched but for model and stream.
                let translated = head
                    .extensions
                    .get::<NativeRequest>()
                    .and_then(|native| self.shared.protocol.native(native, &exchange))
                    .unwrap_or(translated);
                // What a stream's error event is redacted with.
                let redactor = head.extensions.get::<Redactor>().cloned();
                let request = Request::from_parts(head, ReqB::from_bytes(translated));
                ResponseFuture::new(
                    self.inner.call(request),
                    self.shared.clone(),
                    exchange,
                    redactor,
                )
            }
            Err(failure) => ResponseFuture::failed(failure),
        }
    }
}
