//! [`CircuitOpen`]: the error an open breaker answers with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tollgate_core::{ErrorClass, Failure};

/// The breaker of `key` is open (or HALF_OPEN with every probe slot taken):
/// the call was rejected at once, without reaching the inner service.
///
/// Returned boxed in the service's `BoxError`; downcast to it, or let
/// [`Failure::from_error`] find its [`source`](std::error::Error::source): an
/// `upstream_unavailable` failure with subkind `circuit_open`, status 503 and
/// the same `retry_after`, ready to become an OpenAI-shaped response.
///
/// ```
/// use std::time::Duration;
/// use tollgate_breaker::CircuitOpen;
/// use tollgate_core::{BoxError, ErrorClass, Failure};
///
/// # let error: BoxError = CircuitOpen::new("gpt-4o/0".into(), Some(Duration::from_secs(3))).into();
/// if let Some(open) = error.downcast_ref::<CircuitOpen>() {
///     assert_eq!(open.key(), "gpt-4o/0");
///     assert_eq!(open.retry_after(), Some(Duration::from_secs(3)));
/// }
/// let failure = Failure::from_error(&*error);
/// assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
/// let response: http::Response<bytes::Bytes> = failure.to_response();
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["retry-after"], "3");
/// ```
#[derive(Debug, Clone)]
pub struct CircuitOpen {
    key: Arc<str>,
    retry_after: Option<Duration>,
    failure: Failure,
}

impl CircuitOpen {
    /// The error for `key`, which may be tried again after `retry_after`
    /// (`None`: unknown, probes are in flight).
    pub fn new(key: Arc<str>, retry_after: Option<Duration>) -> Self {
        let mut failure = Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the upstream is unavailable: its circuit breaker is open",
        )
        .with_subkind(Failure::CIRCUIT_OPEN)
        .with_status(StatusCode::SERVICE_UNAVAILABLE);
        if let Some(wait) = retry_after {
            failure = failure.with_retry_after(wait);
        }
        CircuitOpen {
            key,
            retry_after,
            failure,
        }
    }

    /// The key whose breaker is open (a deployment id, say).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How long until the breaker lets a probe through; `None` while
    /// HALF_OPEN with every probe slot taken (nobody knows yet).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The error as a classified [`Failure`] (also its `source()`).
    pub fn failure(&self) -> &Failure {
        &self.failure
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker for `{}` is open", self.key)?;
        if let Some(wait) = self.retry_after {
            write!(f, "; retry in {:.3}s", wait.as_secs_f64())?;
        }
        Ok(())
    }
}

impl std::error::Error for CircuitOpen {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}
