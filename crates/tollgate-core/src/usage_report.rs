//! [`UsageReport`]: what a request really used, from the cost layer to the
//! limits.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

const TOKENS: u8 = 1;
const PICOS: u8 = 2;
const COST_UNKNOWN: u8 = 4;

/// The real usage of a request — tokens and cost, summed over its upstream
/// attempts — carried as one `Arc<UsageReport>` request extension from
/// whatever learns it to whatever settles on it.
///
/// The contract:
///
/// - Whoever needs the usage puts an empty one in the request (the
///   rate-limit layer does, for a key with a tpm limit or a budget, unless
///   the request already carries one). Retries and fallbacks clone the
///   request's extensions, so every attempt sees the same report.
/// - The cost layer adds each attempt's tokens (prompt + completion) and
///   cost (pico-dollars) when the attempt's record is made — **before the
///   response body ends or is dropped**, since an inner body's end comes
///   first. An attempt whose cost is unknown (an unpriced model) marks it
///   with [`add_unknown_cost`](Self::add_unknown_cost): the sum is then not
///   a cost, and [`picos`](Self::picos) says `None`.
/// - The reader (the rate-limit layer, when the response ends) finds
///   `None` for what was never reported: a request whose usage never
///   arrived keeps its estimate.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_core::extensions::UsageReport;
///
/// let report = Arc::new(UsageReport::new());
/// assert_eq!(report.tokens(), None);
/// report.add_tokens(120);
/// report.add_picos(1_500_000_000); // $0.0015
/// assert_eq!(report.tokens(), Some(120));
/// assert_eq!(report.picos(), Some(1_500_000_000));
/// report.add_unknown_cost();
/// assert_eq!(report.picos(), None);
/// ```
#[derive(Debug, Default)]
pub struct UsageReport {
    tokens: AtomicU64,
    picos: AtomicU64,
    reported: AtomicU8,
}

impl UsageReport {
    /// An empty report.
    pub fn new() -> Self {
        UsageReport::default()
    }

    /// Adds tokens used (prompt + completion) by one upstream call.
    pub fn add_tokens(&self, tokens: u64) {
        saturating_add(&self.tokens, tokens);
        self.reported.fetch_or(TOKENS, Ordering::Release);
    }

    /// Adds the cost of one upstream call, in picodollars.
    pub fn add_picos(&self, picos: u64) {
        saturating_add(&self.picos, picos);
        self.reported.fetch_or(PICOS, Ordering::Release);
    }

    /// The tokens reported so far; `None` if none were.
    pub fn tokens(&self) -> Option<u64> {
        (self.reported.load(Ordering::Acquire) & TOKENS != 0)
            .then(|| self.tokens.load(Ordering::Acquire))
    }

    /// Marks an attempt whose cost is not known (its model has no price):
    /// the request's cost is then not known either.
    pub fn add_unknown_cost(&self) {
        self.reported.fetch_or(COST_UNKNOWN, Ordering::Release);
    }

    /// The cost reported so far, in picodollars; `None` if none was, or if
    /// an attempt's cost is unknown.
    pub fn picos(&self) -> Option<u64> {
        (self.reported.load(Ordering::Acquire) & (PICOS | COST_UNKNOWN) == PICOS)
            .then(|| self.picos.load(Ordering::Acquire))
    }
}

fn saturating_add(counter: &AtomicU64, value: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
        Some(current.saturating_add(value))
    });
}
