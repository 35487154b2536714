//! The failures every native translation reports alike: a request the
//! provider cannot be sent, an unreadable answer or stream event, JSON
//! where a stream was asked for, the gateway's own credentials refused, an
//! unavailable provider; and the provider's message made safe for a client.

use std::time::Duration;

use http::StatusCode;
use tollgate_core::{ErrorClass, Failure, Scope, sanitize_message};

/// A request the provider cannot be sent: a `bad_request` naming the
/// parameter at fault, when there is one.
pub(crate) fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Failure {
    let failure = Failure::new(ErrorClass::BadRequest, message.into());
    match param {
        Some(param) => failure.with_param(param),
        None => failure,
    }
}

/// A complete answer that could not be read (or said nothing).
pub(crate) fn malformed_response() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "the provider's answer could not be read",
    )
    .with_subkind("malformed_response")
}

/// A stream event that could not be read.
pub(crate) fn malformed_event() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "the provider sent a stream event that could not be read",
    )
    .with_subkind("malformed_event")
}

/// A stream request answered with a complete JSON body: not what the
/// client can read.
pub(crate) fn stream_answered_as_json() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "the provider answered a stream request without a stream",
    )
    .with_subkind("malformed_response")
}

/// The provider refused the gateway's own credentials: not the client's
/// fault, so a 502 of its own code.
pub(crate) fn upstream_auth_failed() -> Failure {
    Failure::new(
        ErrorClass::Auth,
        "the provider rejected the gateway's credentials",
    )
    .with_scope(Scope::Key)
    .with_status(StatusCode::BAD_GATEWAY)
    .with_code("upstream_auth_failed")
}

/// The provider is overloaded: retryable, and another provider may answer.
pub(crate) fn overloaded() -> Failure {
    provider_unavailable("the provider is overloaded", "overloaded")
}

/// The provider timed out answering.
pub(crate) fn upstream_timed_out() -> Failure {
    provider_unavailable("the provider timed out", "upstream_timeout")
}

/// The provider failed on its side (a 5xx, an internal error).
pub(crate) fn upstream_failed() -> Failure {
    provider_unavailable("the upstream provider failed", "server_error")
}

fn provider_unavailable(message: &'static str, subkind: &'static str) -> Failure {
    Failure::new(ErrorClass::UpstreamUnavailable, message)
        .with_subkind(subkind)
        .with_scope(Scope::Provider)
}

/// The provider's model was not found (its own message when it gave one).
pub(crate) fn model_not_found(message: &str) -> Failure {
    Failure::new(
        ErrorClass::ModelNotFound,
        message_or(message, "the model was not found"),
    )
    .with_scope(Scope::Model)
}

/// The input does not fit the model's context window (`text` says so).
pub(crate) fn context_window(text: String) -> Failure {
    Failure::new(ErrorClass::ContextWindowExceeded, text)
        .with_param("messages")
        .with_scope(Scope::Model)
}

/// The provider's message, made safe for a client, or `default`.
pub(crate) fn message_or(message: &str, default: &'static str) -> String {
    let clean = sanitize_message(message);
    if clean.trim().is_empty() {
        default.to_owned()
    } else {
        clean
    }
}

/// `failure` with the wait the provider asked for, when a retry is what
/// it is for (a rate limit, an unavailable provider).
pub(crate) fn with_wait(failure: Failure, wait: Option<Duration>) -> Failure {
    match wait {
        Some(wait)
            if matches!(
                failure.class(),
                ErrorClass::RateLimited | ErrorClass::UpstreamUnavailable
            ) =>
        {
            failure.with_retry_after(wait)
        }
        _ => failure,
    }
}

/// A provider's 400 told apart by its message, as the provider gives no
/// code for it: the context window when the message says one of
/// `context_markers` (lowercase), else a bad request.
pub(crate) fn rejected_request(message: &str, context_markers: &[&str]) -> Failure {
    let lower = message.to_ascii_lowercase();
    let text = message_or(message, "the provider rejected the request");
    if context_markers.iter().any(|marker| lower.contains(marker)) {
        context_window(text)
    } else {
        Failure::new(ErrorClass::BadRequest, text).with_scope(Scope::Request)
    }
}
