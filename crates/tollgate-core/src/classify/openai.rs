//! The default classifier, for plain OpenAI-compatible upstreams.

use std::sync::LazyLock;
use std::time::SystemTime;

use http::{HeaderMap, Response, StatusCode, header};
use serde_json::Value;

use super::{ClassifyEos, ClassifyResponse, Verdict, retry_after_from_headers};
use crate::class::{ErrorClass, Scope, TimeoutKind};
use crate::failure::Failure;
use crate::redact::sanitize_message;
use crate::sse::Event;
use memchr::memmem::Finder;

/// Classifies the responses of an OpenAI-compatible upstream: status codes,
/// `Retry-After` / `retry-after-ms`, OpenAI error codes
/// (`context_length_exceeded`, `content_policy_violation`,
/// `insufficient_quota`...), and `error` objects in SSE data events.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiClassifier {
    _private: (),
}

impl OpenAiClassifier {
    /// The classifier.
    pub const fn new() -> Self {
        OpenAiClassifier { _private: () }
    }
}

impl ClassifyResponse for OpenAiClassifier {
    type Eos = OpenAiEos;

    fn classify_response<B>(&self, response: &Response<B>) -> Verdict<OpenAiEos> {
        let status = response.status();
        if status.is_success() {
            if is_event_stream(response.headers()) {
                Verdict::Watch(OpenAiEos::default())
            } else {
                Verdict::Success
            }
        } else {
            Verdict::Failure(classify_error_object(
                status,
                response.headers(),
                None,
                SystemTime::now(),
            ))
        }
    }

    fn classify_error_body(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let error = json.as_ref().and_then(|v| v.get("error"));
        classify_error_object(status, headers, error, SystemTime::now())
    }

    fn watch<B>(&self, _response: &Response<B>) -> Option<OpenAiEos> {
        Some(OpenAiEos::default())
    }
}

/// Whether the headers announce an SSE body (`text/event-stream`).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Watches an OpenAI stream: an `error` object in a data event is a failure,
/// and a stream that ends without `data: [DONE]` was cut.
#[derive(Debug, Clone, Default)]
pub struct OpenAiEos {
    saw_done: bool,
}

impl ClassifyEos for OpenAiEos {
    fn wants(&self, raw_event: &[u8]) -> bool {
        // Only an error object or the `[DONE]` marker changes the verdict. An
        // error event has the key `"error"`, which escaped text in a content
        // delta cannot fake.
        DONE.find(raw_event).is_some() || ERROR_KEY.find(raw_event).is_some()
    }

    fn classify_event(&mut self, event: &Event) -> Option<Failure> {
        if event.is_done() {
            self.saw_done = true;
            return None;
        }
        let data = &event.data[..];
        // Cheap pre-filter so that content chunks are never parsed here: an
        // error event has the key `"error"`, which escaped text cannot fake.
        ERROR_KEY.find(data)?;
        let json: Value = serde_json::from_slice(data).ok()?;
        let error = json.get("error").filter(|e| !e.is_null())?;
        let status = error
            .get("code")
            .and_then(status_from_code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Some(classify_error_object(
            status,
            &HeaderMap::new(),
            Some(error),
            SystemTime::now(),
        ))
    }

    fn classify_eos(self) -> Result<(), Failure> {
        if self.saw_done {
            Ok(())
        } else {
            Err(Failure::new(
                ErrorClass::UpstreamUnavailable,
                "the upstream stream ended before it was complete",
            )
            .with_subkind("stream_cut"))
        }
    }
}

/// Searches for the two needles every watched stream event is checked
/// for, built once: memchr's substring search (SIMD, with a rare-byte
/// prefilter) does not stop at every `"` of a JSON chunk the way a search
/// for the needle's first byte does, but `memmem::find` builds its searcher
/// anew for every haystack of 64 bytes or more — most chunks — which cost
/// more than the search.
static DONE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"[DONE]"));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));

/// An `error.code` that is an HTTP error status (a number, or a numeric
/// string), as OpenRouter and other OpenAI-compatible providers send it.
pub fn status_from_code(code: &Value) -> Option<StatusCode> {
    let n = match code {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    u16::try_from(n)
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
}

/// Classifies an OpenAI-style error: the status, the headers and, when there
/// is one, the `error` object of the body.
pub(crate) fn classify_error_object(
    status: StatusCode,
    headers: &HeaderMap,
    error: Option<&Value>,
    now: SystemTime,
) -> Failure {
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(|v| match v {
                Value::String(s) => Some(s.to_ascii_lowercase()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let code = field("code");
    let kind = field("type");
    let raw_message = error
        .and_then(|e| match e {
            Value::String(s) => Some(s.as_str()),
            _ => e.get("message").and_then(Value::as_str),
        })
        .unwrap_or("");
    let text = raw_message.to_ascii_lowercase();
    let is = |names: &[&str]| names.iter().any(|n| code == *n || kind == *n);

    let class = if is(&["stream_interrupted"]) {
        // A layer below already ended the stream with its own error event
        // (a fallback cascade that could not continue): keep its class.
        ErrorClass::StreamInterrupted
    } else if is(&["context_length_exceeded", "string_above_max_length"])
        || text.contains("maximum context length")
        || text.contains("context window")
    {
        ErrorClass::ContextWindowExceeded
    } else if is(&["content_policy_violation", "content_filter"])
        || text.contains("content management policy")
    {
        ErrorClass::ContentPolicy
    } else if is(&["insufficient_quota"]) || status == StatusCode::PAYMENT_REQUIRED {
        ErrorClass::InsufficientCredits
    } else if is(&["rate_limit_exceeded", "rate_limit_error"]) {
        ErrorClass::RateLimited
    } else {
        match status.as_u16() {
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::ModelNotFound,
            408 | 504 | 524 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimited,
            400..=499 => ErrorClass::BadRequest,
            _ => ErrorClass::UpstreamUnavailable,
        }
    };

    let mut failure = match class {
        // About the request itself: the upstream's words help the client fix
        // it, once sanitised. A stream a layer below already interrupted
        // keeps that layer's account of the cause.
        ErrorClass::ContextWindowExceeded
        | ErrorClass::ContentPolicy
        | ErrorClass::BadRequest
        | ErrorClass::ModelNotFound
        | ErrorClass::StreamInterrupted
            if !raw_message.is_empty() =>
        {
            let mut failure = Failure::new(class, sanitize_message(raw_message));
            if let Some(param) = error.and_then(|e| e.get("param")).and_then(Value::as_str) {
                failure = failure.with_param(sanitize_message(param));
            }
            failure
        }
        // About the upstream or the gateway's own account: the client learns
        // the class, never the provider's text (org ids, key hints).
        ErrorClass::Timeout => {
            Failure::timeout(TimeoutKind::Total).with_subkind("upstream_reported")
        }
        ErrorClass::Auth => Failure::new(class, "the upstream rejected the gateway's credentials")
            // The client's own key was fine; this is the gateway's problem.
            .with_status(StatusCode::BAD_GATEWAY)
            .with_code("upstream_auth_failed"),
        ErrorClass::RateLimited => Failure::new(class, "the upstream is rate limiting requests"),
        ErrorClass::InsufficientCredits => {
            Failure::new(class, "the upstream account has insufficient credits")
        }
        _ => Failure::new(
            class,
            format!("the upstream failed with status {}", status.as_u16()),
        ),
    };
    failure = failure.with_upstream_status(status);
    if class == ErrorClass::RateLimited && matches!(kind.as_str(), "requests" | "tokens") {
        failure = failure.with_scope(Scope::Model);
    }
    if class == ErrorClass::InsufficientCredits {
        failure = failure.with_scope(Scope::Account);
    }
    if let Some(wait) = retry_after_from_headers(headers, now) {
        failure = failure.with_retry_after(wait);
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::{DONE, ERROR_KEY};

    #[test]
    fn the_needles_are_found_anywhere() {
        let long = format!("data: {{\"x\":\"{}\",\"error\":1}}", "y".repeat(100));
        assert!(ERROR_KEY.find(long.as_bytes()).is_some());
        assert!(ERROR_KEY.find(b"\"\"error\"").is_some());
        assert!(ERROR_KEY.find(b"\"erro").is_none());
        assert!(DONE.find(b"data: [DONE]\n\n").is_some());
        assert!(DONE.find(b"").is_none());
    }
}
