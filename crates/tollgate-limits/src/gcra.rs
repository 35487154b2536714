//! The generic cell rate algorithm (GCRA), as pure functions.
//!
//! GCRA keeps one number per key: the *theoretical arrival time* (TAT), the
//! moment the key's bucket would be empty again if nothing else came. A
//! request of `cost` cells moves it forward by `cost × T` (T, the emission
//! interval, is `period / limit`); it is admitted when the new TAT is no
//! further than `limit × T` (one period) ahead of now. So a key with 60 per
//! minute may send 60 at once, then one per second — the burst is the
//! per-period limit — and a key that stays idle for a period is back to a
//! full burst.
//!
//! Times here are nanoseconds on any monotonic clock the caller picks (the
//! memory store counts from its creation; the Redis script does the same
//! arithmetic in microseconds of the server's clock). A key with no state
//! has any TAT at or before now.

use std::time::Duration;

/// A rate: `limit` cells per `period`, with a burst of `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u64,
    period: Duration,
}

impl Quota {
    /// `limit` cells per `period`.
    ///
    /// # Panics
    ///
    /// If `limit` is 0 or `period` is zero: a limit of 0 admits nothing and
    /// has no rate (the layer rejects such keys without a quota).
    pub fn new(limit: u64, period: Duration) -> Self {
        assert!(limit > 0, "a GCRA quota needs a limit above 0");
        assert!(!period.is_zero(), "a GCRA quota needs a non-zero period");
        Quota { limit, period }
    }

    /// `limit` cells per minute.
    ///
    /// # Panics
    ///
    /// If `limit` is 0.
    pub fn per_minute(limit: u64) -> Self {
        Quota::new(limit, Duration::from_secs(60))
    }

    /// The cells per period, which is also the burst.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The time one cell takes to come back: `period / limit`, rounded up
    /// to the nanosecond (so the sustained rate never exceeds the limit).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns())
    }

    pub(crate) fn interval_ns(&self) -> u64 {
        let period = self.period.as_nanos();
        let interval = period.div_ceil(u128::from(self.limit)).max(1);
        u64::try_from(interval).unwrap_or(u64::MAX)
    }
}

/// The answer to one GCRA check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the cells were admitted (and taken).
    pub allowed: bool,
    /// When rejected: how long until the same request would be admitted.
    /// Zero when admitted.
    pub retry_after: Duration,
    /// Cells left for an immediate request, after this one.
    pub remaining: u64,
    /// How long until the bucket is full again (OpenAI's `reset`).
    pub reset_after: Duration,
}

/// Checks a request of `cost` cells at `now` against a key whose TAT is
/// `tat`; returns the decision and the TAT to store (unchanged when the
/// request is rejected or costs nothing).
///
/// A cost of 0 asks without taking: it is admitted unless the key is over
/// its limit (a reconciliation pushed it past a full period), and
/// `remaining` says how many cells an immediate request could take. A cost
/// above the limit is never admitted; callers cap it at the limit.
pub fn check(tat: u64, now: u64, quota: &Quota, cost: u64) -> (Decision, u64) {
    let interval = u128::from(quota.interval_ns());
    let tolerance = interval * u128::from(quota.limit);
    let now_ = u128::from(now);
    let base = u128::from(tat.max(now));
    let new_tat = base + u128::from(cost) * interval;
    let allow_at = new_tat.saturating_sub(tolerance);
    if allow_at > now_ {
        let decision = Decision {
            allowed: false,
            retry_after: nanos(allow_at - now_),
            remaining: to_u64((now_ + tolerance).saturating_sub(base) / interval),
            reset_after: nanos(base - now_),
        };
        return (decision, tat);
    }
    let decision = Decision {
        allowed: true,
        retry_after: Duration::ZERO,
        remaining: to_u64((now_ + tolerance - new_tat) / interval),
        reset_after: nanos(new_tat - now_),
    };
    let stored = if cost == 0 { tat } else { to_u64(new_tat) };
    (decision, stored)
}

/// Moves a key's TAT by `delta` cells at `now`, whatever the limit says:
/// a positive delta takes more cells (usage above the reservation), a
/// negative one gives cells back — never further back than `now` (a key
/// cannot bank unused time beyond a full bucket).
pub fn adjust(tat: u64, now: u64, quota: &Quota, delta: i64) -> u64 {
    let interval = i128::from(quota.interval_ns());
    let base = i128::from(tat.max(now));
    let moved = base + i128::from(delta) * interval;
    let moved = moved.max(i128::from(now));
    u64::try_from(moved).unwrap_or(u64::MAX)
}

/// One key's part of [`check_all`]: its TAT (updated in place), its
/// quota, the cells that must fit and those taken when all fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimState {
    pub(crate) tat: u64,
    pub(crate) quota: Quota,
    pub(crate) need: u64,
    pub(crate) take: u64,
}

/// Checks several keys at once, all or nothing — the rule of
/// [`Store::gcra_all`](crate::Store::gcra_all), which the memory store
/// runs and the Redis script mirrors. Every claim's `need` cells must fit;
/// when they all do, each claim takes its `take` cells (at most its
/// `need`), moving its `tat`; otherwise nothing is taken.
///
/// Each decision says whether that claim's `need` fit (with its
/// `retry_after` when not), and what is left and when the bucket is full
/// again after what was taken.
pub(crate) fn check_all(claims: &mut [ClaimState], now: u64) -> Vec<Decision> {
    let fits = |c: &ClaimState| check(c.tat, now, &c.quota, c.need).0;
    let admitted = claims.iter().all(|c| fits(c).allowed);
    claims
        .iter_mut()
        .map(|claim| {
            let needed = fits(claim);
            let take = if admitted {
                claim.take.min(claim.need)
            } else {
                0
            };
            let (after, stored) = check(claim.tat, now, &claim.quota, take);
            claim.tat = stored;
            Decision {
                allowed: needed.allowed,
                retry_after: needed.retry_after,
                remaining: after.remaining,
                reset_after: after.reset_after,
            }
        })
        .collect()
}

fn to_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn nanos(value: u128) -> Duration {
    Duration::from_nanos(to_u64(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn sixty_per_minute_bursts_sixty_then_one_per_second() {
        let quota = Quota::per_minute(60);
        let mut tat = 0;
        let now = 5 * SEC;
        for i in 0..60 {
            let (decision, next) = check(tat, now, &quota, 1);
            assert!(decision.allowed, "request {i}");
            assert_eq!(decision.remaining, 59 - i);
            tat = next;
        }
        let (decision, next) = check(tat, now, &quota, 1);
        assert!(!decision.allowed);
        assert_eq!(decision.retry_after, Duration::from_secs(1));
        assert_eq!(decision.reset_after, Duration::from_secs(60));
        assert_eq!(next, tat);
        let (decision, _) = check(tat, now + SEC, &quota, 1);
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 0);
    }

    #[test]
    fn check_all_takes_everything_or_nothing() {
        let rpm = Quota::per_minute(2);
        let tpm = Quota::per_minute(100);
        // 60 of the 100 tokens are used.
        let used = 60 * tpm.interval_ns();
        let claim = |tat, quota, need, take| ClaimState {
            tat,
            quota,
            need,
            take,
        };
        // Room for the request and its 40 tokens: the request is taken,
        // the tokens only looked at.
        let mut claims = [claim(0, rpm, 1, 1), claim(used, tpm, 40, 0)];
        let decisions = check_all(&mut claims, 0);
        assert!(decisions.iter().all(|d| d.allowed));
        assert_eq!((decisions[0].remaining, decisions[1].remaining), (1, 40));
        assert_eq!(
            claims[1].tat, used,
            "a claim that takes nothing leaves its key alone"
        );
        // 60 tokens do not fit: the request cell is not taken either.
        let before = claims;
        claims[1].need = 60;
        let decisions = check_all(&mut claims, 0);
        assert!(decisions[0].allowed && !decisions[1].allowed);
        // 20 tokens short, 0.6 s each.
        assert_eq!(decisions[1].retry_after, Duration::from_secs(12));
        assert_eq!(decisions[0].remaining, 1, "nothing was taken");
        assert_eq!(claims[0].tat, before[0].tat);
        // The last request cell, then none.
        claims[1].need = 40;
        assert!(check_all(&mut claims, 0).iter().all(|d| d.allowed));
        let decisions = check_all(&mut claims, 0);
        assert!(!decisions[0].allowed);
        assert_eq!(decisions[0].retry_after, Duration::from_secs(30));
        assert_eq!(decisions[0].remaining, 0);
    }

    #[test]
    fn adjust_gives_back_but_not_before_now() {
        let quota = Quota::per_minute(100);
        let (_, tat) = check(0, 0, &quota, 100);
        assert!(!check(tat, 0, &quota, 1).0.allowed);
        let tat = adjust(tat, 0, &quota, -40);
        assert_eq!(check(tat, 0, &quota, 0).0.remaining, 40);
        assert_eq!(adjust(tat, 0, &quota, -1000), 0);
        let over = adjust(tat, 0, &quota, 500);
        let (peek, _) = check(over, 0, &quota, 0);
        assert!(!peek.allowed);
        assert_eq!(peek.remaining, 0);
    }

    use proptest::prelude::*;

    proptest! {
        /// Over any schedule of requests, GCRA never admits more than the
        /// burst plus elapsed time × rate.
        #[test]
        fn gcra_never_admits_more_than_burst_plus_elapsed_times_rate(
            limit in 1u64..200,
            period_secs in 1u64..120,
            steps in proptest::collection::vec((0u64..5 * SEC, 1u64..20), 1..300),
        ) {
            let quota = Quota::new(limit, Duration::from_secs(period_secs));
            let period = u128::from(period_secs * SEC);
            let mut tat = 0;
            let mut now = 0u64;
            let mut admitted = 0u128;
            for (advance, cost) in steps {
                now += advance;
                let cost = cost.min(limit);
                let (decision, next) = check(tat, now, &quota, cost);
                if decision.allowed {
                    admitted += u128::from(cost);
                    tat = next;
                } else {
                    prop_assert_eq!(next, tat);
                }
                // admitted <= limit + now × limit / period, without rounding.
                prop_assert!(
                    admitted * period <= u128::from(limit) * period + u128::from(now) * u128::from(limit),
                    "admitted {} by {} ns with {} per {} s", admitted, now, limit, period_secs
                );
            }
        }

        /// A rejected request is admitted once its `retry_after` has passed,
        /// and not a nanosecond before.
        #[test]
        fn a_rejected_request_fits_exactly_after_retry_after(
            limit in 1u64..100,
            used in 1u64..300,
            cost in 1u64..100,
            elapsed in 0u64..60 * SEC,
        ) {
            let quota = Quota::per_minute(limit);
            let cost = cost.min(limit);
            let tat = adjust(0, 0, &quota, i64::try_from(used).unwrap());
            let (decision, _) = check(tat, elapsed, &quota, cost);
            if !decision.allowed {
                let wait = u64::try_from(decision.retry_after.as_nanos()).unwrap();
                prop_assert!(check(tat, elapsed + wait, &quota, cost).0.allowed);
                prop_assert!(!check(tat, elapsed + wait - 1, &quota, cost).0.allowed);
            }
        }
    }
}
