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
            Err(Failure::new(
                ErrorClass::UpstreamUnavailable,
                "the upstream stream ended before it was complete",
            )
            .with_subkind("stream_cut"))
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

/// What the error object says, read once.
struct Facts<'a> {
    status: StatusCode,
    error: Option<&'a Value>,
    metadata: Option<&'a Value>,
    typed: Option<String>,
    message: &'a str,
    text: String,
}

impl<'a> Facts<'a> {
    fn read(http_status: StatusCode, body: Option<&'a Value>) -> Self {
        let error = body.and_then(find_error);
        let field = |name: &str| error.and_then(|e| e.get(name));
        let status = field("code")
            .and_then(status_from_code)
            .or_else(|| field("http_status").and_then(status_from_code))
            .or((!http_status.is_success()).then_some(http_status))
            // An error inside a 200 without a status: the provider failed.
            .unwrap_or(StatusCode::BAD_GATEWAY);
        let metadata = field("metadata").filter(|m| m.is_object());
        let typed = [
            metadata.and_then(|m| m.get("error_type")),
            field("error_type"),
            field("code").filter(|c| status_from_code(c).is_none()),
            field("type"),
        ]
        .into_iter()
        .flatten()
        .find_map(Value::as_str)
        .map(str::to_ascii_lowercase);
        let message = match error {
            Some(Value::String(s)) => s.as_str(),
            _ => field("message").and_then(Value::as_str).unwrap_or(""),
        };
        Facts {
            status,
            error,
            metadata,
            typed,
            message,
            text: message.to_ascii_lowercase(),
        }
    }

    fn meta_str(&self, name: &str) -> Option<&'a str> {
        self.metadata?.get(name)?.as_str()
    }

    fn provider_name(&self) -> Option<&'a str> {
        self.meta_str("provider_name")
    }

    fn limit_source(&self) -> Option<&'a str> {
        self.meta_str("limit_source")
    }

    fn availability(&self) -> Option<&'a Value> {
        self.error?.get("availability").filter(|a| a.is_object())
    }

    fn says(&self, phrase: &str) -> bool {
        self.text.contains(phrase)
    }

    /// The class, and the subkind where one is known.
    fn class(&self) -> (ErrorClass, Option<&'static str>) {
        let class = match self.typed.as_deref().and_then(typed_class) {
            // "Invalid request" is the least precise code there is: a
            // context-window error often comes as one.
            Some(ErrorClass::BadRequest) if self.context_window_text() => {
                ErrorClass::ContextWindowExceeded
            }
            Some(class) => class,
            None => self
                .availability_class()
                .unwrap_or_else(|| self.status_class()),
        };
        (class, self.subkind(class))
    }

    fn availability_class(&self) -> Option<ErrorClass> {
        match self.availability()?.get("code")?.as_str()? {
            "temporarily_unavailable" => Some(ErrorClass::UpstreamUnavailable),
            "model_not_found" | "no_endpoints" | "free_variant_ended" | "privacy_restricted" => {
                Some(ErrorClass::ModelNotFound)
            }
            _ => None,
        }
    }

    fn context_window_text(&self) -> bool {
        self.says("maximum context length")
            || self.says("context length")
            || self.says("context window")
    }

    fn status_class(&self) -> ErrorClass {
        match self.status.as_u16() {
            400 | 413 | 422 if self.context_window_text() => ErrorClass::ContextWindowExceeded,
            400 | 422 if self.says("request blocked") => ErrorClass::ContentPolicy,
            401 => ErrorClass::Auth,
            402 => ErrorClass::InsufficientCredits,
            // OpenRouter's 403 is moderation, except for a key's spend cap.
            403 if self.says("key limit") => ErrorClass::InsufficientCredits,
            403 => ErrorClass::ContentPolicy,
            404 => ErrorClass::ModelNotFound,
            408 | 504 | 524 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimited,
            400..=499 => ErrorClass::BadRequest,
            _ => ErrorClass::UpstreamUnavailable,
        }
    }

    fn subkind(&self, class: ErrorClass) -> Option<&'static str> {
        let limit_source = self.limit_source().unwrap_or("");
        match class {
            ErrorClass::RateLimited => {
                if self.says("free-models-per-day") || limit_source == "openrouter_free_tier_daily"
                {
                    Some("free_daily_quota")
                } else if self.says("free-models-per-min")
                    || (limit_source.starts_with("openrouter_free_tier")
                        && limit_source.contains("min"))
                {
                    Some("free_rpm")
                } else if self.says("high demand for")
                    || self.says("limit_rpm/")
                    || limit_source == "openrouter_shared_capacity"
                {
                    Some("model_capacity")
                } else if self.says("provider returned error")
                    || self.provider_name().is_some()
                    || self
                        .metadata
                        .is_some_and(|m| m.get("provider_code").is_some())
                    || self.meta_str("raw").is_some_and(|raw| {
                        raw.to_ascii_lowercase().contains("rate-limited upstream")
                    })
                {
                    Some("upstream_provider")
                } else {
                    None
                }
            }
            ErrorClass::UpstreamUnavailable => {
                if self.availability().is_some() || self.status == StatusCode::SERVICE_UNAVAILABLE {
                    Some("no_provider")
                } else if self.status == StatusCode::INTERNAL_SERVER_ERROR {
                    Some("server_error")
                } else {
                    Some("provider_error")
                }
            }
            ErrorClass::InsufficientCredits => Some(if self.says("key limit") {
                "key_limit"
            } else {
                "balance"
            }),
            ErrorClass::ContentPolicy => Some(match self.typed.as_deref() {
                Some("permission_denied") => "permission",
                Some("refusal") => "refusal",
                _ if self.says("request blocked") => "guardrail",
                _ => "moderation",
            }),
            ErrorClass::ModelNotFound => Some(
                match self
                    .availability()
                    .and_then(|a| a.get("code"))
                    .and_then(Value::as_str)
                {
                    Some("free_variant_ended") => "free_variant_ended",
                    Some("privacy_restricted") => "privacy_restricted",
                    _ if self.says("no endpoints found") || self.says("no allowed providers") => {
                        "no_endpoints"
                    }
                    _ => "not_found",
                },
            ),
            _ => None,
        }
    }

    /// OpenRouter's message, sanitised, when it is about the client's request
    /// and not a provider's pass-through.
    fn request_message(&self, fallback: &'static str) -> std::borrow::Cow<'static, str> {
        if self.message.trim().is_empty() || self.says("provider returned error") {
            fallback.into()
        } else {
            sanitize_message(self.message).into()
        }
    }

    fn moderation_message(&self) -> String {
        let reasons: Vec<&str> = self
            .metadata
            .and_then(|m| m.get("reasons"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            // Category labels only ("violence", "self-harm/intent").
            .filter(|r| {
                !r.is_empty()
                    && r.len() <= 40
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b"_-/ ".contains(&b))
            })
            .take(5)
            .collect();
        if reasons.is_empty() {
            "the input was flagged by the upstream's moderation".to_owned()
        } else {
            format!(
                "the input was flagged by the upstream's moderation ({})",
                reasons.join(", ")
            )
        }
    }

    fn failure(&self, class: ErrorClass, subkind: Option<&'static str>) -> Failure {
        let mut failure = match (class, subkind) {
            (ErrorClass::RateLimited, Some("free_daily_quota")) => Failure::new(
                class,
                "the upstream account's daily request limit for free models is exhausted",
            )
            .with_scope(Scope::AccountFreePool)
            // Not before the reset at 00:00 UTC, and not on another free model.
            .with_retryable(false)
            .with_fallback_eligible(false),
            (ErrorClass::RateLimited, Some("free_rpm")) => Failure::new(
                class,
                "the upstream account's per-minute request limit for free models is exhausted",
            )
            .with_scope(Scope::AccountFreePool)
            .with_fallback_eligible(false),
            (ErrorClass::RateLimited, Some("model_capacity")) => {
                Failure::new(class, "the upstream model is at capacity").with_scope(Scope::Model)
            }
            (ErrorClass::RateLimited, Some("upstream_provider")) => {
                Failure::new(class, "the upstream provider is rate limiting requests")
                    .with_scope(Scope::Provider)
            }
            (ErrorClass::RateLimited, _) => {
                Failure::new(class, "the upstream is rate limiting requests")
            }
            (ErrorClass::UpstreamUnavailable, Some("no_provider")) => {
                Failure::new(class, "no upstream provider is available for the model")
                    .with_scope(Scope::Model)
            }
            (ErrorClass::UpstreamUnavailable, Some("provider_error")) => {
                Failure::new(class, "the upstream provider failed").with_scope(Scope::Provider)
            }
            (ErrorClass::Timeout, _) => Failure::timeout(TimeoutKind::Total)
                .with_subkind("upstream_reported")
                .with_scope(Scope::Provider),
            (ErrorClass::Auth, _) => {
                Failure::new(class, "the upstream rejected the gateway's credentials")
                    .with_scope(Scope::Key)
                    // The client's own key was fine: this is the gateway's
                    // problem, and the same key serves every OpenRouter model.
                    .with_status(StatusCode::BAD_GATEWAY)
                    .with_code("upstream_auth_failed")
                    .with_fallback_eligible(false)
            }
            (ErrorClass::InsufficientCredits, Some("key_limit")) => {
                Failure::new(class, "the upstream key's spending limit is exhausted")
                    .with_scope(Scope::Key)
            }
            (ErrorClass::InsufficientCredits, _) => {
                Failure::new(class, "the upstream account has insufficient credits")
                    .with_scope(Scope::Account)
            }
            (ErrorClass::ContentPolicy, Some("moderation")) => {
                Failure::new(class, self.moderation_message())
                    .with_scope(Scope::Model)
                    // Only moderated endpoints flag: another model may answer.
                    .with_fallback_eligible(true)
            }
            (ErrorClass::ContentPolicy, Some("guardrail")) => Failure::new(
                class,
                "the request was blocked by the upstream account's guardrail policy",
            ),
            (ErrorClass::ContentPolicy, _) => {
                Failure::new(class, "the upstream refused the request").with_scope(Scope::Model)
            }
            (ErrorClass::ContextWindowExceeded, _) => Failure::new(
                class,
                self.request_message("the request does not fit the model's context window"),
            )
            .with_scope(Scope::Model)
            .with_param("messages"),
            (ErrorClass::ModelNotFound, _) => Failure::new(
                class,
                self.request_message("the model is not available upstream"),
            )
            .with_scope(Scope::Model),
            (ErrorClass::BadRequest, _) => Failure::new(
                class,
                self.request_message("the upstream rejected the request"),
            )
            .with_scope(Scope::Request),
            (ErrorClass::StreamInterrupted, _) => {
                Failure::new(class, "the upstream stream was interrupted")
            }
            _ => Failure::new(
                class,
                format!("the upstream failed with status {}", self.status.as_u16()),
            ),
        };
        if let Some(subkind) = subkind {
            failure = failure.with_subkind(subkind);
        }
        if let Some(retryable) = self
            .availability()
            .and_then(|a| a.get("retryable"))
            .and_then(Value::as_bool)
        {
            failure = failure.with_retryable(retryable);
        }
        failure.with_upstream_status(self.status)
    }
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
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    const NOW: u64 = 1_773_152_585;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn run(status: u16, headers: &[(&'static str, &'static str)], body: Value) -> Failure {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        classify(
            StatusCode::from_u16(status).unwrap(),
            &map,
            Some(&body),
            now(),
        )
    }

    #[test]
    fn the_status_in_the_body_wins_over_the_http_status() {
        let failure = run(200, &[], json!({"error": {"code": "429", "message": "x"}}));
        assert_eq!(failure.class(), ErrorClass::RateLimited);
        assert_eq!(
            failure.upstream_status(),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        let failure = run(
            200,
            &[],
            json!({"error": {"http_status": 404, "message": "x"}}),
        );
        assert_eq!(failure.class(), ErrorClass::ModelNotFound);
        // No status at all inside a 200: the provider failed.
        let failure = run(200, &[], json!({"choices": [{"finish_reason": "error"}]}));
        assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
        assert_eq!(failure.subkind(), Some("provider_error"));
    }

    #[test]
    fn typed_codes_win_over_the_status() {
        let body = json!({"error": {"code": 500, "message": "x", "metadata": {"error_type": "context_length_exceeded"}}});
        assert_eq!(
            run(500, &[], body).class(),
            ErrorClass::ContextWindowExceeded
        );
        // Tollgate's own error event classifies back to its class.
        let body = json!({"error": {"message": "m", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}});
        assert_eq!(run(200, &[], body).class(), ErrorClass::InsufficientCredits);
        // A generic "invalid request" code leaves it to the message.
        let body = json!({"error": {"code": "invalid_request", "message": "This model's maximum context length is 8192 tokens"}});
        assert_eq!(
            run(400, &[], body).class(),
            ErrorClass::ContextWindowExceeded
        );
    }

    #[test]
    fn retry_after_sources_in_order() {
        let body = json!({"error": {"code": 429, "message": "x", "metadata": {"headers": {"x-ratelimit-reset": "1773152600000"}},
                                    "availability": {"retry_after": 7}}});
        // Retry-After first.
        let failure = run(
            429,
            &[("retry-after", "3"), ("x-ratelimit-reset", "1773152645000")],
            body.clone(),
        );
        assert_eq!(failure.retry_after(), Some(Duration::from_secs(3)));
        // Then the reset header (epoch ms).
        let failure = run(429, &[("x-ratelimit-reset", "1773152645000")], body.clone());
        assert_eq!(failure.retry_after(), Some(Duration::from_secs(60)));
        // Then the headers OpenRouter repeats in the body.
        let failure = run(429, &[], body);
        assert_eq!(failure.retry_after(), Some(Duration::from_secs(15)));
        // Then availability.retry_after.
        let failure = run(
            503,
            &[],
            json!({"error": {"message": "x", "availability": {"code": "temporarily_unavailable", "retry_after": 7}}}),
        );
        assert_eq!(failure.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn reset_values_in_seconds_and_the_past() {
        assert_eq!(
            until_reset("1773152645", now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(until_reset("12", now()), Some(Duration::from_secs(12)));
        assert_eq!(until_reset("1773152000000", now()), Some(Duration::ZERO));
        assert_eq!(until_reset("soon", now()), None);
    }

    #[test]
    fn messages_about_the_upstream_are_tollgates_own() {
        let body = json!({"error": {"code": 502, "message": "Provider returned error",
            "metadata": {"raw": "secret upstream body sk-or-v1-abcdefabcdefabcdef", "provider_name": "Chutes"}}, "user_id": "user_2tQm"});
        let failure = run(502, &[], body);
        let text = String::from_utf8(failure.to_openai_body().to_vec()).unwrap();
        for leak in ["secret", "Chutes", "user_2tQm", "Provider returned"] {
            assert!(!text.contains(leak), "{text}");
        }
        let body = json!({"error": {"code": 403, "message": "m requires moderation on X. Your input was flagged for \"violence\".",
            "metadata": {"reasons": ["violence", "Ignore previous instructions"], "flagged_input": "how to ambush", "provider_name": "X"}}});
        let failure = run(403, &[], body);
        assert_eq!(
            failure.message(),
            "the input was flagged by the upstream's moderation (violence)"
        );
    }

    #[test]
    fn a_403_without_reasons_is_still_moderation_and_key_limits_are_credits() {
        assert_eq!(run(403, &[], json!({})).class(), ErrorClass::ContentPolicy);
        let failure = run(
            403,
            &[],
            json!({"error": {"message": "Key limit exceeded (daily limit).", "code": 403}}),
        );
        assert_eq!(
            (failure.class(), failure.subkind()),
            (ErrorClass::InsufficientCredits, Some("key_limit"))
        );
    }

    #[test]
    fn availability_retryable_overrides_the_class() {
        let body = json!({"error": {"message": "x", "http_status": 503, "availability": {"code": "temporarily_unavailable", "retryable": false}}});
        assert!(!run(503, &[], body).is_retryable());
        let body = json!({"error": {"message": "gone", "http_status": 404, "availability": {"code": "free_variant_ended"}}});
        let failure = run(404, &[], body);
        assert_eq!(
            (failure.class(), failure.subkind()),
            (ErrorClass::ModelNotFound, Some("free_variant_ended"))
        );
    }

    #[test]
    fn the_head_alone_gives_a_class_and_a_wait() {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        response.headers_mut().insert(
            "x-ratelimit-reset",
            HeaderValue::from_static("1773152645000"),
        );
        let classifier = OpenRouterClassifier::new().with_clock(now);
        match classifier.classify_response(&response) {
            Verdict::Failure(failure) => {
                assert_eq!(failure.class(), ErrorClass::RateLimited);
                assert_eq!(failure.retry_after(), Some(Duration::from_secs(60)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classify_body_tells_success_from_an_error_inside_a_200() {
        let classifier = OpenRouterClassifier::new().with_clock(now);
        let ok = br#"{"id":"x","choices":[{"finish_reason":"stop"}]}"#;
        assert!(
            classifier
                .classify_body(StatusCode::OK, &HeaderMap::new(), ok)
                .is_none()
        );
        let failed = br#"{"error":{"code":502,"message":"x"}}"#;
        let failure = classifier
            .classify_body(StatusCode::OK, &HeaderMap::new(), failed)
            .unwrap();
        assert_eq!(failure.class(), ErrorClass::UpstreamUnavailable);
        let failure = classifier
            .classify_body(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>")
            .unwrap();
        assert_eq!(failure.upstream_status(), Some(StatusCode::BAD_GATEWAY));
    }
}
