//! The pure logic of the layer: the backoff schedule and the decision to
//! retry. No clocks and no randomness here: the caller passes the time left
//! and the jitter fraction in, so every rule can be tested exhaustively.

use std::time::Duration;

use tollgate_core::Failure;

use crate::config::{RetryConfig, RetryPolicy};
use crate::error::StopReason;

/// Exponential backoff with full jitter and a floor.
///
/// Before retry `n` (0 for the first retry) the ceiling is
/// `min(cap, base × factorⁿ)`; the wait is a random fraction of it (full
/// jitter, which spreads a crowd of clients best, see the AWS architecture
/// blog's "Exponential Backoff And Jitter"), raised to at least `min`. So every
/// wait lies in `[min, max(min, cap)]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    factor: f64,
    cap: Duration,
    min: Duration,
}

impl Backoff {
    /// A schedule; a `factor` below 1 (or not a number) counts as 1, a `cap`
    /// below `min` as `min`.
    pub fn new(base: Duration, factor: f64, cap: Duration, min: Duration) -> Self {
        Backoff {
            base,
            factor: if factor >= 1.0 && factor.is_finite() {
                factor
            } else {
                1.0
            },
            cap: cap.max(min),
            min,
        }
    }

    /// The schedule of a config.
    pub fn from_config(config: &RetryConfig) -> Self {
        Backoff::new(
            config.base_backoff,
            config.backoff_factor,
            config.max_backoff,
            config.min_backoff,
        )
    }

    /// The largest wait before retry `retry`: `min(cap, base × factorʳᵉᵗʳʸ)`,
    /// at least `min`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exponent);
        // `secs` may be infinite for a large `retry`: compare before
        // converting, as `Duration::from_secs_f64` panics past its range.
        let grown = if secs < self.cap.as_secs_f64() {
            Duration::from_secs_f64(secs).min(self.cap)
        } else {
            self.cap
        };
        grown.max(self.min)
    }

    /// The wait before retry `retry` for a jitter `fraction` in `[0, 1]`
    /// (clamped; not a number counts as 0).
    pub fn delay(&self, retry: u32, fraction: f64) -> Duration {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let ceiling = self.ceiling(retry);
        // Not `mul_f64`: it panics when rounding carries a near-maximal
        // ceiling past `Duration::MAX`.
        Duration::try_from_secs_f64(ceiling.as_secs_f64() * fraction)
            .unwrap_or(ceiling)
            .min(ceiling)
            .max(self.min)
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try again after this wait.
    Retry(Duration),
    /// Hand the last outcome up.
    Stop(StopReason),
}

/// The rules of one layer, fixed when it is built.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    backoff: Backoff,
    num_retries: u32,
    per_class: RetryPolicy,
    max_retry_after: Duration,
    /// The most retries any failure may get: when it is 0 the layer never
    /// keeps a copy of the request.
    max_retries: u32,
}

impl Policy {
    pub(crate) fn new(config: &RetryConfig) -> Self {
        let max_retries = config
            .retry_policy
            .iter()
            .map(|(_, n)| n)
            .fold(config.num_retries, u32::max);
        Policy {
            backoff: Backoff::from_config(config),
            num_retries: config.num_retries,
            per_class: config.retry_policy,
            max_retry_after: config.max_retry_after,
            max_retries,
        }
    }

    pub(crate) fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// How many retries a request whose latest attempt failed with `failure`
    /// may have in all.
    pub(crate) fn limit(&self, failure: &Failure) -> u32 {
        let class = failure.class();
        match self.per_class.get(class) {
            // The upstream said "do not retry" about a class that normally
            // is: it knows better than a per-class number.
            Some(_) if class.retryable() && !failure.is_retryable() => 0,
            Some(retries) => retries,
            None if failure.is_retryable() => self.num_retries,
            None => 0,
        }
    }

    /// Decides after attempt `retries + 1` failed with `failure`.
    ///
    /// `fraction` is the jitter draw; `remaining` the time left before the
    /// request's deadline, if it has one. The retry budget is not consulted
    /// here: the caller withdraws from it only once everything else says
    /// "retry", so that a retry that never happens costs nothing.
    pub(crate) fn decide(
        &self,
        failure: &Failure,
        retries: u32,
        fraction: f64,
        remaining: Option<Duration>,
    ) -> Decision {
        // A breaker below rejected the call without reaching the upstream.
        // Its open time is no backoff to sleep through (the request would
        // wait for seconds and then, most likely, be rejected again), and
        // this layer resends to the same breaker: fail fast, and leave
        // moving on to a fallback or a balancer that skips open breakers.
        if failure.is_circuit_open() {
            return Decision::Stop(StopReason::CircuitOpen);
        }
        let limit = self.limit(failure);
        if limit == 0 {
            return Decision::Stop(StopReason::NotRetryable);
        }
        if retries >= limit {
            return Decision::Stop(StopReason::MaxRetries);
        }
        let mut wait = self.backoff.delay(retries, fraction);
        if let Some(asked) = failure.retry_after() {
            if asked > self.max_retry_after {
                return Decision::Stop(StopReason::RetryAfterTooLong(asked));
            }
            wait = wait.max(asked);
        }
        // An attempt that would start at or after the deadline cannot
        // succeed; stopping now leaves the remaining time to a fallback.
        if remaining.is_some_and(|remaining| wait >= remaining) {
            return Decision::Stop(StopReason::Deadline);
        }
        Decision::Retry(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tollgate_core::ErrorClass;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(config: RetryConfig) -> Policy {
        Policy::new(&config)
    }

    proptest! {
        #[test]
        fn every_delay_stays_within_its_bounds(
            base in 0u64..20_000,
            factor in 1.0f64..10.0,
            cap in 0u64..120_000,
            min_share in 0.0f64..=1.0,
            retry in 0u32..200,
            fraction in 0.0f64..=1.0,
        ) {
            let min = ms((cap as f64 * min_share) as u64);
            let backoff = Backoff::new(ms(base), factor, ms(cap), min);
            let delay = backoff.delay(retry, fraction);
            prop_assert!(delay >= min, "{delay:?} < min {min:?}");
            prop_assert!(delay <= ms(cap), "{delay:?} > cap {cap}ms");
            prop_assert!(delay <= backoff.ceiling(retry));
            // The ceiling grows with each retry until it reaches the cap.
            prop_assert!(backoff.ceiling(retry) <= backoff.ceiling(retry + 1));
        }

        #[test]
        fn the_ceiling_is_exponential_until_the_cap(base in 1u64..1_000, retry in 0u32..10) {
            let backoff = Backoff::new(ms(base), 2.0, Duration::MAX, Duration::ZERO);
            prop_assert_eq!(backoff.ceiling(retry), ms(base << retry));
            prop_assert_eq!(backoff.delay(retry, 1.0), ms(base << retry));
            prop_assert_eq!(backoff.delay(retry, 0.0), Duration::ZERO);
        }
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let backoff = Backoff::new(ms(500), f64::NAN, ms(100), ms(200));
        assert_eq!(backoff.delay(u32::MAX, f64::NAN), ms(200));
        assert_eq!(backoff.delay(3, 7.0), ms(200));
        let huge = Backoff::new(Duration::MAX, 10.0, Duration::MAX, Duration::ZERO);
        assert_eq!(huge.ceiling(u32::MAX), Duration::MAX);
        assert!(huge.delay(1_000, 0.5) <= Duration::MAX);
        assert_eq!(huge.delay(1_000, 1.0), Duration::MAX);
    }

    #[test]
    fn class_defaults_decide_without_a_policy() {
        let policy = policy(RetryConfig::default());
        for class in ErrorClass::ALL {
            let failure = Failure::new(class, "x");
            let expected = if class.retryable() { 3 } else { 0 };
            assert_eq!(policy.limit(&failure), expected, "{class}");
        }
        assert_eq!(
            policy.decide(&Failure::new(ErrorClass::BadRequest, "x"), 0, 1.0, None),
            Decision::Stop(StopReason::NotRetryable)
        );
        let busy = Failure::new(ErrorClass::UpstreamUnavailable, "x");
        assert_eq!(policy.decide(&busy, 0, 1.0, None), Decision::Retry(ms(500)));
        assert_eq!(
            policy.decide(&busy, 2, 1.0, None),
            Decision::Retry(ms(2_000))
        );
        assert_eq!(
            policy.decide(&busy, 3, 1.0, None),
            Decision::Stop(StopReason::MaxRetries)
        );
    }

    #[test]
    fn the_policy_overrides_num_retries_but_not_an_upstream_no() {
        let config = RetryConfig::builder()
            .retries_for(ErrorClass::BadRequest, 2)
            .retries_for(ErrorClass::RateLimited, 0)
            .retries_for(ErrorClass::Timeout, 5)
            .build()
            .unwrap();
        let policy = policy(config.into_inner());
        assert_eq!(policy.max_retries(), 5);
        assert_eq!(policy.limit(&Failure::new(ErrorClass::BadRequest, "x")), 2);
        assert_eq!(policy.limit(&Failure::new(ErrorClass::RateLimited, "x")), 0);
        assert_eq!(policy.limit(&Failure::new(ErrorClass::Timeout, "x")), 5);
        let told_not_to = Failure::new(ErrorClass::Timeout, "x").with_retryable(false);
        assert_eq!(policy.limit(&told_not_to), 0);
        // A failure that says it is retryable, of a class that is not, gets
        // num_retries.
        let told_to = Failure::new(ErrorClass::Internal, "x").with_retryable(true);
        assert_eq!(policy.limit(&told_to), 3);
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_capped() {
        let policy = policy(RetryConfig::default());
        let limited = |secs| {
            Failure::new(ErrorClass::RateLimited, "x").with_retry_after(Duration::from_secs(secs))
        };
        assert_eq!(
            policy.decide(&limited(2), 0, 1.0, None),
            Decision::Retry(Duration::from_secs(2))
        );
        // The backoff is longer than a short Retry-After: the backoff wins.
        assert_eq!(
            policy.decide(&limited(0), 2, 1.0, None),
            Decision::Retry(Duration::from_secs(2))
        );
        assert_eq!(
            policy.decide(&limited(61), 0, 1.0, None),
            Decision::Stop(StopReason::RetryAfterTooLong(Duration::from_secs(61)))
        );
    }

    #[test]
    fn a_circuit_breaker_rejection_stops_at_once() {
        let policy = policy(RetryConfig::default());
        // What an open breaker below answers: retryable by class, with the
        // open time as its Retry-After.
        let open = Failure::new(ErrorClass::UpstreamUnavailable, "open")
            .with_subkind(Failure::CIRCUIT_OPEN)
            .with_retry_after(Duration::from_secs(5));
        assert_eq!(
            policy.decide(&open, 0, 1.0, None),
            Decision::Stop(StopReason::CircuitOpen)
        );
        // The same class without the breaker's mark is still retried.
        let busy = Failure::new(ErrorClass::UpstreamUnavailable, "x");
        assert!(matches!(
            policy.decide(&busy, 0, 1.0, None),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn a_wait_that_reaches_the_deadline_stops_at_once() {
        let policy = policy(RetryConfig::default());
        let limited =
            Failure::new(ErrorClass::RateLimited, "x").with_retry_after(Duration::from_secs(2));
        assert_eq!(
            policy.decide(&limited, 0, 1.0, Some(Duration::from_secs(2))),
            Decision::Stop(StopReason::Deadline)
        );
        assert_eq!(
            policy.decide(&limited, 0, 1.0, Some(ms(2_001))),
            Decision::Retry(Duration::from_secs(2))
        );
        let busy = Failure::new(ErrorClass::UpstreamUnavailable, "x");
        assert_eq!(
            policy.decide(&busy, 0, 0.0, Some(Duration::ZERO)),
            Decision::Stop(StopReason::Deadline)
        );
    }
}
