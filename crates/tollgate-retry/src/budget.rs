//! [`RetryBudget`]: retries as a fraction of requests, over a sliding window.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::config::BudgetConfig;
use tollgate_core::Valid;

/// The window is cut into this many slots, which expire one at a time.
const SLOTS: usize = 10;

/// Units per retry. A request deposits `ratio × SCALE` units and a retry
/// withdraws `SCALE`, so a ratio like 0.3 is kept to a thousandth instead of
/// being rounded to a whole number of requests per retry (tower's
/// `TpsBudget` turns 0.3 into one retry per 3 requests, 0.33).
const SCALE: i32 = 1_000;

/// A retry budget: every request deposits `ratio` of a retry, every retry
/// withdraws one, and a constant reserve of `min_per_sec × ttl` retries is
/// always there; deposits and withdrawals expire after `ttl`. So within any
/// window of `ttl`, retries stay under `ratio × requests + min_per_sec × ttl`
/// — the scheme of tower's `TpsBudget`, on tokio time (paused-time tests
/// work), without its lock.
///
/// One budget is built with a [`RetryLayer`](crate::RetryLayer) and shared by
/// every service the layer makes; several layers can share one with
/// [`RetryLayer::with_budget`](crate::RetryLayer::with_budget).
///
/// # Concurrency
///
/// The window is ten slots of `ttl / 10`, each one `AtomicU64` holding the
/// slot's epoch and its balance. A deposit or a withdrawal is a
/// compare-and-swap on the current slot (an expired slot is reset by the
/// same swap), so nothing ever waits on a lock, and a withdrawal that races
/// another sees it and re-checks: the balance never goes below zero.
pub struct RetryBudget {
    start: Instant,
    slot_nanos: u64,
    slots: [AtomicU64; SLOTS],
    deposit: i32,
    withdraw: i32,
    reserve: i64,
}

impl RetryBudget {
    /// A budget of `config` (checked where it was loaded: see [`Valid`]).
    pub fn new(config: &Valid<BudgetConfig>) -> Self {
        RetryBudget::from_valid(config)
    }

    /// A budget of a config already validated.
    pub(crate) fn from_valid(config: &BudgetConfig) -> Self {
        let slot_nanos = u64::try_from((config.ttl / SLOTS as u32).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        // `ratio` is validated to [0, 10], so this is at most 10 × SCALE.
        let deposit = (config.ratio * f64::from(SCALE)).round() as i32;
        let reserve =
            (f64::from(config.min_per_sec) * config.ttl.as_secs_f64() * f64::from(SCALE)) as i64;
        RetryBudget {
            start: Instant::now(),
            slot_nanos,
            slots: Default::default(),
            deposit,
            withdraw: SCALE,
            reserve,
        }
    }

    /// Records a request: it earns `ratio` of a retry.
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    /// Takes one retry from the budget; `false` when it is empty.
    pub fn withdraw(&self) -> bool {
        self.withdraw_at(Instant::now())
    }

    /// The retries the budget would allow now.
    pub fn balance(&self) -> f64 {
        self.balance_at(Instant::now())
    }

    fn epoch(&self, now: Instant) -> u32 {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        // Wraps after 2³² slots (13 years at the shortest ttl); `age`
        // compares epochs with wrapping arithmetic.
        (nanos / self.slot_nanos) as u32
    }

    pub(crate) fn deposit_at(&self, now: Instant) {
        if self.deposit == 0 {
            return;
        }
        let epoch = self.epoch(now);
        let slot = &self.slots[epoch as usize % SLOTS];
        let mut current = slot.load(Ordering::Acquire);
        loop {
            let (tag, count) = unpack(current);
            let next = if age(tag, epoch) > 0 {
                // Expired: this deposit starts the slot afresh.
                pack(epoch, self.deposit)
            } else {
                // Current — or newer, when this thread was slow to get
                // here; adding to the newer epoch is harmless.
                pack(tag, count.saturating_add(self.deposit))
            };
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    pub(crate) fn withdraw_at(&self, now: Instant) -> bool {
        let epoch = self.epoch(now);
        let index = epoch as usize % SLOTS;
        let slot = &self.slots[index];
        let mut current = slot.load(Ordering::Acquire);
        loop {
            let (tag, count) = unpack(current);
            let (tag, count) = if age(tag, epoch) > 0 {
                (epoch, 0)
            } else {
                (tag, count)
            };
            let others: i64 = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, other)| live_count(other.load(Ordering::Acquire), epoch))
                .sum();
            if self.reserve + others + i64::from(count) < i64::from(self.withdraw) {
                return false;
            }
            let next = pack(tag, count.saturating_sub(self.withdraw));
            // Fails when anything touched this slot since it was read — a
            // racing withdrawal included — and then everything is re-checked.
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    pub(crate) fn balance_at(&self, now: Instant) -> f64 {
        let epoch = self.epoch(now);
        let live: i64 = self
            .slots
            .iter()
            .map(|slot| live_count(slot.load(Ordering::Acquire), epoch))
            .sum();
        (self.reserve + live) as f64 / f64::from(SCALE)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &(f64::from(self.deposit) / f64::from(SCALE)))
            .field("reserve", &(self.reserve as f64 / f64::from(SCALE)))
            .field("balance", &self.balance())
            .finish()
    }
}

fn pack(epoch: u32, count: i32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(count as u32)
}

fn unpack(packed: u64) -> (u32, i32) {
    ((packed >> 32) as u32, packed as u32 as i32)
}

/// How many epochs `tag` is behind `epoch`: positive when older, 0 when
/// current, negative when newer.
fn age(tag: u32, epoch: u32) -> i32 {
    epoch.wrapping_sub(tag) as i32
}

/// A slot's count if it is still inside the window seen from `epoch`.
fn live_count(packed: u64, epoch: u32) -> i64 {
    let (tag, count) = unpack(packed);
    if age(tag, epoch) < SLOTS as i32 {
        i64::from(count)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn budget(ratio: f64, min_per_sec: u32, ttl_secs: u64) -> RetryBudget {
        let config = BudgetConfig {
            ratio,
            min_per_sec,
            ttl: Duration::from_secs(ttl_secs),
        };
        RetryBudget::new(&Valid::new(config).unwrap())
    }

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Deposit,
        Withdraw,
    }

    proptest! {
        /// Inside one window nothing expires, and the budget is exactly a
        /// balance: reserve + ratio × deposits − successful withdrawals,
        /// never below zero.
        #[test]
        fn inside_a_window_it_is_an_exact_balance(
            ratio in 0.0f64..=10.0,
            min_per_sec in 0u32..5,
            ops in proptest::collection::vec(
                prop_oneof![Just(Op::Deposit), Just(Op::Withdraw)], 0..300),
        ) {
            let budget = budget(ratio, min_per_sec, 1);
            let now = budget.start;
            let deposit = (ratio * 1000.0).round() as i64;
            let mut model = i64::from(min_per_sec) * 1000;
            for op in ops {
                match op {
                    Op::Deposit => {
                        budget.deposit_at(now);
                        model += deposit;
                    }
                    Op::Withdraw => {
                        let allowed = model >= 1000;
                        prop_assert_eq!(budget.withdraw_at(now), allowed);
                        if allowed {
                            model -= 1000;
                        }
                    }
                }
                prop_assert!(model >= 0);
                prop_assert_eq!(budget.balance_at(now), model as f64 / 1000.0);
            }
        }
    }

    #[test]
    fn the_reserve_alone_allows_min_per_sec_times_ttl() {
        let budget = budget(0.0, 5, 2);
        let now = budget.start;
        for _ in 0..10 {
            assert!(budget.withdraw_at(now));
        }
        assert!(!budget.withdraw_at(now));
        // Withdrawals expire with their slot: the reserve comes back.
        let later = now + Duration::from_secs(2);
        assert!(budget.withdraw_at(later));
    }

    #[test]
    fn deposits_expire_after_the_ttl() {
        let budget = budget(1.0, 0, 1);
        let now = budget.start;
        budget.deposit_at(now);
        assert!(!budget.withdraw_at(now + Duration::from_secs(3)));

        budget.deposit_at(now + Duration::from_secs(5));
        budget.deposit_at(now + Duration::from_millis(5_300));
        // 900 ms after the first of them, both still count.
        assert!(budget.withdraw_at(now + Duration::from_millis(5_900)));
        assert!(budget.withdraw_at(now + Duration::from_millis(5_900)));
        assert!(!budget.withdraw_at(now + Duration::from_millis(5_900)));
    }

    #[test]
    fn a_fractional_ratio_is_kept_exactly() {
        let budget = budget(0.3, 0, 10);
        let now = budget.start;
        for _ in 0..10 {
            budget.deposit_at(now);
        }
        // 10 requests × 0.3 = 3 retries (tower's TpsBudget would allow 3
        // only after 9 requests, and never a fractional share).
        assert_eq!(budget.balance_at(now), 3.0);
        assert!(budget.withdraw_at(now));
        assert!(budget.withdraw_at(now));
        assert!(budget.withdraw_at(now));
        assert!(!budget.withdraw_at(now));
    }

    #[test]
    fn racing_withdrawals_never_overdraw() {
        let budget = Arc::new(budget(0.0, 10, 10)); // a reserve of 100 retries
        let now = budget.start;
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || (0..100).filter(|_| budget.withdraw_at(now)).count())
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(granted, 100);
        assert_eq!(budget.balance_at(now), 0.0);
    }

    #[test]
    fn packing_round_trips() {
        for (epoch, count) in [(0, 0), (1, -1), (u32::MAX, i32::MIN), (7, i32::MAX)] {
            assert_eq!(unpack(pack(epoch, count)), (epoch, count));
        }
        assert_eq!(age(u32::MAX, 1), 2);
        assert_eq!(age(3, 1), -2);
    }
}
