//! [`Fallbacks`]: how a user of shared state reports falling back to local
//! state — counted (the metric), and logged at most once per
//! [`WARN_EVERY`] so an outage does not flood the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// At most one warning per this while Redis is unreachable.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counts and logs one user's falls back to local state.
pub(crate) struct Fallbacks {
    /// What falls back, for the log line ("the virtual keys").
    what: &'static str,
    /// What the user does meanwhile ("answering from the local copy").
    meanwhile: &'static str,
    on_fallback: Option<Arc<dyn Fn() + Send + Sync>>,
    count: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Fallbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallbacks")
            .field("what", &self.what)
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Fallbacks {
    pub(crate) fn new(
        what: &'static str,
        meanwhile: &'static str,
        on_fallback: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> Self {
        Fallbacks {
            what,
            meanwhile,
            on_fallback,
            count: AtomicU64::new(0),
            last_warn: Mutex::new(None),
        }
    }

    /// One fall back, because of `why`.
    pub(crate) fn fell_back(&self, why: &dyn std::fmt::Display) {
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
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
