//! Where the randomness of open times comes from.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of uniform samples in `[0, 1)`, used to jitter open times.
///
/// Inject one with [`Breakers::with_jitter`](crate::Breakers::with_jitter) to
/// make open times reproducible; closures `Fn() -> f64` are sources. Tests
/// usually set [`BreakerConfig::jitter`](crate::BreakerConfig::jitter) to
/// zero instead, which makes open times exact whatever the source says.
pub trait JitterSource: Send + Sync + 'static {
    /// The next sample, in `[0, 1)` (values outside are clamped).
    fn sample(&self) -> f64;
}

impl<F> JitterSource for F
where
    F: Fn() -> f64 + Send + Sync + 'static,
{
    fn sample(&self) -> f64 {
        self()
    }
}

/// The default source: a SplitMix64 sequence seeded from the process's
/// random hash keys. Lock-free, and not for cryptography.
pub(crate) struct DefaultJitter {
    state: AtomicU64,
}

impl DefaultJitter {
    pub(crate) fn new() -> Self {
        DefaultJitter {
            state: AtomicU64::new(RandomState::new().hash_one(0x7011_6a7e_u64)),
        }
    }
}

impl fmt::Debug for DefaultJitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultJitter").finish_non_exhaustive()
    }
}

impl JitterSource for DefaultJitter {
    fn sample(&self) -> f64 {
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits make a uniform double in [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_stay_in_the_unit_interval_and_vary() {
        let source = DefaultJitter::new();
        let samples: Vec<f64> = (0..1000).map(|_| source.sample()).collect();
        assert!(samples.iter().all(|s| (0.0..1.0).contains(s)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
