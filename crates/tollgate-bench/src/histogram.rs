//! [`Histogram`]: latencies in log-linear buckets, HDR style.

use std::fmt;
use std::time::Duration;

/// Linear sub-buckets per power of two: 2^7 = 128, so a recorded value is
/// known to within 1/128 (0.8 %) of itself.
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any `u64` nanosecond count.
const BUCKETS: usize = (64 - SUB_BITS as usize) * SUB + SUB;

/// A histogram of durations, in nanoseconds, with a relative error of at most
/// 1/128 and a fixed size (59 KiB) whatever it records.
///
/// Values below 256 ns are kept exactly; above, each power of two is cut into
/// 128 equal buckets (the layout of HdrHistogram with two significant
/// digits). Recording is an index computation and an increment, so each load
/// worker keeps its own and they are [merged](Histogram::merge) at the end:
/// no lock, no shared cache line on the hot path.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one duration (saturating at `u64::MAX` nanoseconds, 584 years).
    pub fn record(&mut self, value: Duration) {
        self.record_nanos(u64::try_from(value.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one value in nanoseconds.
    pub fn record_nanos(&mut self, nanos: u64) {
        self.counts[index(nanos)] += 1;
        self.total += 1;
        self.sum += u128::from(nanos);
        self.min = self.min.min(nanos);
        self.max = self.max.max(nanos);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0.5 for the median, 0.999 for p99.9): the
    /// smallest recorded value with at least `q` of the values at or below
    /// it, to within the bucket's precision. Zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        // The rank of the value sought, 1-based: ceil(q * n), at least 1.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                // The bucket's middle, kept within what was really seen.
                return Duration::from_nanos(middle(i).clamp(self.min, self.max));
            }
        }
        Duration::from_nanos(self.max)
    }

    /// The arithmetic mean (exact). Zero when empty.
    pub fn mean(&self) -> Duration {
        match self.total {
            0 => Duration::ZERO,
            n => Duration::from_nanos(u64::try_from(self.sum / u128::from(n)).unwrap_or(u64::MAX)),
        }
    }

    /// The largest value recorded (exact). Zero when empty.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Histogram {
    // The 7,424 buckets would drown everything else.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < (2 * SUB) as u64 {
        return value as usize;
    }
    let magnitude = 63 - value.leading_zeros();
    let shift = magnitude - SUB_BITS;
    // `value >> shift` is in [SUB, 2 * SUB): the sub-bucket, offset by SUB.
    shift as usize * SUB + (value >> shift) as usize
}

/// The smallest value of bucket `i`.
fn lowest(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let shift = i / SUB - 1;
    ((i - shift * SUB) as u64) << shift
}

/// The middle value of bucket `i`.
fn middle(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let width = 1u64 << (i / SUB - 1);
    lowest(i) + width / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        for i in 0..BUCKETS - 1 {
            assert!(lowest(i) < lowest(i + 1), "bucket {i}");
            assert_eq!(index(lowest(i)), i);
            assert_eq!(index(lowest(i + 1) - 1), i, "the top of bucket {i}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record_nanos(v);
        }
        assert_eq!(h.quantile(0.5), Duration::from_nanos(50));
        assert_eq!(h.quantile(0.99), Duration::from_nanos(99));
        assert_eq!(h.quantile(1.0), Duration::from_nanos(100));
        assert_eq!(h.quantile(0.0), Duration::from_nanos(1));
        assert_eq!(h.mean(), Duration::from_nanos(50));
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn empty_is_zero() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.5), Duration::ZERO);
        assert_eq!(h.mean(), Duration::ZERO);
        assert_eq!(h.max(), Duration::ZERO);
    }

    proptest! {
        /// Every quantile is within 1/128 of the exact order statistic, and
        /// merging two halves is the same as recording everything in one.
        #[test]
        fn quantiles_are_within_the_precision(
            values in proptest::collection::vec(1u64..10_000_000_000, 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            let exact = sorted[rank - 1] as f64;

            let (left, right) = values.split_at(values.len() / 2);
            let mut a = Histogram::new();
            left.iter().for_each(|&v| a.record_nanos(v));
            let mut b = Histogram::new();
            right.iter().for_each(|&v| b.record_nanos(v));
            a.merge(&b);

            let got = a.quantile(q).as_nanos() as f64;
            prop_assert!((got - exact).abs() <= exact / 128.0, "q {} exact {} got {}", q, exact, got);
            prop_assert_eq!(a.count(), values.len() as u64);
            prop_assert_eq!(a.max().as_nanos() as u64, sorted[sorted.len() - 1]);
        }
    }
}
