//! What the cascade hands up: the answered response, marked with the path
//! it took, and the failures of a cascade that could not answer.

use http::{HeaderValue, Response, StatusCode};
use tollgate_core::extensions::{AttemptedFallbacks, ModelGroup};
use tollgate_core::{BoxError, ErrorClass, Failure, TimeoutKind};

use crate::ATTEMPTED_FALLBACKS;
use crate::error::{GaveUp, StopReason};
use crate::state::{Cascade, Group};

/// The failure of a request whose deadline passed.
pub(crate) fn past_deadline() -> Failure {
    Failure::timeout(TimeoutKind::Total).with_subkind("deadline")
}

/// The fallbacks made and the group tried last.
pub(crate) fn progress(cascade: Option<&Cascade>) -> (u32, Option<Group>) {
    cascade.map_or((0, None), |cascade| {
        (cascade.fallbacks(), Some(cascade.current().clone()))
    })
}

/// Records the path taken on the response handed up: the fallbacks made and
/// the group that answered.
pub(crate) fn answered<B>(
    mut response: Response<B>,
    fallbacks: u32,
    group: Option<Group>,
) -> Response<B> {
    if fallbacks > 0 {
        tracing::debug!(
            group = group.as_deref().unwrap_or(""),
            fallbacks,
            "fallback: a fallback group answered"
        );
    }
    let extensions = response.extensions_mut();
    extensions.insert(AttemptedFallbacks(fallbacks));
    if let Some(group) = group {
        extensions.insert(ModelGroup(group));
    }
    let value = match fallbacks {
        0 => HeaderValue::from_static("0"),
        n => HeaderValue::from(n),
    };
    response.headers_mut().insert(ATTEMPTED_FALLBACKS, value);
    response
}

/// The failure returned when no group at all could be tried.
pub(crate) fn none_available(retry_after: Option<std::time::Duration>) -> BoxError {
    let mut failure = Failure::new(
        ErrorClass::UpstreamUnavailable,
        "no deployment of the requested model or of its fallbacks is available",
    )
    .with_subkind("no_target_available")
    .with_status(StatusCode::SERVICE_UNAVAILABLE);
    if let Some(wait) = retry_after {
        failure = failure.with_retry_after(wait);
    }
    GaveUp::new(0, StopReason::NoneAvailable, failure.into()).into()
}

pub(crate) fn polled_after_completion() -> BoxError {
    Failure::new(
        ErrorClass::Internal,
        "the response future was polled after it completed",
    )
    .into()
}
