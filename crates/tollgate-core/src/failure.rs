//! [`Failure`]: a classified error, and its OpenAI-shaped rendering.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::class::{ErrorClass, Scope, TimeoutKind};

/// The boxed error type tower services in Tollgate return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A classified failure: the class, a message safe to show a client, and the
/// hints the resilience layers act on.
///
/// A `Failure` is what a classifier returns and what a layer boxes into its
/// `BoxError`; callers downcast to it (`err.downcast_ref::<Failure>()`) or use
/// [`Failure::from_error`], which also classifies foreign errors.
///
/// The message must already be safe for a client: no keys, no internal host
/// names, no raw provider bodies. Build it from
/// [`sanitize_message`](crate::sanitize_message) when it
/// comes from upstream text, and pass it through a
/// [`Redactor`](crate::Redactor) before it reaches a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    // Boxed: failures are the cold path, and a small `Failure` keeps every
    // `Result<_, Failure>` on the hot path small.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    class: ErrorClass,
    message: Cow<'static, str>,
    subkind: Option<Cow<'static, str>>,
    scope: Option<Scope>,
    timeout: Option<TimeoutKind>,
    retry_after: Option<Duration>,
    upstream_status: Option<StatusCode>,
    status: Option<StatusCode>,
    param: Option<Cow<'static, str>>,
    code: Option<Cow<'static, str>>,
    retryable: Option<bool>,
    fallback_eligible: Option<bool>,
}

impl Failure {
    /// A failure of `class` with a client-safe `message`.
    pub fn new(class: ErrorClass, message: impl Into<Cow<'static, str>>) -> Self {
        Failure {
            inner: Box::new(Inner {
                class,
                message: message.into(),
                subkind: None,
                scope: None,
                timeout: None,
                retry_after: None,
                upstream_status: None,
                status: None,
                param: None,
                code: None,
                retryable: None,
                fallback_eligible: None,
            }),
        }
    }

    /// A timeout of the given kind, with a standard message.
    pub fn timeout(kind: TimeoutKind) -> Self {
        let message = match kind {
            TimeoutKind::Connect => "timed out connecting to the upstream",
            TimeoutKind::FirstByte => "the upstream did not start answering in time",
            TimeoutKind::StreamIdle => "the upstream stream stalled",
            TimeoutKind::Total => "the upstream did not finish in time",
        };
        let mut failure = Failure::new(ErrorClass::Timeout, message);
        failure.inner.timeout = Some(kind);
        failure
    }

    /// Sets the finer-grained kind within the class (`free_daily_quota`,
    /// `provider_error`...).
    pub fn with_subkind(mut self, subkind: impl Into<Cow<'static, str>>) -> Self {
        self.inner.subkind = Some(subkind.into());
        self
    }

    /// Sets whose limit was hit.
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.inner.scope = Some(scope);
        self
    }

    /// Sets how long to wait before trying the same target again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.inner.retry_after = Some(retry_after);
        self
    }

    /// Records the status the upstream answered with.
    pub fn with_upstream_status(mut self, status: StatusCode) -> Self {
        self.inner.upstream_status = Some(status);
        self
    }

    /// Overrides the HTTP status the client gets (default: the class's).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// Names the request parameter at fault (`error.param`).
    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.inner.param = Some(param.into());
        self
    }

    /// Overrides `error.code` (default: the class's).
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.inner.code = Some(code.into());
        self
    }

    /// Overrides whether a retry on the same target may help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.inner.retryable = Some(retryable);
        self
    }

    /// Overrides whether another target may help.
    pub fn with_fallback_eligible(mut self, eligible: bool) -> Self {
        self.inner.fallback_eligible = Some(eligible);
        self
    }

    /// The class.
    pub fn class(&self) -> ErrorClass {
        self.inner.class
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The finer-grained kind, when known.
    pub fn subkind(&self) -> Option<&str> {
        self.inner.subkind.as_deref()
    }

    /// The subkind of a call a circuit breaker rejected without reaching
    /// the upstream: set by the breaker, read by layers above it (a retry
    /// does not wait on it).
    pub const CIRCUIT_OPEN: &'static str = "circuit_open";

    /// Whether a circuit breaker rejected the call ([`Failure::CIRCUIT_OPEN`]).
    pub fn is_circuit_open(&self) -> bool {
        self.subkind() == Some(Failure::CIRCUIT_OPEN)
    }

    /// Whose limit was hit, when known.
    pub fn scope(&self) -> Option<Scope> {
        self.inner.scope
    }

    /// Which deadline was missed, for [`ErrorClass::Timeout`].
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        self.inner.timeout
    }

    /// How long to wait before trying the same target again, when the upstream
    /// said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The status the upstream answered with, when there was an answer.
    pub fn upstream_status(&self) -> Option<StatusCode> {
        self.inner.upstream_status
    }

    /// Whether a retry on the same target may help.
    pub fn is_retryable(&self) -> bool {
        self.inner.retryable.unwrap_or(self.inner.class.retryable())
    }

    /// Whether another target may help.
    pub fn is_fallback_eligible(&self) -> bool {
        self.inner
            .fallback_eligible
            .unwrap_or(self.inner.class.fallback_eligible())
    }

    /// Whether the failure counts against the target's circuit breaker.
    pub fn counts_against_breaker(&self) -> bool {
        self.inner.class.counts_against_breaker()
    }

    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        self.inner.status.unwrap_or(self.inner.class.status())
    }

    /// The OpenAI error body: `{"error":{"message","type","param","code"}}`.
    pub fn to_openai_body(&self) -> Bytes {
        let body = OpenAiErrorBody {
            error: OpenAiError {
                message: &self.inner.message,
                r#type: self.inner.class.openai_type(),
                param: self.inner.param.as_deref(),
                code: self
                    .inner
                    .code
                    .as_deref()
                    .unwrap_or(self.inner.class.openai_code()),
            },
        };
        // Serialising borrowed strings into a Vec cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// The failure as a complete HTTP response: status, `content-type`, the
    /// OpenAI error body and, when known, `retry-after` (whole seconds,
    /// rounded up).
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let mut response = Response::new(B::from(self.to_openai_body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.inner.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    /// The `Failure` in `error` or its sources, if there is one: tells a real
    /// classification from the `internal` fallback of
    /// [`from_error`](Self::from_error).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Failure> {
        std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref())
    }

    /// Whether the retry decision was set explicitly (by
    /// [`with_retryable`](Self::with_retryable)), rather than left to the
    /// class's default.
    pub fn retryable_override(&self) -> Option<bool> {
        self.inner.retryable
    }

    /// The same failure with its client-facing texts — `message`, `param`
    /// and `code` — passed through `redact` (see
    /// [`Redactor::redact_failure`](crate::Redactor::redact_failure)).
    pub(crate) fn map_texts(&self, redact: impl Fn(&str) -> String) -> Failure {
        let mut failure = self.clone();
        let inner = &mut failure.inner;
        inner.message = redact(&inner.message).into();
        if let Some(param) = &inner.param {
            inner.param = Some(redact(param).into());
        }
        if let Some(code) = &inner.code {
            inner.code = Some(redact(code).into());
        }
        failure
    }

    /// Finds a `Failure` in `error` or its sources, or classifies the error: a
    /// connection that could not be made or was lost is
    /// [`ErrorClass::UpstreamUnavailable`], an I/O timeout is a
    /// [`TimeoutKind::Total`] timeout, anything else is
    /// [`ErrorClass::Internal`].
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Failure {
        let mut source = Some(error);
        while let Some(err) = source {
            if let Some(failure) = err.downcast_ref::<Failure>() {
                return failure.clone();
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                match io.kind() {
                    TimedOut => return Failure::timeout(TimeoutKind::Total),
                    ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe
                    | UnexpectedEof | NotConnected | AddrNotAvailable => {
                        return Failure::new(
                            ErrorClass::UpstreamUnavailable,
                            "the connection to the upstream failed",
                        );
                    }
                    _ => {}
                }
            }
            source = err.source();
        }
        Failure::new(ErrorClass::Internal, "internal error")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.class, self.inner.message)
    }
}

impl std::error::Error for Failure {}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    r#type: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_body_has_the_four_fields() {
        let failure = Failure::new(ErrorClass::BadRequest, "bad \"thing\"").with_param("model");
        let body: serde_json::Value = serde_json::from_slice(&failure.to_openai_body()).unwrap();
        assert_eq!(body["error"]["message"], "bad \"thing\"");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["code"], "invalid_request");
    }

    #[test]
    fn response_carries_status_and_retry_after_rounded_up() {
        let failure = Failure::new(ErrorClass::RateLimited, "slow down")
            .with_retry_after(Duration::from_millis(1500));
        let response: Response<Bytes> = failure.to_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn overrides_win_over_class_defaults() {
        let failure = Failure::new(ErrorClass::RateLimited, "x")
            .with_retryable(false)
            .with_fallback_eligible(false)
            .with_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(!failure.is_retryable());
        assert!(!failure.is_fallback_eligible());
        assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn from_error_finds_a_nested_failure_and_classifies_io() {
        #[derive(Debug)]
        struct Wrapper(Failure);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapper")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = Failure::timeout(TimeoutKind::StreamIdle);
        assert_eq!(Failure::from_error(&Wrapper(inner.clone())), inner);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            Failure::from_error(&refused).class(),
            ErrorClass::UpstreamUnavailable
        );
        let other = std::io::Error::other("boom");
        assert_eq!(Failure::from_error(&other).class(), ErrorClass::Internal);
    }
}
