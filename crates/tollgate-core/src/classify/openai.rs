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
///
/// A stream of OpenAI's Responses API (its typed events, from the API
/// reference's "Streaming events") ends with no `[DONE]`: its
/// `response.completed` or `response.incomplete` event is its clean end,
/// and an `error` or `response.failed` event its failure.
#[derive(Debug, Clone, Default)]
pub struct OpenAiEos {
    saw_done: bool,
}

impl ClassifyEos for OpenAiEos {
    fn wants(&self, raw_event: &[u8]) -> bool {
        // Only an error object, the `[DONE]` marker or a Responses stream's
        // last event changes the verdict. An error event has the key
        // `"error"` (a Responses one the type `"error"`), which escaped
        // text in a content delta cannot fake.
        (!opens_an_object(raw_event) && DONE.find(raw_event).is_some())
            || ERROR_KEY.find(raw_event).is_some()
            || ends_a_response(raw_event)
    }

    fn classify_event(&mut self, event: &Event) -> Option<Failure> {
        if event.is_done() {
            self.saw_done = true;
            return None;
        }
        let data = &event.data[..];
        // Cheap pre-filter so that content chunks are never parsed here: an
        // error event has the key `"error"`, which escaped text cannot fake.
        if ERROR_KEY.find(data).is_none() && RESPONSE_EVENT.find(data).is_none() {
            return None;
        }
        let json: Value = serde_json::from_slice(data).ok()?;
        // A Responses stream's typed events.
        match json.get("type").and_then(Value::as_str) {
            Some("response.completed" | "response.incomplete") => {
                self.saw_done = true;
                return None;
            }
            // Its fields at the top (an error object inside is another
            // provider's shape of the same event).
            Some("error") => {
                let nested = json.get("error").filter(|e| e.is_object());
                return Some(responses_failure(Some(nested.unwrap_or(&json))));
            }
            Some("response.failed") => {
                let error = json.get("response").and_then(|r| r.get("error"));
                return Some(responses_failure(error.filter(|e| !e.is_null())));
            }
            _ => {}
        }
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
            Err(super::stream_cut())
        }
    }
}

/// The failure a Responses stream's `error` event (or its failed
/// response's `error`: `code` and `message`) reports: a server error unless
/// its code says more.
fn responses_failure(error: Option<&Value>) -> Failure {
    let status = error
        .and_then(|e| e.get("code"))
        .and_then(status_from_code)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    classify_error_object(status, &HeaderMap::new(), error, SystemTime::now())
}

/// Whether the event's data starts a JSON object: then it is not the
/// `[DONE]` marker (whose data is exactly `[DONE]`), and the search for that
/// marker can be skipped — a third of what every content chunk costs here,
/// in each of the layers that watch the stream.
fn opens_an_object(raw_event: &[u8]) -> bool {
    raw_event.starts_with(b"data: {") || raw_event.starts_with(b"data:{")
}

/// Whether a raw event names a Responses stream's last event (the string
/// `"response.completed"`, `"response.incomplete"` or `"response.failed"`):
/// one search for their common start, so that a chat chunk costs one.
fn ends_a_response(raw_event: &[u8]) -> bool {
    const START: &[u8] = b"\"response.";
    // `find` in a loop, not `find_iter`: the iterator copies the searcher,
    // on every event of every watched stream.
    let mut rest = raw_event;
    while let Some(at) = RESPONSE_EVENT.find(rest) {
        rest = &rest[at + START.len()..];
        if [&b"completed\""[..], b"incomplete\"", b"failed\""]
            .iter()
            .any(|end| rest.starts_with(end))
        {
            return true;
        }
    }
    false
}

/// Searches for the two needles every watched stream event is checked
/// for, built once: memchr's substring search (SIMD, with a rare-byte
/// prefilter) does not stop at every `"` of a JSON chunk the way a search
/// for the needle's first byte does, but `memmem::find` builds its searcher
/// anew for every haystack of 64 bytes or more — most chunks — which cost
/// more than the search.
static DONE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"[DONE]"));
static ERROR_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static RESPONSE_EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"response."));

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
    use super::{ClassifyEos, OpenAiEos};
    use super::{DONE, ERROR_KEY};
    use crate::class::ErrorClass;
    use crate::sse::Event;

    /// Events of OpenAI's Responses stream (API reference, "Streaming
    /// events"): the last one ends it, cleanly or not.
    #[test]
    fn a_responses_stream_ends_with_its_own_last_event() {
        let completed = r#"{"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","status":"completed","error":null,"usage":{"input_tokens":3}}}"#;
        let mut eos = OpenAiEos::default();
        for data in [
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress","error":null}}"#,
            r#"{"type":"response.output_text.delta","sequence_number":4,"delta":""error" response.completed"}"#,
            completed,
        ] {
            assert_eq!(eos.classify_event(&Event::new(data)), None, "{data}");
        }
        assert!(eos.classify_eos().is_ok());
        let mut eos = OpenAiEos::default();
        assert!(
            eos.wants(
                format!(
                    "event: response.incomplete\ndata: {}\n\n",
                    completed.replace("completed", "incomplete")
                )
                .as_bytes()
            )
        );
        assert_eq!(
            eos.classify_event(&Event::new(
                completed.replace("response.completed", "response.incomplete")
            )),
            None
        );
        assert!(eos.classify_eos().is_ok());
        // Its other events are not even parsed.
        let delta = r#"event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":4,"delta":"response."}

"#;
        assert!(!OpenAiEos::default().wants(delta.as_bytes()));
        // Without its last event, a Responses stream was cut.
        assert!(OpenAiEos::default().classify_eos().is_err());
    }

    #[test]
    fn the_done_marker_is_wanted_in_any_form_and_a_content_chunk_is_not() {
        let eos = OpenAiEos::default();
        for done in [
            "data: [DONE]\n\n",
            "data:[DONE]\n\n",
            "data: [DONE]\r\n\r\n",
            "id: 7\ndata: [DONE]\n\n",
            ": keep-alive\ndata: [DONE]\n\n",
        ] {
            assert!(eos.wants(done.as_bytes()), "{done:?}");
        }
        // A chunk is an object: the marker's text inside it is only text.
        let chunk = r#"data: {"choices":[{"index":0,"delta":{"content":"[DONE]"}}]}

"#;
        assert!(!eos.wants(chunk.as_bytes()));
        // An error object is wanted however the event starts.
        let error = r#"data:{"error":{"message":"overloaded","code":503}}

"#;
        assert!(eos.wants(error.as_bytes()));
    }

    #[test]
    fn a_responses_error_or_failed_event_is_a_failure() {
        let error = r#"{"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null,"sequence_number":3}"#;
        let mut eos = OpenAiEos::default();
        assert!(eos.wants(format!("event: error\ndata: {error}\n\n").as_bytes()));
        let failure = eos.classify_event(&Event::new(error)).unwrap();
        assert_eq!(failure.class(), ErrorClass::RateLimited);
        let failed = r#"{"type":"response.failed","sequence_number":4,"response":{"id":"r","status":"failed","error":{"code":"server_error","message":"boom"}}}"#;
        let mut eos = OpenAiEos::default();
        assert!(eos.wants(failed.as_bytes()));
        let failure = eos.classify_event(&Event::new(failed)).unwrap();
        assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
    }

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
