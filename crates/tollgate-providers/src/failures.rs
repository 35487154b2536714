//! The failures every protocol reports alike: an unreadable answer or
//! stream event, JSON where a stream was asked for, the gateway's own
//! credentials refused; and the provider's message made safe for a client.

use http::StatusCode;
use tollgate_core::{ErrorClass, Failure, Scope, sanitize_message};

/// A complete answer that could not be read.
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

/// The provider refused the gateway's credentials: a 502, not the client's
/// fault.
pub(crate) fn upstream_auth_failed() -> Failure {
    Failure::new(
        ErrorClass::Auth,
        "the provider rejected the gateway's credentials",
    )
    .with_scope(Scope::Key)
    .with_status(StatusCode::BAD_GATEWAY)
    .with_code("upstream_auth_failed")
}

/// The provider timed out answering.
pub(crate) fn upstream_timed_out() -> Failure {
    Failure::new(ErrorClass::UpstreamUnavailable, "the provider timed out")
        .with_subkind("upstream_timeout")
        .with_scope(Scope::Provider)
}

/// The provider failed on its side (a 5xx, an internal error).
pub(crate) fn upstream_failed() -> Failure {
    Failure::new(
        ErrorClass::UpstreamUnavailable,
        "the upstream provider failed",
    )
    .with_subkind("server_error")
    .with_scope(Scope::Provider)
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
