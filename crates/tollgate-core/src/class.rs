//! The error classes every layer agrees on.

use std::fmt;

use http::StatusCode;

/// What went wrong, in the one vocabulary that retry, breaker, fallback and cost
/// share (see the error table in the README).
///
/// Each class carries defaults — whether a retry may help, whether another
/// target may help, whether it says "this deployment is unhealthy" — which a
/// [`Failure`](crate::Failure) can override case by case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Too many requests or tokens; see the [`Scope`] for whose limit it was.
    RateLimited,
    /// The upstream did not answer in time; see [`TimeoutKind`].
    Timeout,
    /// 5xx, 529, connection refused or reset, an error inside a 200 body.
    UpstreamUnavailable,
    /// The prompt and the requested completion do not fit the model's window.
    ContextWindowExceeded,
    /// The provider refused the content.
    ContentPolicy,
    /// A key was missing or rejected.
    Auth,
    /// The account or key has no credit left (402, OpenAI's `insufficient_quota`).
    InsufficientCredits,
    /// The model does not exist, or has no endpoint that serves the request.
    ModelNotFound,
    /// The request itself is wrong; nobody else will accept it either.
    BadRequest,
    /// A stream was cut or stalled after bytes had gone to the client.
    StreamInterrupted,
    /// A spending budget is exhausted.
    BudgetExceeded,
    /// A bug or an unexpected state inside the gateway.
    Internal,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 12] = [
        ErrorClass::RateLimited,
        ErrorClass::Timeout,
        ErrorClass::UpstreamUnavailable,
        ErrorClass::ContextWindowExceeded,
        ErrorClass::ContentPolicy,
        ErrorClass::Auth,
        ErrorClass::InsufficientCredits,
        ErrorClass::ModelNotFound,
        ErrorClass::BadRequest,
        ErrorClass::StreamInterrupted,
        ErrorClass::BudgetExceeded,
        ErrorClass::Internal,
    ];

    /// The snake_case name used in logs, metrics labels and config.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Timeout => "timeout",
            ErrorClass::UpstreamUnavailable => "upstream_unavailable",
            ErrorClass::ContextWindowExceeded => "context_window_exceeded",
            ErrorClass::ContentPolicy => "content_policy",
            ErrorClass::Auth => "auth",
            ErrorClass::InsufficientCredits => "insufficient_credits",
            ErrorClass::ModelNotFound => "model_not_found",
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::StreamInterrupted => "stream_interrupted",
            ErrorClass::BudgetExceeded => "budget_exceeded",
            ErrorClass::Internal => "internal",
        }
    }

    /// Parses the name returned by [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|class| class.as_str() == name)
    }

    /// Whether sending the same request to the same target again may succeed.
    pub const fn retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimited | ErrorClass::Timeout | ErrorClass::UpstreamUnavailable
        )
    }

    /// Whether another target (a fallback model group) may succeed where this one
    /// failed.
    ///
    /// Content-policy refusals are not eligible by default: the client gets the
    /// refusal, not another model's answer, unless `content_policy_fallbacks`
    /// says otherwise.
    pub const fn fallback_eligible(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimited
                | ErrorClass::Timeout
                | ErrorClass::UpstreamUnavailable
                | ErrorClass::ContextWindowExceeded
                | ErrorClass::Auth
                | ErrorClass::InsufficientCredits
                | ErrorClass::ModelNotFound
        )
    }

    /// Whether the failure says the deployment is unhealthy, and so counts
    /// against its circuit breaker. Failures caused by the request itself never
    /// do.
    pub const fn counts_against_breaker(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimited
                | ErrorClass::Timeout
                | ErrorClass::UpstreamUnavailable
                | ErrorClass::Auth
                | ErrorClass::InsufficientCredits
                | ErrorClass::StreamInterrupted
        )
    }

    /// The HTTP status a client gets for this class.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorClass::UpstreamUnavailable | ErrorClass::StreamInterrupted => {
                StatusCode::BAD_GATEWAY
            }
            ErrorClass::ContextWindowExceeded
            | ErrorClass::ContentPolicy
            | ErrorClass::BadRequest
            | ErrorClass::BudgetExceeded => StatusCode::BAD_REQUEST,
            ErrorClass::Auth => StatusCode::UNAUTHORIZED,
            ErrorClass::InsufficientCredits => StatusCode::PAYMENT_REQUIRED,
            ErrorClass::ModelNotFound => StatusCode::NOT_FOUND,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error.type` of the OpenAI error body.
    pub const fn openai_type(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate_limit_error",
            ErrorClass::Timeout => "timeout_error",
            ErrorClass::UpstreamUnavailable | ErrorClass::StreamInterrupted => "upstream_error",
            ErrorClass::ContextWindowExceeded
            | ErrorClass::ContentPolicy
            | ErrorClass::BadRequest
            | ErrorClass::ModelNotFound => "invalid_request_error",
            ErrorClass::Auth => "authentication_error",
            ErrorClass::InsufficientCredits => "insufficient_quota",
            ErrorClass::BudgetExceeded => "budget_exceeded",
            ErrorClass::Internal => "server_error",
        }
    }

    /// The default `error.code` of the OpenAI error body; OpenAI's own code where
    /// one exists.
    pub const fn openai_code(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate_limit_exceeded",
            ErrorClass::Timeout => "timeout",
            ErrorClass::UpstreamUnavailable => "upstream_unavailable",
            ErrorClass::ContextWindowExceeded => "context_length_exceeded",
            ErrorClass::ContentPolicy => "content_policy_violation",
            ErrorClass::Auth => "invalid_api_key",
            ErrorClass::InsufficientCredits => "insufficient_quota",
            ErrorClass::ModelNotFound => "model_not_found",
            ErrorClass::BadRequest => "invalid_request",
            ErrorClass::StreamInterrupted => "stream_interrupted",
            ErrorClass::BudgetExceeded => "budget_exceeded",
            ErrorClass::Internal => "internal_error",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose limit a rate limit (or a quota) was.
///
/// The scope tells a fallback cascade whether moving on helps: a limit on one
/// model is fixed by another model, a limit on the whole account pool is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// This request only (too many tokens asked for, say).
    Request,
    /// One model's capacity.
    Model,
    /// The provider behind the model (OpenRouter's upstream providers).
    Provider,
    /// The API key.
    Key,
    /// The whole account.
    Account,
    /// A pool shared by a family of models of one account (OpenRouter's free
    /// models share one per-minute and one per-day limit).
    AccountFreePool,
}

impl Scope {
    /// The snake_case name used in logs and fixtures.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Request => "request",
            Scope::Model => "model",
            Scope::Provider => "provider",
            Scope::Key => "key",
            Scope::Account => "account",
            Scope::AccountFreePool => "account_free_pool",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which deadline a [`ErrorClass::Timeout`] missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Opening the TCP (and TLS) connection.
    Connect,
    /// Waiting for the response headers, or for the first token of a stream.
    FirstByte,
    /// A stream went silent between two chunks.
    StreamIdle,
    /// The whole request, body included.
    Total,
}

impl TimeoutKind {
    /// The snake_case name used in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::FirstByte => "first_byte",
            TimeoutKind::StreamIdle => "stream_idle",
            TimeoutKind::Total => "total",
        }
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorClass {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorClass {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ErrorClass::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
            serde::de::Error::custom(format!(
                "unknown error class `{name}`, expected one of {}",
                names.join(", ")
            ))
        })
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_through_their_names() {
        for class in ErrorClass::ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
            assert_eq!(serde_json::from_str::<ErrorClass>(&json).unwrap(), class);
        }
        let err = serde_json::from_str::<ErrorClass>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("rate_limited"));
    }
}
