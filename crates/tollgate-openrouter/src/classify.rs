//! [`OpenRouterClassifier`]: OpenRouter's errors in the shared vocabulary.

use std::cell::Cell;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Response, StatusCode};
use serde_json::Value;
use tollgate_core::classify::{
    ClassifyEos, ClassifyResponse, Verdict, is_event_stream, retry_after_from_headers,
    status_from_code,
};
use tollgate_core::sse::Event;
use tollgate_core::{ErrorClass, Failure, Scope, TimeoutKind, sanitize_message};

#[path = "classify_facts.rs"]
mod facts;

use facts::Facts;

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Classifies OpenRouter's responses: HTTP errors, errors inside 200 bodies
/// and inside SSE streams, numeric `error.code`s, rate-limit headers in epoch
/// milliseconds, and whose limit a 429 was.
///
/// [`OpenRouterLayer`](crate::OpenRouterLayer) decides with it, and other
/// layers (a breaker or a retry over a raw OpenRouter client) can use it on
/// their own: it is a [`ClassifyResponse`] like core's `OpenAiClassifier`.
///
/// # Rules
///
/// In order:
///
/// 1. A response is a failure if its status is not 2xx, or its body has a
///    top-level `error`, or a choice has `finish_reason: "error"` or an
///    `error`; a stream, if a data event does.
/// 2. The status that counts is `error.code` when it is a number (or a
///    numeric string), else `error.http_status`, else the HTTP status (502
///    for an error inside a 200).
/// 3. A typed code — `error.metadata.error_type`, `error.error_type`, a
///    string `error.code` or `error.type` — decides the class when it names
///    one; `error.availability.code` next.
/// 4. Otherwise the status and the message decide (`"maximum context
///    length"`, `"Key limit exceeded"`, `metadata.reasons`...), and for a 429
///    the message and `metadata.limit_source` decide whose limit it was.
/// 5. The wait comes from `Retry-After` (seconds), `X-RateLimit-Reset` (epoch
///    **milliseconds**), the same two in `error.metadata.headers`, then
///    `error.availability.retry_after` (seconds).
///
/// What comes out, beyond the class defaults:
///
/// | class | subkind | scope | overrides |
/// |---|---|---|---|
/// | `rate_limited` | `free_daily_quota` | `account_free_pool` | not retryable, not fallback-eligible |
/// | `rate_limited` | `free_rpm` | `account_free_pool` | not fallback-eligible |
/// | `rate_limited` | `model_capacity` | `model` | |
/// | `rate_limited` | `upstream_provider` | `provider` | |
/// | `upstream_unavailable` | `provider_error` / `no_provider` / `server_error` | `provider` / `model` / — | `availability.retryable` when given |
/// | `timeout` | `upstream_reported` | `provider` | |
/// | `auth` | — | `key` | not fallback-eligible (one key serves every model); status 502, code `upstream_auth_failed` |
/// | `insufficient_credits` | `balance` / `key_limit` | `account` / `key` | |
/// | `content_policy` | `moderation` | `model` | fallback-eligible: only moderated endpoints flag |
/// | `content_policy` | `guardrail` / `permission` / `refusal` | — / `model` | |
/// | `context_window_exceeded` | — | `model` | param `messages` |
/// | `model_not_found` | `no_endpoints` / `not_found` / `free_variant_ended` / `privacy_restricted` | `model` | |
/// | `bad_request` | — | `request` | |
///
/// An error event after a stream's first data event is, in addition,
/// neither retryable nor fallback-eligible (see [`OpenRouterEos`]).
///
/// The client-facing message is Tollgate's own text for everything that is
/// about the upstream (rate limits, outages, credits, keys, moderation);
/// OpenRouter's own message, sanitised, only for what is about the client's
/// request (context window, bad request, unknown model). `metadata.raw` (the
/// provider's body), `provider_name`, `user_id` and `flagged_input` never
/// reach a `Failure` — nor the logs: the debug line written per classified
/// error names the status, typed code, provider and limit source, never a
/// message, since upstream text can quote the user's prompt.
///
/// # The free-model pool
///
/// OpenRouter's free models share two limits per account: requests per
/// minute and requests per day. A 429 from either is
/// [`ErrorClass::RateLimited`] with [`Scope::AccountFreePool`] and
/// `is_fallback_eligible() == false`, because the next `:free` model of the
/// same account is in the same pool. A fallback cascade that knows a target
/// outside the pool (a paid model, another account) reads the scope and may
/// still go there. The daily limit is also not retryable: its `retry_after`
/// points at the reset (00:00 UTC).
///
/// # Time
///
/// `X-RateLimit-Reset` is an instant; turning it into a wait needs "now",
/// which comes from the clock given to [`with_clock`](Self::with_clock)
/// (the system clock by default), so tests are deterministic.
#[derive(Clone)]
pub struct OpenRouterClassifier {
    clock: Clock,
}

impl OpenRouterClassifier {
    /// A classifier on the system clock.
    pub fn new() -> Self {
        OpenRouterClassifier {
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Reads wall-clock time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Classifies a complete (non-streaming) response: `Some` for an error
    /// status, or for an error inside a 2xx body; `None` for a success.
    ///
    /// [`classify_response`](ClassifyResponse::classify_response) cannot see
    /// an error inside a 200 body from the head; a caller that has the body
    /// asks here.
    pub fn classify_body(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Failure> {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        if status.is_success() && !json.as_ref().is_some_and(is_error_body) {
            return None;
        }
        Some(classify(status, headers, json.as_ref(), self.now()))
    }

    /// Classifies the data of one SSE event that carries an error.
    pub(crate) fn classify_event_data(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        data: &[u8],
    ) -> Failure {
        let json: Option<Value> = serde_json::from_slice(data).ok();
        classify(status, headers, json.as_ref(), self.now())
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }
}

impl Default for OpenRouterClassifier {
    fn default() -> Self {
        OpenRouterClassifier::new()
    }
}

impl fmt::Debug for OpenRouterClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenRouterClassifier")
            .finish_non_exhaustive()
    }
}

impl ClassifyResponse for OpenRouterClassifier {
    type Eos = OpenRouterEos;

    /// A 2xx event stream is watched; another 2xx is a success as far as the
    /// head can tell (see [`classify_body`](Self::classify_body)); anything
    /// else fails by its status and headers.
    fn classify_response<B>(&self, response: &Response<B>) -> Verdict<OpenRouterEos> {
        if !response.status().is_success() {
            return Verdict::Failure(classify(
                response.status(),
                response.headers(),
                None,
                self.now(),
            ));
        }
        if is_event_stream(response.headers()) {
            Verdict::Watch(OpenRouterEos {
                clock: self.clock.clone(),
                slot: response.extensions().get::<StreamFailure>().cloned(),
                saw_data: Cell::new(false),
                saw_done: false,
            })
        } else {
            Verdict::Success
        }
    }

    fn classify_error_body(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        classify(status, headers, json.as_ref(), self.now())
    }
}

/// Watches an OpenRouter stream — raw, or as [`OpenRouterLayer`] hands it
/// on — to its end.
///
/// An error event fails the stream. Before any data event it is classified
/// as the HTTP error it stands for; after one, content has reached the
/// client, so the failure is marked neither retryable nor fallback-eligible.
/// The layer ends a failed stream with an OpenAI-style error event and
/// records the failure it classified in the response's [`StreamFailure`];
/// when this watcher sees that event it reports that exact failure (subkind
/// and scope included). A stream that ends without `data: [DONE]` was cut.
///
/// [`OpenRouterLayer`]: crate::OpenRouterLayer
pub struct OpenRouterEos {
    clock: Clock,
    slot: Option<StreamFailure>,
    // `wants` takes `&self` and is the only call that sees every event, so
    // it is where a content event is noticed.
    saw_data: Cell<bool>,
    saw_done: bool,
}

impl fmt::Debug for OpenRouterEos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenRouterEos")
            .field("saw_data", &self.saw_data.get())
            .field("saw_done", &self.saw_done)
            .finish_non_exhaustive()
    }
}

impl ClassifyEos for OpenRouterEos {
    fn wants(&self, raw_event: &[u8]) -> bool {
        // An error event has the key `"error"` (or `finish_reason` of
        // `"error"`), which escaped text in a delta cannot fake.
        let wanted = contains(raw_event, b"[DONE]") || contains(raw_event, b"\"error\"");
        if !wanted && has_data_line(raw_event) {
            self.saw_data.set(true);
        }
        wanted
    }

    fn classify_event(&mut self, event: &Event) -> Option<Failure> {
        if event.is_done() {
            self.saw_done = true;
            return None;
        }
        let json = serde_json::from_slice::<Value>(&event.data)
            .ok()
            .filter(is_error_body);
        let Some(json) = json else {
            self.saw_data.set(true);
            return None;
        };
        if let Some(failure) = self.slot.as_ref().and_then(StreamFailure::get) {
            return Some(failure.clone());
        }
        let failure = classify(
            StatusCode::OK,
            &HeaderMap::new(),
            Some(&json),
            (self.clock)(),
        );
        Some(if self.saw_data.get() {
            after_content(failure)
        } else {
            failure
        })
    }

    fn classify_eos(self) -> Result<(), Failure> {
        if self.saw_done {
            Ok(())
        } else {
            Err(tollgate_core::classify::stream_cut())
        }
    }
}

/// The failure that ended a stream after it had started, as a response
/// extension of the streams [`OpenRouterLayer`](crate::OpenRouterLayer)
/// returns.
///
/// Set just before the layer hands on the OpenAI-style error event that
/// ends the stream; empty while the stream runs, and for a stream that ends
/// well. [`OpenRouterEos`] reads it, so layers that watch the stream with
/// [`OpenRouterClassifier`] get the failure with its subkind and scope.
#[derive(Debug, Clone, Default)]
pub struct StreamFailure(Arc<OnceLock<Failure>>);

impl StreamFailure {
    /// The failure, once the stream has ended with one.
    pub fn get(&self) -> Option<&Failure> {
        self.0.get()
    }

    pub(crate) fn set(&self, failure: Failure) {
        let _ = self.0.set(failure);
    }
}

/// A failure after content went to the client: neither a retry nor another
/// target can take it back.
pub(crate) fn after_content(failure: Failure) -> Failure {
    failure.with_retryable(false).with_fallback_eligible(false)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn has_data_line(raw_event: &[u8]) -> bool {
    raw_event.starts_with(b"data")
        || contains(raw_event, b"\ndata")
        || contains(raw_event, b"\rdata")
}

/// Whether a body (or a stream chunk) carries an error.
fn is_error_body(json: &Value) -> bool {
    find_error(json).is_some()
        || choices(json).any(|choice| {
            choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .is_some_and(|reason| reason.eq_ignore_ascii_case("error"))
        })
}

fn choices(json: &Value) -> impl Iterator<Item = &Value> {
    json.get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The error object: the top-level `error`, else a choice's.
fn find_error(json: &Value) -> Option<&Value> {
    let non_null = |v: &&Value| !v.is_null();
    json.get("error")
        .filter(non_null)
        .or_else(|| choices(json).find_map(|c| c.get("error").filter(non_null)))
}

/// Classifies an OpenRouter error from the HTTP status, the headers and the
/// body (or stream chunk), when there is one.
pub(crate) fn classify(
    http_status: StatusCode,
    headers: &HeaderMap,
    body: Option<&Value>,
    now: SystemTime,
) -> Failure {
    let facts = Facts::read(http_status, body);
    let (class, subkind) = facts.class();
    let mut failure = facts.failure(class, subkind);
    if let Some(wait) = retry_after(headers, facts.error, now) {
        failure = failure.with_retry_after(wait);
    }
    tracing::debug!(
        status = facts.status.as_u16(),
        http_status = http_status.as_u16(),
        error_type = facts.typed.as_deref(),
        provider = facts.provider_name(),
        limit_source = facts.limit_source(),
        class = %failure.class(),
        subkind = failure.subkind(),
        "classified an OpenRouter error"
    );
    failure
}

/// The class a typed code names (OpenRouter's `error_type`s, and OpenAI's
/// codes and types, which also come back from Tollgate's own error events).
fn typed_class(code: &str) -> Option<ErrorClass> {
    Some(match code {
        "rate_limit_exceeded" | "rate_limited" | "rate_limit_error" | "requests" | "tokens" => {
            ErrorClass::RateLimited
        }
        "authentication" | "authentication_error" | "invalid_api_key" | "upstream_auth_failed" => {
            ErrorClass::Auth
        }
        "payment_required" | "insufficient_quota" | "insufficient_credits" => {
            ErrorClass::InsufficientCredits
        }
        "permission_denied" | "content_policy_violation" | "refusal" | "content_filter" => {
            ErrorClass::ContentPolicy
        }
        "context_length_exceeded"
        | "max_tokens_exceeded"
        | "token_limit_exceeded"
        | "string_too_long"
        | "string_above_max_length" => ErrorClass::ContextWindowExceeded,
        "provider_overloaded"
        | "provider_unavailable"
        | "server"
        | "server_error"
        | "unmapped"
        | "upstream_unavailable"
        | "upstream_error" => ErrorClass::UpstreamUnavailable,
        "timeout" | "timeout_error" => ErrorClass::Timeout,
        "not_found" | "model_not_found" => ErrorClass::ModelNotFound,
        "stream_interrupted" => ErrorClass::StreamInterrupted,
        "invalid_request" | "invalid_request_error" | "invalid_prompt" | "bad_request" => {
            ErrorClass::BadRequest
        }
        _ => return None,
    })
}

/// How long to wait before trying the same target again (rule 5).
fn retry_after(headers: &HeaderMap, error: Option<&Value>, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let meta_headers = error
        .and_then(|e| e.get("metadata"))
        .and_then(|m| m.get("headers"))
        .and_then(Value::as_object);
    let meta_header = |name: &str| {
        meta_headers?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| match value {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    };
    retry_after_from_headers(headers, now)
        .or_else(|| until_reset(header("x-ratelimit-reset")?, now))
        .or_else(|| seconds(&meta_header("retry-after")?))
        .or_else(|| until_reset(&meta_header("x-ratelimit-reset")?, now))
        .or_else(|| {
            let secs = error?.get("availability")?.get("retry_after")?.as_f64()?;
            non_negative_seconds(secs)
        })
}

fn seconds(value: &str) -> Option<Duration> {
    non_negative_seconds(value.trim().parse().ok()?)
}

/// `secs` as a wait; `None` for a negative, infinite or NaN value or one
/// past `Duration`'s range (upstream text: found by the fuzzer).
fn non_negative_seconds(secs: f64) -> Option<Duration> {
    (secs >= 0.0)
        .then(|| Duration::try_from_secs_f64(secs).ok())
        .flatten()
}

/// The wait until an `X-RateLimit-Reset`. OpenRouter sends epoch
/// milliseconds; other APIs send epoch seconds or seconds from now, which
/// the size of the number tells apart (an epoch in milliseconds is past
/// 10^11 since 1973, one in seconds past 10^9 since 2001).
fn until_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let n: u64 = value.trim().parse().ok()?;
    let at = match n {
        100_000_000_000.. => UNIX_EPOCH + Duration::from_millis(n),
        1_000_000_000.. => UNIX_EPOCH + Duration::from_secs(n),
        _ => return Some(Duration::from_secs(n)),
    };
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
