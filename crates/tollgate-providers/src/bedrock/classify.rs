//! Bedrock's errors in Tollgate's classes.
//!
//! From the Amazon Bedrock API Reference, "Converse" and
//! "ConverseStream" — Errors, and "Common Errors": the body is
//! `{"message": "..."}`, the type in the `x-amzn-errortype` header
//! (`ValidationException:http://internal.amazon.com/...`; some front ends
//! put it in the body's `__type`). Types: `ThrottlingException` (429),
//! `ServiceQuotaExceededException` (400/429), `ValidationException` (400),
//! `AccessDeniedException` (403), `UnrecognizedClientException`,
//! `InvalidSignatureException`, `ExpiredTokenException` (403),
//! `ResourceNotFoundException` (404), `ModelTimeoutException` (408),
//! `ModelErrorException` (424), `ModelNotReadyException` (429),
//! `InternalServerException` (500), `ServiceUnavailableException` (503).
//! In a stream the same types arrive as `exception` messages whose
//! `:exception-type` starts lowercase (`throttlingException`,
//! `modelStreamErrorException`...).

use std::time::SystemTime;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tollgate_core::classify::retry_after_from_headers;
use tollgate_core::{ErrorClass, Failure, Scope, sanitize_message};

use crate::failures::{
    model_not_found, rejected_request, upstream_auth_failed, upstream_failed, upstream_timed_out,
    with_wait,
};

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default, alias = "Message")]
    message: String,
    #[serde(default, rename = "__type")]
    kind: Option<String>,
}

/// Classifies an error answer: its status, `x-amzn-errortype`,
/// `retry-after` and body.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let kind = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .or(parsed.kind.as_deref())
        .map(type_name)
        .unwrap_or_default();
    with_wait(
        classify_kind(status, kind, &parsed.message),
        retry_after_from_headers(headers, SystemTime::now()),
    )
}

/// Classifies an `exception` message of a stream: its `:exception-type`
/// and its JSON payload.
pub(crate) fn classify_exception(kind: &str, payload: &[u8]) -> Failure {
    let parsed: ErrorBody = serde_json::from_slice(payload).unwrap_or_default();
    let kind = capitalised(kind);
    let status = match kind.as_str() {
        "ThrottlingException" | "ModelNotReadyException" => StatusCode::TOO_MANY_REQUESTS,
        "ValidationException" => StatusCode::BAD_REQUEST,
        "ServiceUnavailableException" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    classify_kind(status, &kind, &parsed.message)
}

/// `ValidationException` of `ValidationException:http://...` or of a
/// namespaced `com.amazon.coral#ValidationException`.
fn type_name(header: &str) -> &str {
    let name = header.split(':').next().unwrap_or_default();
    name.rsplit('#').next().unwrap_or(name)
}

fn capitalised(kind: &str) -> String {
    let mut chars = kind.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

fn classify_kind(status: StatusCode, kind: &str, message: &str) -> Failure {
    let kind = match kind {
        "" => match status.as_u16() {
            400 => "ValidationException",
            401 | 403 => "AccessDeniedException",
            404 => "ResourceNotFoundException",
            408 => "ModelTimeoutException",
            429 => "ThrottlingException",
            503 => "ServiceUnavailableException",
            _ => "InternalServerException",
        },
        kind => kind,
    };
    let failure = match kind {
        "ValidationException" => validation(message),
        "ThrottlingException" | "ServiceQuotaExceededException" => Failure::new(
            ErrorClass::RateLimited,
            "the provider's rate limit was reached",
        )
        .with_scope(Scope::Provider),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException" => upstream_auth_failed(),
        "ResourceNotFoundException" => model_not_found(message),
        "ServiceUnavailableException" => Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the provider is unavailable",
        )
        .with_subkind("overloaded")
        .with_scope(Scope::Provider),
        "ModelNotReadyException" => Failure::new(
            ErrorClass::UpstreamUnavailable,
            "the model is not ready to serve",
        )
        .with_subkind("overloaded")
        .with_scope(Scope::Model),
        "ModelTimeoutException" => upstream_timed_out(),
        _ => upstream_failed(),
    };
    failure.with_upstream_status(status)
}

/// A `ValidationException`: the context window or a bad request, told
/// apart by the message (Bedrock gives no code).
fn validation(message: &str) -> Failure {
    rejected_request(
        message,
        &[
            "too long",
            "context length",
            "context window",
            "too many input tokens",
            "exceeds the maximum",
        ],
    )
}

/// A guardrail's or content filter's refusal (`stopReason`
/// `guardrail_intervened` / `content_filtered`), with its reason: the stop
/// reason and what the guardrail answered in place of the model.
pub(crate) fn content_policy(stop_reason: &str, said: Option<&str>) -> Failure {
    let said = said.map(sanitize_message).filter(|s| !s.trim().is_empty());
    let message = match said {
        Some(said) => format!("the provider refused the request ({stop_reason}): {said}"),
        None => format!("the provider refused the request ({stop_reason})"),
    };
    Failure::new(ErrorClass::ContentPolicy, message)
        .with_code("content_filter")
        .with_scope(Scope::Request)
}
