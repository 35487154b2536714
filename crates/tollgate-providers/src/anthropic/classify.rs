//! Anthropic's errors in Tollgate's classes.
//!
//! From Anthropic's API reference, "Errors"
//! (<https://docs.anthropic.com/en/api/errors>): the body is
//! `{"type":"error","error":{"type","message"},"request_id"}`, with types
//! `invalid_request_error` (400), `authentication_error` (401),
//! `billing_error` (402), `permission_error` (403), `not_found_error` (404),
//! `request_too_large` (413), `rate_limit_error` (429), `api_error` (500),
//! `timeout_error` (504) and `overloaded_error` (529); the same object can
//! arrive as an `error` event inside a stream ("Streaming Messages").

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tollgate_core::classify::retry_after_from_headers;
use tollgate_core::{ErrorClass, Failure, Scope};

use crate::failures::{
    message_or, model_not_found, overloaded, rejected_request, upstream_auth_failed,
    upstream_failed, upstream_timed_out, with_wait,
};

#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    error: ErrorObject,
}

/// The `error` object of a body or an `error` event.
#[derive(Deserialize, Default)]
pub(crate) struct ErrorObject {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// Classifies an error answer: its status, its `retry-after` and its body.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    let envelope: Envelope = serde_json::from_slice(body).unwrap_or_default();
    let failure = classify_object(status, &envelope.error);
    with_wait(
        failure,
        retry_after_from_headers(headers, SystemTime::now()),
    )
}

/// Classifies an `error` event's data.
pub(crate) fn classify_event(data: &[u8]) -> Failure {
    let envelope: Envelope = serde_json::from_slice(data).unwrap_or_default();
    let status = match envelope.error.kind.as_str() {
        "overloaded_error" => StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        "rate_limit_error" => StatusCode::TOO_MANY_REQUESTS,
        "invalid_request_error" => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    classify_object(status, &envelope.error)
}

fn classify_object(status: StatusCode, error: &ErrorObject) -> Failure {
    let kind = match error.kind.as_str() {
        "" => match status.as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            _ => "api_error",
        },
        kind => kind,
    };
    let failure = match kind {
        "invalid_request_error" => invalid_request(&error.message),
        "authentication_error" | "permission_error" => upstream_auth_failed(),
        "billing_error" => Failure::new(
            ErrorClass::InsufficientCredits,
            "the provider account has no credit left",
        )
        .with_scope(Scope::Account),
        "not_found_error" => model_not_found(&error.message),
        "request_too_large" => Failure::new(
            ErrorClass::BadRequest,
            "the request is larger than the provider accepts",
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        .with_scope(Scope::Request),
        "rate_limit_error" => Failure::new(
            ErrorClass::RateLimited,
            "the provider's rate limit was reached",
        )
        .with_scope(Scope::Provider),
        "overloaded_error" => overloaded(),
        "timeout_error" => upstream_timed_out(),
        _ => upstream_failed(),
    };
    failure.with_upstream_status(status)
}

/// A 400: the context window, a content-policy refusal, or a bad request —
/// told apart by the message, as Anthropic gives no code.
fn invalid_request(message: &str) -> Failure {
    let failure = rejected_request(
        message,
        &[
            "prompt is too long",
            "exceed context limit",
            "context window",
            "too many total text bytes",
        ],
    );
    let lower = message.to_ascii_lowercase();
    if failure.class() == ErrorClass::BadRequest
        && (lower.contains("content filtering") || lower.contains("usage policy"))
    {
        let text = message_or(message, "the provider rejected the request");
        return Failure::new(ErrorClass::ContentPolicy, text).with_scope(Scope::Model);
    }
    failure
}

/// An answer Claude declined to give (`stop_reason: "refusal"`, Anthropic's
/// "Handling stop reasons") before any content: a content-policy failure
/// that says so, which only `content_policy_fallbacks` may answer
/// instead.
pub(crate) fn refusal() -> Failure {
    Failure::new(
        ErrorClass::ContentPolicy,
        "Claude declined to answer this request (stop_reason: refusal): Anthropic's \
         safety classifiers stopped it",
    )
    .with_code("refusal")
    .with_scope(Scope::Model)
}
