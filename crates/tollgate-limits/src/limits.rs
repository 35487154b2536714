//! [`KeyLimits`] and [`Budget`]: who is limited, and how.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::RequestBody;
use tollgate_core::extensions::KeyName;

/// Limits a request counts against besides its key's — its team's, its
/// end user's — as an `Arc<SharedLimits>` request extension next to the
/// `Arc<`[`KeyLimits`]`>`. Each is checked after the key's, in order, under
/// its own name, so the stricter limit wins; a rejection names the one
/// that refused.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_limits::{KeyLimits, SharedLimits};
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Arc::new(KeyLimits::new("app-key").rpm(600)));
/// let team = Arc::new(KeyLimits::new("team:search").rpm(100));
/// request.extensions_mut().insert(Arc::new(SharedLimits(vec![team])));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedLimits(pub Vec<Arc<KeyLimits>>);

/// The limits of one API key, as an `Arc<KeyLimits>` request extension.
///
/// Whatever authenticates the request (the gateway's auth, or your own
/// middleware) inserts it; a request without one passes unlimited. Each
/// limit is optional: `None` means "no limit of this kind".
///
/// `name` identifies the key in the store and in error messages: the key's
/// alias or a hash of it, **never the key itself** (it is shown to the
/// client in a 429's message, and used, hashed, in Redis key names).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tollgate_limits::{Budget, KeyLimits};
///
/// let limits = KeyLimits::new("team-a")
///     .rpm(60)
///     .tpm(100_000)
///     .max_parallel(4)
///     .max_budget(Budget::per(Budget::dollars(10), Duration::from_secs(86_400)));
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Arc::new(limits));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLimits {
    /// The key's name or hash, never the key.
    pub name: Arc<str>,
    /// Requests per minute; a key may send this many at once, then one per
    /// `60 s / rpm`.
    pub rpm: Option<u32>,
    /// Tokens per minute, reserved at the request from its token estimate
    /// and reconciled with the real usage when the response ends.
    pub tpm: Option<u64>,
    /// Requests in flight at once (a streaming response is in flight until
    /// its body ends or is dropped).
    pub max_parallel: Option<u32>,
    /// Spend allowed per budget window (or in the key's lifetime).
    pub max_budget: Option<Budget>,
}

impl KeyLimits {
    /// No limits yet for the key called `name` (an alias or a hash, never the
    /// key); add them with the setters.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        KeyLimits {
            name: name.into(),
            rpm: None,
            tpm: None,
            max_parallel: None,
            max_budget: None,
        }
    }

    /// No limits yet for the key `name` names (core's request extension).
    pub fn for_key(name: &KeyName) -> Self {
        KeyLimits::new(name.0.clone())
    }

    /// Sets the requests-per-minute limit.
    pub fn rpm(mut self, rpm: u32) -> Self {
        self.rpm = Some(rpm);
        self
    }

    /// Sets the tokens-per-minute limit.
    pub fn tpm(mut self, tpm: u64) -> Self {
        self.tpm = Some(tpm);
        self
    }

    /// Sets the limit of requests in flight at once.
    pub fn max_parallel(mut self, max: u32) -> Self {
        self.max_parallel = Some(max);
        self
    }

    /// Sets the spending budget.
    pub fn max_budget(mut self, budget: Budget) -> Self {
        self.max_budget = Some(budget);
        self
    }

    /// Whether no limit is set (the layer lets such a request through
    /// without a look at the store).
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.max_parallel.is_none()
            && self.max_budget.is_none()
    }
}

/// A spending budget: at most `max_picos` per window of `duration`, or in
/// the key's whole lifetime when `duration` is `None`.
///
/// Money is exact: integer picodollars, as the cost layer counts it.
/// Windows are aligned to the Unix epoch (a one-day budget resets at 00:00
/// UTC), computed from the layer's [`Clock`](crate::Clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    /// The most a key may spend in a window, in picodollars.
    pub max_picos: u64,
    /// The window (LiteLLM's `budget_duration`); `None` for a lifetime
    /// budget, which never resets.
    pub duration: Option<Duration>,
}

impl Budget {
    /// A budget of `max_picos` per window of `duration`.
    pub fn per(max_picos: u64, duration: Duration) -> Self {
        Budget {
            max_picos,
            duration: Some(duration),
        }
    }

    /// A budget of `max_picos` for the key's whole lifetime.
    pub fn lifetime(max_picos: u64) -> Self {
        Budget {
            max_picos,
            duration: None,
        }
    }

    /// `dollars` in picodollars (saturating).
    pub const fn dollars(dollars: u64) -> u64 {
        dollars.saturating_mul(tollgate_core::PICOS_PER_DOLLAR)
    }

    /// The window that holds `now_unix_ms`.
    pub fn window_at(&self, now_unix_ms: i64) -> BudgetWindow {
        BudgetWindow::at(now_unix_ms, self.duration)
    }
}

/// One budget window: where spend is counted. Its start (Unix ms) is its
/// id; a lifetime budget has one window, starting at 0, that never ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BudgetWindow {
    start_unix_ms: i64,
    duration: Option<Duration>,
}

impl BudgetWindow {
    /// The window of `duration` (aligned to the Unix epoch) that holds
    /// `now_unix_ms`; the lifetime window for `None` (or a zero duration).
    pub fn at(now_unix_ms: i64, duration: Option<Duration>) -> Self {
        let len = duration.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        if len <= 0 {
            return BudgetWindow::lifetime();
        }
        BudgetWindow {
            start_unix_ms: now_unix_ms - now_unix_ms.rem_euclid(len),
            duration,
        }
    }

    /// The lifetime window.
    pub const fn lifetime() -> Self {
        BudgetWindow {
            start_unix_ms: 0,
            duration: None,
        }
    }

    /// The window's start, in Unix ms: its id (0 for the lifetime window).
    pub fn start_unix_ms(&self) -> i64 {
        self.start_unix_ms
    }

    /// The window's length; `None` for the lifetime window.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// When the window ends, in Unix ms; `None` for the lifetime window.
    pub fn end_unix_ms(&self) -> Option<i64> {
        let len = i64::try_from(self.duration?.as_millis()).unwrap_or(i64::MAX);
        Some(self.start_unix_ms.saturating_add(len))
    }

    /// Time from `now_unix_ms` to the end of the window; `None` for the
    /// lifetime window.
    pub fn remaining(&self, now_unix_ms: i64) -> Option<Duration> {
        let left = self.end_unix_ms()?.saturating_sub(now_unix_ms).max(0);
        Some(Duration::from_millis(left.unsigned_abs()))
    }
}

/// The tokens a request is expected to use, reserved against its key's tpm
/// limit: the parsed request's `max_tokens` (or `max_completion_tokens`),
/// else its length / 4 (rounded up); 0 without a parsed request (a body
/// that is not core's [`RequestBody`] carrying its view).
///
/// The reservation is reconciled with the real usage when the response
/// ends (see [`UsageReport`](tollgate_core::extensions::UsageReport)).
pub fn estimate_tokens<B: 'static>(request: &http::Request<B>) -> u64 {
    // The limits wrap any body; only core's carries the parsed request.
    let chat = (request.body() as &dyn Any)
        .downcast_ref::<RequestBody>()
        .and_then(RequestBody::chat);
    let Some(chat) = chat else {
        return 0;
    };
    chat.max_tokens()
        .unwrap_or_else(|| (chat.bytes().len() as u64).div_ceil(4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::ChatRequest;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let day = Duration::from_secs(86_400);
        let w = BudgetWindow::at(86_400_000 * 3 + 5, Some(day));
        assert_eq!(w.start_unix_ms(), 86_400_000 * 3);
        assert_eq!(w.end_unix_ms(), Some(86_400_000 * 4));
        assert_eq!(
            w.remaining(86_400_000 * 4 - 1000),
            Some(Duration::from_secs(1))
        );
        // Before the epoch too.
        let w = BudgetWindow::at(-1, Some(day));
        assert_eq!(w.start_unix_ms(), -86_400_000);
        let life = BudgetWindow::at(123, None);
        assert_eq!(life, BudgetWindow::lifetime());
        assert_eq!(life.remaining(123), None);
    }

    #[test]
    fn the_estimate_prefers_max_tokens() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        // Not parsed (nor parsable by this layer): no estimate.
        assert_eq!(estimate_tokens(&http::Request::new(body)), 0);
        let plain = RequestBody::new(body.into());
        assert_eq!(estimate_tokens(&http::Request::new(plain)), 0);
        let parsed = RequestBody::from_chat(ChatRequest::parse(body.into()).unwrap());
        assert_eq!(
            estimate_tokens(&http::Request::new(parsed)),
            (body.len() as u64).div_ceil(4)
        );
        let body = r#"{"model":"m","max_tokens":70,"messages":[{"role":"user","content":"hi"}]}"#;
        let parsed = RequestBody::from_chat(ChatRequest::parse(body.into()).unwrap());
        assert_eq!(estimate_tokens(&http::Request::new(parsed)), 70);
    }
}
