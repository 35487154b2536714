//! Which breaker guards a request: key extractors.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::Request;
use tollgate_core::extensions::Target;

/// Picks the breaker that guards a request, by key.
///
/// `None` lets the request through unguarded: it is neither checked nor
/// counted. Keys should come from a bounded set (deployment ids, upstream
/// hosts); the registry holds one breaker per key it has seen, up to
/// [`BreakerConfig::max_keys`](crate::BreakerConfig::max_keys).
///
/// Implemented by [`WholeService`] (the default: one breaker for the whole
/// wrapped service), [`DeploymentKey`], [`HostKey`], [`FixedKey`], and
/// [`key_fn`] for closures.
pub trait KeyExtractor<B> {
    /// The key of `request`, borrowed from it (or from the extractor) where
    /// possible, so that the hot path does not allocate.
    fn extract<'a>(&'a self, request: &'a Request<B>) -> Option<Cow<'a, str>>;
}

/// One breaker for everything behind the service, named
/// [`WholeService::KEY`]: the default of
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer), so that a layer
/// wrapping any service guards it without being told how to key it.
///
/// To guard several upstreams separately, pick a key: [`HostKey`] on a
/// plain client, [`DeploymentKey`] under a balancer that sets the
/// [`Target`] extension, [`key_fn`] for anything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct WholeService;

impl WholeService {
    /// The key of the one breaker, as snapshots and [`CircuitOpen`](crate::CircuitOpen) show it.
    pub const KEY: &'static str = "service";
}

impl<B> KeyExtractor<B> for WholeService {
    fn extract<'a>(&'a self, _request: &'a Request<B>) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(WholeService::KEY))
    }
}

/// The deployment id of the request's [`Target`] extension (set by the
/// gateway's router or a balancer): one breaker per deployment. A request
/// without the extension is not guarded, so use it only below whatever
/// sets it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeploymentKey;

impl<B> KeyExtractor<B> for DeploymentKey {
    fn extract<'a>(&'a self, request: &'a Request<B>) -> Option<Cow<'a, str>> {
        request
            .extensions()
            .get::<Target>()
            .map(|target| Cow::Borrowed(&*target.deployment_id))
    }
}

/// The request URI's authority (`host:port`): one breaker per upstream, for
/// a plain HTTP client.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostKey;

impl<B> KeyExtractor<B> for HostKey {
    fn extract<'a>(&'a self, request: &'a Request<B>) -> Option<Cow<'a, str>> {
        request
            .uri()
            .authority()
            .map(|authority| Cow::Borrowed(authority.as_str()))
    }
}

/// One key for every request: a single breaker for everything behind the
/// service (one upstream, one gRPC channel).
#[derive(Debug, Clone)]
pub struct FixedKey(Arc<str>);

impl FixedKey {
    /// Every request gets `key`.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        FixedKey(key.into())
    }
}

impl<B> KeyExtractor<B> for FixedKey {
    fn extract<'a>(&'a self, _request: &'a Request<B>) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(&self.0))
    }
}

/// A key extractor from a closure returning an owned key (`String`,
/// `Cow<'static, str>`); for one fixed key, [`FixedKey`] avoids the
/// allocation.
///
/// ```
/// use tollgate_breaker::key_fn;
///
/// // One breaker per tenant header; requests without it are not guarded.
/// let per_tenant = key_fn(|req: &http::Request<String>| {
///     req.headers().get("x-tenant")?.to_str().ok().map(str::to_owned)
/// });
/// # let _ = per_tenant;
/// ```
pub fn key_fn<F>(f: F) -> FnKey<F> {
    FnKey(f)
}

/// A key extractor made from a closure by [`key_fn`].
#[derive(Clone, Copy)]
pub struct FnKey<F>(F);

impl<F> fmt::Debug for FnKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnKey").finish_non_exhaustive()
    }
}

impl<B, F, K> KeyExtractor<B> for FnKey<F>
where
    F: Fn(&Request<B>) -> Option<K>,
    K: Into<Cow<'static, str>>,
{
    fn extract<'a>(&'a self, request: &'a Request<B>) -> Option<Cow<'a, str>> {
        (self.0)(request).map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extractors_read_their_part_of_the_request() {
        let mut request = Request::new(());
        assert!(DeploymentKey.extract(&request).is_none());
        request.extensions_mut().insert(Target {
            model_group: Arc::from("g"),
            deployment_id: Arc::from("g/0"),
            upstream_model: Arc::from("m"),
        });
        assert_eq!(DeploymentKey.extract(&request).as_deref(), Some("g/0"));

        let request = Request::get("http://api.example:8080/v1").body(()).unwrap();
        assert_eq!(
            HostKey.extract(&request).as_deref(),
            Some("api.example:8080")
        );
        assert_eq!(
            key_fn(|_: &Request<()>| Some("x"))
                .extract(&request)
                .as_deref(),
            Some("x")
        );
        assert_eq!(FixedKey::new("y").extract(&request).as_deref(), Some("y"));
        assert_eq!(
            WholeService.extract(&request).as_deref(),
            Some(WholeService::KEY)
        );
    }
}
