//! [`GoogleAuthLayer`]: a service account's bearer token on every request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tollgate_core::BoxError;
use tower::Layer;
use tower_service::Service;

use super::account::ServiceAccount;
use super::token::TokenCache;
use crate::buffered::BufferedBody;

/// Adds `Authorization: Bearer <token>` to every request: the access token
/// of a service account, obtained with the JWT-bearer grant through the
/// inner service itself (so the token endpoint goes through the same client
/// — and in tests, the same fake), cached, shared by every service the
/// layer makes and refreshed before it expires.
///
/// A token that cannot be obtained fails the request with a classified
/// [`Failure`](tollgate_core::Failure): `auth` when Google refuses the
/// account, `upstream_unavailable` when the endpoint fails or cannot be
/// reached. Neither the token nor the signed assertion is ever in an error
/// or a `Debug` output.
#[derive(Clone)]
pub struct GoogleAuthLayer {
    cache: Arc<TokenCache>,
}

impl GoogleAuthLayer {
    /// A layer authenticating as `account`, with a token of its own.
    pub fn new(account: ServiceAccount) -> Self {
        GoogleAuthLayer {
            cache: Arc::new(TokenCache::new(account)),
        }
    }

    /// A layer authenticating as `account` that shares its token with every
    /// other live layer made so for the same account (same email, token URI
    /// and key): the deployments of one credential, or a config reload's
    /// new deployments and the old ones still serving, ask for one token.
    pub fn shared(account: ServiceAccount) -> Self {
        static LIVE: Mutex<Vec<([u8; 32], Weak<TokenCache>)>> = Mutex::new(Vec::new());
        let identity = account.identity();
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|(_, cache)| cache.strong_count() > 0);
        if let Some(cache) = live
            .iter()
            .find(|(id, _)| *id == identity)
            .and_then(|(_, cache)| cache.upgrade())
        {
            return GoogleAuthLayer { cache };
        }
        let cache = Arc::new(TokenCache::new(account));
        live.push((identity, Arc::downgrade(&cache)));
        GoogleAuthLayer { cache }
    }
}

impl fmt::Debug for GoogleAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAuthLayer")
            .field("account", self.cache.account())
            .finish()
    }
}

impl<S> Layer<S> for GoogleAuthLayer {
    type Service = GoogleAuth<S>;

    fn layer(&self, inner: S) -> GoogleAuth<S> {
        GoogleAuth {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// Authenticates requests as a service account; built by
/// [`GoogleAuthLayer`].
#[derive(Clone)]
pub struct GoogleAuth<S> {
    inner: S,
    cache: Arc<TokenCache>,
}

impl<S> GoogleAuth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for GoogleAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("inner", &self.inner)
            .field("account", self.cache.account())
            .finish()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for GoogleAuth<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    ReqB: BufferedBody + Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        // The ready service answers this request; the token request (if
        // any) goes through a fresh clone.
        let token_client = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, token_client.clone());
        let cache = self.cache.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let header = cache.authorization(token_client).await?;
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, header);
                inner.call(request).await.map_err(Into::into)
            }),
        }
    }
}

/// The future of [`GoogleAuth`]: the token, then the inner call.
pub struct ResponseFuture<B> {
    inner: Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>,
}

impl<B> Future for ResponseFuture<B> {
    type Output = Result<Response<B>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B> fmt::Debug for ResponseFuture<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
