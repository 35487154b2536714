//! [`RateLimited`]: the error a rejected request gets.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use tollgate_core::{ErrorClass, Failure, Scope};

use crate::headers::RateLimitHeaders;
use crate::limits::Budget;

/// How long a request rejected by the parallel limit is told to wait: a
/// permit comes back when some response ends, which nobody can predict.
pub const PARALLEL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Which limit rejected a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
    /// Requests in flight at once.
    Parallel,
    /// The spending budget.
    Budget,
}

impl Limit {
    /// The snake_case name, also the [`Failure`]'s subkind: `rpm`, `tpm`,
    /// `max_parallel`, `budget`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Limit::Requests => "rpm",
            Limit::Tokens => "tpm",
            Limit::Parallel => "max_parallel",
            Limit::Budget => "budget",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request was rejected by one of its key's limits, without reaching
/// the inner service.
///
/// Returned boxed in the service's `BoxError`. Its
/// [`source`](std::error::Error::source) is the classified [`Failure`], so
/// [`Failure::from_error`] finds the class; the error also carries the
/// [`RateLimitHeaders`] a `Failure` cannot, so find it with
/// [`RateLimited::find`] and render both with
/// [`to_response`](Self::to_response):
///
/// - rpm, tpm, parallel: [`ErrorClass::RateLimited`], status 429, code
///   `rate_limit_exceeded`, `retry_after` set (a `Retry-After` header), a
///   message naming the key and the limit — `Rate limit exceeded for key
///   'team-a': 60 requests per minute. Retry after 1 s.`;
/// - budget: [`ErrorClass::BudgetExceeded`] with status **429** (LiteLLM
///   answers 400; a client that backs off on 429 does the right thing),
///   type and code `budget_exceeded`, `retry_after` the time to the next
///   window (none for a lifetime budget, which never resets).
///
/// All are scoped to the key ([`Scope::Key`]) and not fallback-eligible:
/// another model would hit the same key's limit.
///
/// ```
/// use std::sync::Arc;
/// use http::{Request, Response};
/// use tollgate_core::{ErrorClass, Failure};
/// use tollgate_limits::{KeyLimits, Limit, MemoryStore, RateLimitLayer, RateLimited};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = RateLimitLayer::new(Arc::new(MemoryStore::new()));
/// let service = layer.layer(service_fn(|_: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
/// }));
/// let request = || {
///     let mut request = Request::new(());
///     request.extensions_mut().insert(Arc::new(KeyLimits::new("team-a").rpm(1)));
///     request
/// };
/// service.clone().oneshot(request()).await.unwrap();
/// let error = service.oneshot(request()).await.unwrap_err();
///
/// let limited = RateLimited::find(&*error).unwrap();
/// assert_eq!(limited.limit(), Limit::Requests);
/// assert_eq!(Failure::from_error(&*error).class(), ErrorClass::RateLimited);
/// let response: Response<bytes::Bytes> = limited.to_response();
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "60");
/// assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimited {
    limit: Limit,
    key: Arc<str>,
    headers: RateLimitHeaders,
    failure: Failure,
}

impl RateLimited {
    pub(crate) fn requests(
        key: Arc<str>,
        rpm: u32,
        retry_after: Duration,
        headers: RateLimitHeaders,
    ) -> Self {
        let message = format!(
            "Rate limit exceeded for key '{key}': {rpm} requests per minute. Retry after {} s.",
            whole_seconds(retry_after)
        );
        RateLimited::rate(Limit::Requests, key, message, retry_after, headers)
    }

    pub(crate) fn tokens(
        key: Arc<str>,
        tpm: u64,
        retry_after: Duration,
        headers: RateLimitHeaders,
    ) -> Self {
        let message = format!(
            "Rate limit exceeded for key '{key}': {tpm} tokens per minute. Retry after {} s.",
            whole_seconds(retry_after)
        );
        RateLimited::rate(Limit::Tokens, key, message, retry_after, headers)
    }

    pub(crate) fn parallel(key: Arc<str>, max: u32, headers: RateLimitHeaders) -> Self {
        let retry_after = PARALLEL_RETRY_AFTER;
        let message = format!(
            "Rate limit exceeded for key '{key}': {max} parallel requests. Retry after {} s.",
            whole_seconds(retry_after)
        );
        RateLimited::rate(Limit::Parallel, key, message, retry_after, headers)
    }

    pub(crate) fn budget(
        key: Arc<str>,
        budget: &Budget,
        spent_picos: u64,
        retry_after: Option<Duration>,
        headers: RateLimitHeaders,
    ) -> Self {
        let mut message = format!(
            "Budget exceeded for key '{key}': spent {} of {}",
            format_dollars(spent_picos),
            format_dollars(budget.max_picos),
        );
        match (budget.duration, retry_after) {
            (Some(window), Some(wait)) => message.push_str(&format!(
                " this {} window. Retry after {} s.",
                format_window(window),
                whole_seconds(wait)
            )),
            _ => message.push_str(" (lifetime budget)."),
        }
        let mut failure = Failure::new(ErrorClass::BudgetExceeded, message)
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .with_scope(Scope::Key)
            .with_subkind(Limit::Budget.as_str())
            .with_fallback_eligible(false);
        if let Some(wait) = retry_after {
            failure = failure.with_retry_after(wait);
        }
        RateLimited {
            limit: Limit::Budget,
            key,
            headers,
            failure,
        }
    }

    fn rate(
        limit: Limit,
        key: Arc<str>,
        message: String,
        retry_after: Duration,
        headers: RateLimitHeaders,
    ) -> Self {
        let failure = Failure::new(ErrorClass::RateLimited, message)
            .with_scope(Scope::Key)
            .with_subkind(limit.as_str())
            .with_retry_after(retry_after)
            .with_fallback_eligible(false);
        RateLimited {
            limit,
            key,
            headers,
            failure,
        }
    }

    /// Which limit rejected the request.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// The name of the key whose limit it was (never the key itself).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How long to wait before trying again; `None` for a lifetime budget.
    pub fn retry_after(&self) -> Option<Duration> {
        self.failure.retry_after()
    }

    /// The rate-limit headers as the request's checks left them.
    pub fn headers(&self) -> &RateLimitHeaders {
        &self.headers
    }

    /// The error as a classified [`Failure`] (also its `source()`).
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// The rejection as a complete response: the [`Failure`]'s
    /// OpenAI-shaped error, status and `Retry-After`, plus the
    /// `x-ratelimit-*` headers.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let mut response = self.failure.to_response();
        self.headers.apply(response.headers_mut());
        response
    }

    /// The `RateLimited` in `error` or its sources, if there is one.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a RateLimited> {
        std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref())
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.failure.message())
    }
}

impl std::error::Error for RateLimited {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}

/// Whole seconds, rounded up, at least 1 (what `Retry-After` says).
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Picodollars as dollars, exactly, with at least cents: `$10.00`,
/// `$0.0015`, `$1.000000000001`.
pub(crate) fn format_dollars(picos: u64) -> String {
    let mut text = String::from("$");
    let _ = tollgate_core::write_picos(&mut text, i128::from(picos));
    // Cents at least, as money is usually shown.
    match text.find('.') {
        None => text.push_str(".00"),
        Some(dot) if text.len() - dot == 2 => text.push('0'),
        Some(_) => {}
    }
    text
}

/// A budget window as LiteLLM's `budget_duration` writes it: `30d`, `1h`,
/// `15m`, `90s`.
fn format_window(window: Duration) -> String {
    let secs = window.as_secs();
    match secs {
        0 => format!("{}ms", window.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_are_exact() {
        assert_eq!(format_dollars(0), "$0.00");
        assert_eq!(
            format_dollars(10 * tollgate_core::PICOS_PER_DOLLAR),
            "$10.00"
        );
        assert_eq!(format_dollars(tollgate_core::PICOS_PER_DOLLAR / 2), "$0.50");
        assert_eq!(format_dollars(1_500_000_000), "$0.0015");
        assert_eq!(
            format_dollars(tollgate_core::PICOS_PER_DOLLAR + 1),
            "$1.000000000001"
        );
    }

    #[test]
    fn budget_errors_are_429_budget_exceeded() {
        let budget = Budget::per(Budget::dollars(10), Duration::from_secs(86_400));
        let error = RateLimited::budget(
            "team-a".into(),
            &budget,
            Budget::dollars(10),
            Some(Duration::from_secs(3600)),
            RateLimitHeaders::default(),
        );
        assert_eq!(
            error.to_string(),
            "Budget exceeded for key 'team-a': spent $10.00 of $10.00 this 1d window. \
             Retry after 3600 s."
        );
        let response: Response<Bytes> = error.to_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "3600");
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"]["type"], "budget_exceeded");
        assert_eq!(body["error"]["code"], "budget_exceeded");

        let lifetime = RateLimited::budget(
            "team-a".into(),
            &Budget::lifetime(5),
            7,
            None,
            RateLimitHeaders::default(),
        );
        assert_eq!(lifetime.retry_after(), None);
        let response: Response<Bytes> = lifetime.to_response();
        assert!(response.headers().get("retry-after").is_none());
    }
}
