//! Per-deployment live statistics: requests in flight and a latency
//! estimate. (Requests and tokens per minute are the limits' counters: see
//! [`usage`](super::usage).)
//!
//! Counters are atomics; the latency estimate (two values that change
//! together) sits behind a `Mutex` held for a few arithmetic operations and
//! never across an `.await`, as tower's `PeakEwma` keeps its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How fast an estimate fades while no answer refreshes it: by a factor of
/// e every `FADE` (halved in about 7 s). The decay linkerd and tower's
/// `PeakEwma` default to.
pub(crate) const FADE: Duration = Duration::from_secs(10);

/// How much one new time weighs in the moving average.
pub(crate) const ALPHA: f64 = 0.25;

/// What a failed attempt counts as in the latency estimate, unless it took
/// longer: the gateway's default first-token timeout. Large enough to put
/// the deployment behind any healthy one at once, small enough that it
/// fades in under a minute and the deployment is tried again.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(30);

/// The live statistics of one deployment.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    in_flight: AtomicU32,
    latency: Mutex<Option<Estimate>>,
}

impl Stats {
    /// Requests sent and not yet answered.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The latency estimate at `now`, in nanoseconds; `None` until the
    /// first measurement.
    pub(crate) fn latency(&self, now: Instant) -> Option<f64> {
        let estimate = *self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        estimate.map(|e| e.at(now))
    }

    /// Adds one measured time.
    pub(crate) fn observe(&self, sample: Duration, now: Instant) {
        let mut estimate = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        *estimate = Some(Estimate::observe(*estimate, nanos(sample), now));
    }
}

/// A peak-sensitive, fading moving average of latencies:
///
/// - a time above the estimate replaces it at once: a slow-down is seen on
///   the first slow answer (tower's `PeakEwma`);
/// - a time below it moves it by [`ALPHA`] of the gap;
/// - while no time comes, it fades toward zero with [`FADE`], so a
///   deployment left alone for being slow is measured again after a while
///   instead of never.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    nanos: f64,
    since: Instant,
}

impl Estimate {
    /// The estimate as it stands at `now`, faded.
    pub(crate) fn at(&self, now: Instant) -> f64 {
        fade(self.nanos, now.saturating_duration_since(self.since))
    }

    /// `prior` updated with a time of `sample` nanoseconds taken at `now`.
    pub(crate) fn observe(prior: Option<Estimate>, sample: f64, now: Instant) -> Estimate {
        let nanos = match prior.map(|p| p.at(now)) {
            Some(current) if sample < current => current + ALPHA * (sample - current),
            _ => sample,
        };
        Estimate { nanos, since: now }
    }
}

/// `nanos` after `elapsed` without news.
fn fade(nanos: f64, elapsed: Duration) -> f64 {
    nanos * (-elapsed.as_secs_f64() / FADE.as_secs_f64()).exp()
}

fn nanos(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;

    #[test]
    fn the_first_time_is_the_estimate() {
        let now = Instant::now();
        let e = Estimate::observe(None, 40.0 * MS, now);
        assert_eq!(e.at(now), 40.0 * MS);
    }

    #[test]
    fn a_slower_time_is_taken_at_once_a_faster_one_gradually() {
        let now = Instant::now();
        let e = Estimate::observe(None, 40.0 * MS, now);
        let slower = Estimate::observe(Some(e), 200.0 * MS, now);
        assert_eq!(slower.at(now), 200.0 * MS);
        let faster = Estimate::observe(Some(slower), 40.0 * MS, now);
        assert_eq!(faster.at(now), 160.0 * MS);
    }

    #[test]
    fn an_estimate_fades_without_news() {
        let now = Instant::now();
        let e = Estimate::observe(None, 100.0 * MS, now);
        let later = e.at(now + FADE);
        assert!(
            (later - 100.0 * MS / std::f64::consts::E).abs() < 1.0,
            "{later}"
        );
        assert!(e.at(now + FADE * 10) < 0.01 * MS);
    }

    #[test]
    fn in_flight_goes_up_and_down() {
        let stats = Stats::default();
        stats.begin();
        stats.begin();
        stats.end();
        assert_eq!(stats.in_flight(), 1);
    }
}
