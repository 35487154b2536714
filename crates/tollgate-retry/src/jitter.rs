//! Where the randomness of the backoff comes from.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// The random fraction each backoff draws: the wait before a retry is that
/// fraction of the backoff ceiling (see [`Backoff`](crate::Backoff)).
///
/// One jitter source is shared by every service a layer makes, so it takes
/// `&self`. Any `Fn() -> f64` is one, which is how tests fix the draw:
///
/// ```
/// use tollgate_retry::{RetryLayer, RetryConfig};
///
/// // Always the full ceiling: waits of exactly 0.5 s, 1 s, 2 s...
/// let layer = RetryLayer::default().with_jitter(|| 1.0);
/// ```
pub trait Jitter: Send + Sync + 'static {
    /// A fraction in `[0, 1]` (values outside are clamped).
    fn fraction(&self) -> f64;
}

impl<F> Jitter for F
where
    F: Fn() -> f64 + Send + Sync + 'static,
{
    fn fraction(&self) -> f64 {
        self()
    }
}

/// No jitter: every wait is the full backoff ceiling (a plain exponential
/// backoff). Deterministic, for tests; in production it lets a crowd of
/// clients retry in lockstep.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJitter;

impl Jitter for NoJitter {
    fn fraction(&self) -> f64 {
        1.0
    }
}

/// The default jitter: SplitMix64, a fast non-cryptographic generator, on
/// one atomic counter, seeded from the standard library's per-process random
/// keys.
///
/// Lock-free: each draw is one `fetch_add`, so services sharing it never
/// wait on each other, and no two draws repeat a value — copies of one
/// generator per service would draw the same sequence and retry in lockstep.
pub struct RandomJitter {
    state: AtomicU64,
}

/// SplitMix64's increment, the golden ratio in 64 bits.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl RandomJitter {
    /// A generator with a random seed.
    pub fn new() -> Self {
        RandomJitter::with_seed(RandomState::new().hash_one(GAMMA))
    }

    /// A generator with a fixed seed (reproducible draws).
    pub fn with_seed(seed: u64) -> Self {
        RandomJitter {
            state: AtomicU64::new(seed),
        }
    }

    fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Default for RandomJitter {
    fn default() -> Self {
        RandomJitter::new()
    }
}

impl Jitter for RandomJitter {
    fn fraction(&self) -> f64 {
        // The top 53 bits, as a fraction in [0, 1) with every f64 step.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl fmt::Debug for RandomJitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RandomJitter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_in_range_and_spread() {
        let jitter = RandomJitter::with_seed(7);
        let draws: Vec<f64> = (0..10_000).map(|_| jitter.fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
        // Each tenth of [0, 1) gets a fair share (expected 1,000 each).
        for decile in 0..10 {
            let low = decile as f64 / 10.0;
            let count = draws
                .iter()
                .filter(|f| (low..low + 0.1).contains(*f))
                .count();
            assert!((800..1_200).contains(&count), "decile {decile}: {count}");
        }
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let a = RandomJitter::with_seed(1);
        let b = RandomJitter::with_seed(1);
        let c = RandomJitter::with_seed(2);
        let (x, y, z) = (a.fraction(), b.fraction(), c.fraction());
        assert_eq!(x, y);
        assert_ne!(x, z);
    }
}
