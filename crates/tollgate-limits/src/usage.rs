//! [`UsageReport`]: what a request really used, for the limits to settle.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

const TOKENS: u8 = 1;
const PICOS: u8 = 2;

/// The real usage of a request, filled in by whatever learns it, read by
/// the rate-limit layer when the response ends.
///
/// It travels as an `Arc<UsageReport>` request extension. The contract:
///
/// - The [`RateLimit`](crate::RateLimit) service inserts an empty one into
///   each request whose key has a tpm limit or a budget, unless the request
///   already carries one (a caller may insert its own to keep a handle).
/// - Something inside — the gateway's glue over the cost layer's record,
///   the upstream client, your own middleware — adds the tokens (prompt +
///   completion) and the cost (picodollars) of each upstream call, **before
///   the response body ends or is dropped**: the layer reads the report
///   when its body wrapper sees the end, and an inner body's end hook runs
///   before it (the wrapper drops its inner body first on drop, too).
///   Several calls (retries, fallbacks) add up.
/// - When the response ends, the layer reconciles the tpm reservation with
///   the reported tokens (giving back what was reserved but not used, or
///   taking what was used beyond it) and adds the reported cost to the
///   key's budget window. **A request whose usage never arrives keeps its
///   reservation** (the estimate stands as its usage) and adds no spend.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_limits::UsageReport;
///
/// let report = Arc::new(UsageReport::new());
/// assert_eq!(report.tokens(), None);
/// report.add_tokens(120);
/// report.add_picos(1_500_000_000); // $0.0015
/// assert_eq!(report.tokens(), Some(120));
/// assert_eq!(report.picos(), Some(1_500_000_000));
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

    /// The cost reported so far, in picodollars; `None` if none was.
    pub fn picos(&self) -> Option<u64> {
        (self.reported.load(Ordering::Acquire) & PICOS != 0)
            .then(|| self.picos.load(Ordering::Acquire))
    }
}

fn saturating_add(counter: &AtomicU64, value: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
        Some(current.saturating_add(value))
    });
}
