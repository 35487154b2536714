//! The errors the crate adds.

use std::fmt;

use tollgate_core::{BoxError, Failure};

/// The inner service failed without an answer (connect, reset, a timeout)
/// and its error carried no classification: this pairs it with one.
///
/// Its [`source`](std::error::Error::source) is the [`Failure`], so
/// `Failure::from_error` finds it; the original error stays available as
/// [`cause`](Self::cause) for logs. Upstream *answers* that are failures are
/// returned as a bare boxed `Failure`.
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

/// A [`ProviderConfig`](crate::ProviderConfig) a provider cannot use.
/// Messages name the setting, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidConfig {
    /// `api_base` is not an absolute `http://` or `https://` URL.
    #[error("api_base must be an absolute http:// or https:// URL without a query")]
    ApiBase,
    /// The provider needs a setting the configuration lacks.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A setting holds characters that cannot go where it is sent (a
    /// header, the URL).
    #[error("{0} contains characters that cannot be sent")]
    Invalid(String),
}
