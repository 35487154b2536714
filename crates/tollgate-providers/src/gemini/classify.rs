//! Gemini's errors in Tollgate's classes.
//!
//! From the Gemini API's "Troubleshooting" page, error codes
//! (<https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes>),
//! and Google's error model (<https://cloud.google.com/apis/design/errors>):
//! the body is `{"error":{"code","message","status","details"}}` with
//! statuses `INVALID_ARGUMENT` / `FAILED_PRECONDITION` (400),
//! `PERMISSION_DENIED` (403), `NOT_FOUND` (404), `RESOURCE_EXHAUSTED`
//! (429), `INTERNAL` (500), `UNAVAILABLE` (503) and `DEADLINE_EXCEEDED`
//! (504); `details` may hold a `google.rpc.RetryInfo` (`retryDelay`, such
//! as `"37s"`) and a `google.rpc.ErrorInfo` (`reason`, such as
//! `API_KEY_INVALID`, which comes with a 400). The same object can arrive
//! as an event inside a stream.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tollgate_core::classify::retry_after_from_headers;
use tollgate_core::{ErrorClass, Failure, Scope};

use crate::failures::{
    model_not_found, overloaded, rejected_request, upstream_auth_failed, upstream_failed,
    upstream_timed_out, with_wait,
};

#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    error: ErrorObject,
}

#[derive(Deserialize, Default)]
struct ErrorObject {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

/// Classifies an error answer: its status, its `retry-after` and its body.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    let error = envelope(body).error;
    let failure = classify_object(status, &error);
    let wait = retry_delay(&error).or_else(|| retry_after_from_headers(headers, SystemTime::now()));
    with_wait(failure, wait)
}

/// Classifies a stream event that holds an `error` object.
pub(crate) fn classify_event(data: &[u8]) -> Failure {
    let error = envelope(data).error;
    let status = error
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let failure = classify_object(status, &error);
    with_wait(failure, retry_delay(&error))
}

/// The body's error object; some endpoints wrap it in a one-element array.
fn envelope(body: &[u8]) -> Envelope {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(mut items)) if !items.is_empty() => {
            serde_json::from_value(items.swap_remove(0)).unwrap_or_default()
        }
        Ok(value) => serde_json::from_value(value).unwrap_or_default(),
        Err(_) => Envelope::default(),
    }
}

/// The `details` entry of type `google.rpc.<kind>`.
fn detail<'a>(error: &'a ErrorObject, kind: &str) -> Option<&'a Value> {
    error.details.iter().find(|detail| {
        detail["@type"]
            .as_str()
            .is_some_and(|t| t.strip_prefix("type.googleapis.com/google.rpc.") == Some(kind))
    })
}

/// `RetryInfo.retryDelay` (`"37s"`, `"0.5s"`).
fn retry_delay(error: &ErrorObject) -> Option<Duration> {
    let delay = detail(error, "RetryInfo")?["retryDelay"].as_str()?;
    let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

fn classify_object(status: StatusCode, error: &ErrorObject) -> Failure {
    let kind = match error.status.as_str() {
        "" => match status.as_u16() {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        },
        kind => kind,
    };
    let key_refused = detail(error, "ErrorInfo")
        .and_then(|info| info["reason"].as_str())
        .is_some_and(|reason| reason.starts_with("API_KEY"))
        || error.message.contains("API key not valid")
        || error.message.contains("API key expired");
    let failure = match kind {
        // Gemini answers an invalid key with a 400.
        "INVALID_ARGUMENT" if key_refused => upstream_auth_failed(),
        "UNAUTHENTICATED" | "PERMISSION_DENIED" => upstream_auth_failed(),
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            invalid_argument(&error.message)
        }
        "NOT_FOUND" => model_not_found(&error.message),
        "RESOURCE_EXHAUSTED" => Failure::new(
            ErrorClass::RateLimited,
            "the provider's rate limit or quota was reached",
        )
        .with_scope(Scope::Provider),
        "UNAVAILABLE" => overloaded(),
        "DEADLINE_EXCEEDED" => upstream_timed_out(),
        _ => upstream_failed(),
    };
    failure.with_upstream_status(status)
}

/// A 400: the context window or a bad request, told apart by the message,
/// as Gemini gives both `INVALID_ARGUMENT`.
fn invalid_argument(message: &str) -> Failure {
    rejected_request(
        message,
        &[
            "exceeds the maximum number of tokens",
            "input token count",
            "context window",
        ],
    )
}
