//! Error types.

use std::fmt;

use tollgate_core::BoxError;

/// The error a [`Fallback`](crate::Fallback) service returns when it stopped
/// with an error: the last target's error, or a failure of its own (no target
/// available, the deadline passed).
///
/// It carries how many fallback groups were tried and why the cascade
/// stopped; its [`source`](std::error::Error::source) is the last error, so
/// [`Failure::from_error`](tollgate_core::Failure::from_error) still finds the
/// class, message and `Retry-After` of what went wrong:
///
/// ```
/// use tollgate_core::Failure;
/// # fn handle(err: tollgate_core::BoxError) {
/// let failure = Failure::from_error(&*err); // the last target's failure
/// if let Some(gave_up) = err.downcast_ref::<tollgate_fallback::GaveUp>() {
///     println!("{} after {} fallbacks ({})", failure.class(), gave_up.fallbacks(), gave_up.reason());
/// }
/// # }
/// ```
///
/// A target that answered with an error *response* (`Ok` with an error
/// status, from a service that does not turn those into errors) is returned
/// as that response, with the fallbacks in its
/// [`AttemptedFallbacks`](tollgate_core::extensions::AttemptedFallbacks)
/// extension.
#[derive(Debug)]
pub struct GaveUp {
    fallbacks: u32,
    reason: StopReason,
    source: BoxError,
}

impl GaveUp {
    pub(crate) fn new(fallbacks: u32, reason: StopReason, source: BoxError) -> Self {
        GaveUp {
            fallbacks,
            reason,
            source,
        }
    }

    /// How many fallback groups were tried (the client's own group not
    /// counted).
    pub fn fallbacks(&self) -> u32 {
        self.fallbacks
    }

    /// Why the cascade stopped.
    pub fn reason(&self) -> StopReason {
        self.reason
    }

    /// The last error.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up after {} fallbacks: {}",
            self.fallbacks, self.reason
        )
    }
}

impl std::error::Error for GaveUp {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Why the cascade stopped and handed the last outcome up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// No rule sends this failure to another group: a bad request, a
    /// content-policy refusal without `content_policy_fallbacks`, a failure
    /// that says another target will not help.
    NotEligible,
    /// The failing group's lists hold no group left to try.
    Exhausted,
    /// `max_fallbacks` groups have been tried.
    MaxFallbacks,
    /// The request's [`Deadline`](tollgate_core::extensions::Deadline) has
    /// passed: no other group is started, and a call still running is given
    /// up.
    Deadline,
    /// No group could be tried at all: the client's group and its fallbacks
    /// are all unavailable (their circuit breakers are open).
    NoneAvailable,
    /// The inner service failed while getting ready for the next group; the
    /// error is the service's, not a target's.
    ServiceFailed,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::NotEligible => "no fallback rule applies to the failure",
            StopReason::Exhausted => "no fallback group is left to try",
            StopReason::MaxFallbacks => "the fallback limit is reached",
            StopReason::Deadline => "the request's deadline has passed",
            StopReason::NoneAvailable => "no model group of the cascade is available",
            StopReason::ServiceFailed => "the service failed while getting ready for a fallback",
        })
    }
}

/// An invalid [`FallbackConfig`](crate::FallbackConfig): which field, and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fallback config: `{field}` {reason}")]
pub struct ConfigError {
    field: String,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field at fault, as spelled in the config (`fallbacks[gpt-4o]`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
