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
use tollgate_core::{ErrorClass, Failure, Scope, sanitize_message};

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

/// Classifies a stream event that holds an `error` object.
pub(crate) fn classify_event(data: &[u8]) -> Failure {
    let error = envelope(data).error;
    let status = error
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let failure = classify_object(status, &error);
    match retry_delay(&error) {
        Some(wait) if failure.class() == ErrorClass::RateLimited => failure.with_retry_after(wait),
        _ => failure,
    }
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
        _ if key_refused => auth(),
        "UNAUTHENTICATED" | "PERMISSION_DENIED" => auth(),
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            invalid_argument(&error.message)
        }
        "NOT_FOUND" => Failure::new(
            ErrorClass::ModelNotFound,
            message_or(&error.message, "the model was not found"),
        )
        .with_scope(Scope::Model),
        "RESOURCE_EXHAUSTED" => Failure::new(
            ErrorClass::RateLimited,
            "the provider's rate limit or quota was reached",
        )
        .with_scope(Scope::Provider),
        "UNAVAILABLE" => Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the provider is overloaded",
        )
        .with_subkind("overloaded")
        .with_scope(Scope::Provider),
        "DEADLINE_EXCEEDED" => {
            Failure::new(ErrorClass::UpstreamUnavailable, "the provider timed out")
                .with_subkind("upstream_timeout")
                .with_scope(Scope::Provider)
        }
        _ => Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the upstream provider failed",
        )
        .with_subkind("server_error")
        .with_scope(Scope::Provider),
    };
    failure.with_upstream_status(status)
}

/// The gateway's own key was refused: not the client's fault.
fn auth() -> Failure {
    Failure::new(
        ErrorClass::Auth,
        "the provider rejected the gateway's credentials",
    )
    .with_scope(Scope::Key)
    .with_status(StatusCode::BAD_GATEWAY)
    .with_code("upstream_auth_failed")
}

/// A 400: the context window or a bad request, told apart by the message,
/// as Gemini gives both `INVALID_ARGUMENT`.
fn invalid_argument(message: &str) -> Failure {
    let lower = message.to_ascii_lowercase();
    let text = message_or(message, "the provider rejected the request");
    if lower.contains("exceeds the maximum number of tokens")
        || lower.contains("input token count")
        || lower.contains("context window")
    {
        Failure::new(ErrorClass::ContextWindowExceeded, text)
            .with_param("messages")
            .with_scope(Scope::Model)
    } else {
        Failure::new(ErrorClass::BadRequest, text).with_scope(Scope::Request)
    }
}

/// The provider's message, made safe for a client, or `default`.
fn message_or(message: &str, default: &'static str) -> String {
    let clean = sanitize_message(message);
    if clean.trim().is_empty() {
        default.to_owned()
    } else {
        clean
    }
}
