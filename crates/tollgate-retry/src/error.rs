//! Error types.

use std::fmt;
use std::time::Duration;

use tollgate_core::BoxError;

/// The error a [`Retry`](crate::Retry) service returns when the last attempt
/// ended in an error and it stopped retrying.
///
/// It carries how many retries were made and why it stopped; its
/// [`source`](std::error::Error::source) is the last attempt's error, so
/// [`Failure::from_error`](tollgate_core::Failure::from_error) still finds the
/// class, message and `Retry-After` of what went wrong:
///
/// ```
/// use tollgate_core::{ErrorClass, Failure};
/// # fn handle(err: tollgate_core::BoxError) {
/// let failure = Failure::from_error(&*err); // the last attempt's failure
/// if let Some(gave_up) = err.downcast_ref::<tollgate_retry::GaveUp>() {
///     println!("{} after {} retries ({})", failure.class(), gave_up.retries(), gave_up.reason());
/// }
/// # }
/// ```
///
/// An attempt that ended in an error *response* (`Ok` with an error status)
/// is returned as that response, not as a `GaveUp`: the retries are then in
/// the response's [`AttemptedRetries`](tollgate_core::extensions::AttemptedRetries)
/// extension.
#[derive(Debug)]
pub struct GaveUp {
    retries: u32,
    reason: StopReason,
    source: BoxError,
}

impl GaveUp {
    pub(crate) fn new(retries: u32, reason: StopReason, source: BoxError) -> Self {
        GaveUp {
            retries,
            reason,
            source,
        }
    }

    /// How many retries were made (the attempts were one more).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Why the layer stopped.
    pub fn reason(&self) -> StopReason {
        self.reason
    }

    /// The last attempt's error.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            StopReason::NotRetryable => f.write_str("not retried: "),
            _ => write!(f, "gave up after {} retries: ", self.retries),
        }?;
        fmt::Display::fmt(&self.reason, f)
    }
}

impl std::error::Error for GaveUp {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Why the retry layer stopped and handed the last outcome up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The policy allows no retry for this failure (its class is not
    /// retryable, or the failure says so).
    NotRetryable,
    /// The policy's number of retries for this failure's class is used up.
    MaxRetries,
    /// The retry budget is empty: too many requests are being retried.
    BudgetExhausted,
    /// The upstream asked to wait longer than the configured maximum
    /// (`max_retry_after`); hammering it sooner would not help.
    RetryAfterTooLong(Duration),
    /// The wait before the next attempt would reach the request's
    /// [`Deadline`](tollgate_core::extensions::Deadline); stopping now leaves
    /// the time to a fallback.
    Deadline,
    /// The inner service failed while getting ready for a retry; the error is
    /// the service's, not an attempt's.
    ServiceFailed,
    /// A circuit breaker below rejected the attempt
    /// ([`Failure::is_circuit_open`](tollgate_core::Failure::is_circuit_open)):
    /// resending to it would only wait for its open time.
    CircuitOpen,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::NotRetryable => f.write_str("the failure is not retryable"),
            StopReason::MaxRetries => f.write_str("the retry limit is reached"),
            StopReason::BudgetExhausted => f.write_str("the retry budget is exhausted"),
            StopReason::RetryAfterTooLong(wait) => write!(
                f,
                "the upstream asked to wait {:.3}s, longer than allowed",
                wait.as_secs_f64()
            ),
            StopReason::Deadline => {
                f.write_str("the next attempt would start past the request's deadline")
            }
            StopReason::ServiceFailed => {
                f.write_str("the service failed while getting ready for a retry")
            }
            StopReason::CircuitOpen => f.write_str("a circuit breaker rejected the call"),
        }
    }
}

/// An invalid [`RetryConfig`](crate::RetryConfig): which field, and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry config: `{field}` {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The field at fault, as spelled in the config (`budget.ratio`).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
