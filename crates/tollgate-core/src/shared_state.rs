//! [`Fallbacks`]: how a user of state shared through Redis (the limits'
//! store, the key registry, the teams, the breakers' sync) reports falling
//! back to its local copy — counted (for a metric), and logged at most once
//! per [`WARN_EVERY`] so that an outage does not flood the log.
//!
//! Every such user fails open the same way, so it reports the same way:
//! one piece of code, whichever crate holds the shared state.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use tollgate_core::shared_state::Fallbacks;
//!
//! let metric = Arc::new(AtomicU64::new(0));
//! let counted = metric.clone();
//! let fallbacks = Fallbacks::new("the rate limits", "answering from local state")
//!     .on_fallback(Some(Arc::new(move || {
//!         counted.fetch_add(1, Ordering::Relaxed);
//!     })));
//! fallbacks.fell_back(&"connection refused");
//! assert_eq!(fallbacks.count(), 1);
//! assert_eq!(metric.load(Ordering::Relaxed), 1);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// At most one warning per this while Redis is unreachable.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counts and logs one user's falls back to local state.
pub struct Fallbacks {
    /// What falls back, for the log line ("the virtual keys").
    what: &'static str,
    /// What the user does meanwhile ("answering from the local copy").
    meanwhile: &'static str,
    on_fallback: Option<Arc<dyn Fn() + Send + Sync>>,
    count: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
}

impl fmt::Debug for Fallbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallbacks")
            .field("what", &self.what)
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Fallbacks {
    /// Reports for `what`, which does `meanwhile` while Redis is away; the
    /// warning reads "Redis is unavailable to {what}; {meanwhile}".
    pub fn new(what: &'static str, meanwhile: &'static str) -> Self {
        Fallbacks {
            what,
            meanwhile,
            on_fallback: None,
            count: AtomicU64::new(0),
            last_warn: Mutex::new(None),
        }
    }

    /// Calls `callback`, if any, on every fall back (turn it into a
    /// metric); `None` calls nothing.
    pub fn on_fallback(mut self, callback: Option<Arc<dyn Fn() + Send + Sync>>) -> Self {
        self.on_fallback = callback;
        self
    }

    /// One fall back, because of `why`: counted, the callback called, and
    /// a warning unless one was logged in the last [`WARN_EVERY`].
    pub fn fell_back(&self, why: &dyn fmt::Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(callback) = &self.on_fallback {
            callback();
        }
        let now = Instant::now();
        let mut last = self
            .last_warn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| now.saturating_duration_since(at) >= WARN_EVERY) {
            *last = Some(now);
            // The log line is written without the lock held.
            drop(last);
            tracing::warn!(
                error = %why,
                "Redis is unavailable to {}; {}",
                self.what,
                self.meanwhile
            );
        }
    }

    /// Falls back so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_fall_back_is_counted_and_called_back_but_warned_once_per_interval() {
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let fallbacks =
            Fallbacks::new("the tests", "carrying on").on_fallback(Some(Arc::new(move || {
                counted.fetch_add(1, Ordering::Relaxed);
            })));
        let warned_at = || *fallbacks.last_warn.lock().unwrap();

        fallbacks.fell_back(&"first");
        let first = warned_at().expect("the first fall back warns");
        tokio::time::advance(WARN_EVERY - Duration::from_millis(1)).await;
        fallbacks.fell_back(&"second");
        assert_eq!(
            warned_at(),
            Some(first),
            "no second warning within the interval"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        fallbacks.fell_back(&"third");
        assert_eq!(
            warned_at(),
            Some(first + WARN_EVERY),
            "warns again after it"
        );

        assert_eq!(fallbacks.count(), 3);
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }
}
