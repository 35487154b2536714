//! The errors the layer adds.

use std::fmt;

use tollgate_core::{BoxError, Failure};

/// The inner service failed without an answer (connect, reset, a timeout)
/// and its error carried no classification: this pairs it with one.
///
/// Its [`source`](std::error::Error::source) is the [`Failure`], so
/// `Failure::from_error` finds it; the original error stays available as
/// [`cause`](Self::cause) for logs. Upstream *answers* that are failures are
/// returned as a bare boxed `Failure`, and an inner error that already holds
/// a `Failure` is passed on untouched.
#[derive(Debug)]
pub struct UpstreamError {
    failure: Failure,
    cause: BoxError,
}

impl UpstreamError {
    pub(crate) fn new(failure: Failure, cause: BoxError) -> Self {
        UpstreamError { failure, cause }
    }

    /// The classification.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// The inner service's own error.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.cause
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.failure, self.cause)
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

/// An [`OpenRouterConfig`](crate::OpenRouterConfig) that cannot be used.
/// Messages name the setting, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidConfig {
    /// `api_base` is not an absolute `http://` or `https://` URL.
    #[error("api_base must be an absolute http:// or https:// URL")]
    ApiBase,
    /// The key holds a character that cannot go in a header.
    #[error("api_key contains characters that cannot go in a header")]
    ApiKey,
    /// `http_referer` or `x_title` holds a character that cannot go in a
    /// header.
    #[error("{0} contains characters that cannot go in a header")]
    Header(&'static str),
    /// `max_body_bytes` is zero.
    #[error("max_body_bytes must be at least 1")]
    MaxBodyBytes,
}
