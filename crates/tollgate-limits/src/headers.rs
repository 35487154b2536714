//! [`RateLimitHeaders`]: OpenAI's `x-ratelimit-*` response headers.

use std::fmt::Write;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::gcra::Decision;

/// `x-ratelimit-limit-requests`: the key's requests per minute.
pub const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
/// `x-ratelimit-remaining-requests`: requests the key may still send at once.
pub const REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
/// `x-ratelimit-reset-requests`: time until the request limit is whole again.
pub const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
/// `x-ratelimit-limit-tokens`: the key's tokens per minute.
pub const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
/// `x-ratelimit-remaining-tokens`: tokens the key may still use at once.
pub const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
/// `x-ratelimit-reset-tokens`: time until the token limit is whole again.
pub const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// The state of one limit, as the headers show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    /// The limit per minute.
    pub limit: u64,
    /// What is left for an immediate request.
    pub remaining: u64,
    /// Time until the limit is whole again.
    pub reset: Duration,
}

impl LimitState {
    pub(crate) fn from_decision(limit: u64, decision: &Decision) -> Self {
        LimitState {
            limit,
            remaining: decision.remaining,
            reset: decision.reset_after,
        }
    }
}

/// OpenAI's rate-limit headers for one request: the request limit (when
/// the key has an rpm limit) and the token limit (when it has a tpm
/// limit), as the checks of that request left them.
///
/// The layer inserts them into every response it lets through; a
/// rejection carries them in its [`RateLimited`](crate::RateLimited)
/// error, for the gateway to add to its error response
/// ([`RateLimited::to_response`](crate::RateLimited::to_response) does
/// both).
///
/// Resets are written like OpenAI's (Go durations): `20ms`, `1s`, `1.5s`,
/// `6m0s`, `1h0m0s`, rounded up to the millisecond.
///
/// ```
/// use std::time::Duration;
/// use tollgate_limits::{LimitState, RateLimitHeaders};
///
/// let headers = RateLimitHeaders {
///     requests: Some(LimitState { limit: 60, remaining: 59, reset: Duration::from_secs(1) }),
///     tokens: None,
/// };
/// let mut map = http::HeaderMap::new();
/// headers.apply(&mut map);
/// assert_eq!(map["x-ratelimit-limit-requests"], "60");
/// assert_eq!(map["x-ratelimit-remaining-requests"], "59");
/// assert_eq!(map["x-ratelimit-reset-requests"], "1s");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// The request (rpm) limit, when the key has one.
    pub requests: Option<LimitState>,
    /// The token (tpm) limit, when the key has one.
    pub tokens: Option<LimitState>,
}

impl RateLimitHeaders {
    /// Keeps, for requests and for tokens, the state with the least left:
    /// what a client must respect when several limits apply (a key's and
    /// its team's).
    pub(crate) fn tighten(&mut self, other: &RateLimitHeaders) {
        for (mine, theirs) in [
            (&mut self.requests, other.requests),
            (&mut self.tokens, other.tokens),
        ] {
            match (mine.as_ref(), theirs) {
                (None, Some(theirs)) => *mine = Some(theirs),
                (Some(kept), Some(theirs)) if theirs.remaining < kept.remaining => {
                    *mine = Some(theirs);
                }
                _ => {}
            }
        }
    }

    /// Whether there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Inserts the headers into `headers` (replacing any already there).
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(state) = &self.requests {
            insert(
                headers,
                [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
                state,
            );
        }
        if let Some(state) = &self.tokens {
            insert(
                headers,
                [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS],
                state,
            );
        }
    }
}

fn insert(headers: &mut HeaderMap, [limit, remaining, reset]: [HeaderName; 3], state: &LimitState) {
    headers.insert(limit, HeaderValue::from(state.limit));
    headers.insert(remaining, HeaderValue::from(state.remaining));
    if let Ok(value) = HeaderValue::from_str(&format_reset(state.reset)) {
        headers.insert(reset, value);
    }
}

/// A duration the way OpenAI's reset headers write it (Go's
/// `time.Duration` format), rounded up to the millisecond: `0s`, `20ms`,
/// `1s`, `1.5s`, `6m0s`, `1h2m3.5s`.
pub fn format_reset(duration: Duration) -> String {
    let ms = duration.as_nanos().div_ceil(1_000_000);
    let ms = u64::try_from(ms).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{seconds}");
    if millis > 0 {
        let fraction = format!("{millis:03}");
        let _ = write!(out, ".{}", fraction.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_written_like_openai() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ms"),
            (Duration::from_millis(20), "20ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(59_999), "59.999s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(90_250), "1m30.25s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_reset(duration), text, "{duration:?}");
        }
    }
}
