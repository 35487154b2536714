//! [`Window`]: the sliding window of call and failure counts a closed
//! breaker reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

// One bucket is one u64: | epoch: 24 | calls: 20 | failures: 20 |. Packing the
// epoch with the counts lets a bucket roll over to a new epoch with one
// compare-and-swap, so no count is lost and no lock is needed.
pub(super) const COUNT_BITS: u32 = 20;
pub(super) const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
pub(super) const EPOCH_BITS: u32 = 24;
pub(super) const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

pub(super) fn pack(epoch: u64, calls: u64, failures: u64) -> u64 {
    (epoch & EPOCH_MASK) << (2 * COUNT_BITS) | calls << COUNT_BITS | failures
}

fn unpack(bucket: u64) -> (u64, u64, u64) {
    (
        bucket >> (2 * COUNT_BITS),
        (bucket >> COUNT_BITS) & COUNT_MAX,
        bucket & COUNT_MAX,
    )
}

/// A sliding window of call and failure counts, in time buckets, updated
/// without a lock.
///
/// Time is cut into epochs of one bucket width since `origin`; epoch `e`
/// lives in bucket `e % buckets`, and the window at `now` is the last
/// `buckets` epochs. Epochs are kept modulo 2^24 (194 days at one-second
/// buckets); counts saturate at 2^20 − 1 per bucket, far above what one
/// upstream answers in a bucket's time.
#[derive(Debug)]
pub(crate) struct Window {
    pub(super) buckets: Box<[AtomicU64]>,
    width_nanos: u64,
    origin: Instant,
}

impl Window {
    pub(crate) fn new(window: Duration, buckets: u32, origin: Instant) -> Self {
        let buckets = buckets.max(1);
        let width = (window / buckets).max(Duration::from_nanos(1));
        Window {
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            width_nanos: u64::try_from(width.as_nanos()).unwrap_or(u64::MAX),
            origin,
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        // u64 nanoseconds last 584 years; a u128 division would cost more
        // than the rest of the CLOSED path.
        let since = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        (since / self.width_nanos) & EPOCH_MASK
    }

    /// Counts one call at `now`, failed or not.
    pub(crate) fn record(&self, now: Instant, failed: bool) {
        let epoch = self.epoch(now);
        let len = self.buckets.len() as u64;
        let bucket = &self.buckets[(epoch % len) as usize];
        let failed = u64::from(failed);
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (at, calls, failures) = unpack(current);
            let next = if at == epoch {
                pack(
                    epoch,
                    (calls + 1).min(COUNT_MAX),
                    (failures + failed).min(COUNT_MAX),
                )
            } else if at.wrapping_sub(epoch) & EPOCH_MASK < 2 * len {
                // The bucket already holds a newer epoch: this call was
                // recorded late (its thread was preempted for a whole
                // window) and belongs to a window that is gone. (The
                // horizon is short so that a bucket left untouched for
                // half the epoch range is never mistaken for a newer one
                // for more than two windows' time.)
                return;
            } else {
                pack(epoch, 1, failed)
            };
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Calls and failures within the window at `now`.
    pub(crate) fn counts(&self, now: Instant) -> (u32, u32) {
        let epoch = self.epoch(now);
        let len = self.buckets.len() as u64;
        let (mut calls, mut failures) = (0u64, 0u64);
        for bucket in &*self.buckets {
            let (at, c, f) = unpack(bucket.load(Ordering::Relaxed));
            if epoch.wrapping_sub(at) & EPOCH_MASK < len {
                calls += c;
                failures += f;
            }
        }
        (
            u32::try_from(calls).unwrap_or(u32::MAX),
            u32::try_from(failures).unwrap_or(u32::MAX),
        )
    }

    /// Whether the failure rate at `now` opens the breaker.
    pub(super) fn rate_exceeded(&self, config: &BreakerConfig, now: Instant) -> bool {
        let (calls, failures) = self.counts(now);
        calls >= config.min_calls
            && f64::from(failures) >= config.failure_rate_threshold * f64::from(calls)
    }

    /// Forgets every count.
    pub(crate) fn reset(&self) {
        for bucket in &*self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}
