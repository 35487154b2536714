//! [`RequestTally`]: the sum of a request's attempts.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::record::CostRecord;
use crate::usage::TokenUsage;
use tollgate_core::Usd;

/// What all the attempts of one request used and cost, summed as their
/// records are made — for the one access-log line a gateway writes per
/// request.
///
/// The caller puts an `Arc<RequestTally>` in the request's extensions
/// before the stack that retries and falls back; the [`CostLayer`] below
/// it finds the same `Arc` in each attempt's request (extensions are cloned
/// with the request) and adds each record to it with a few atomic
/// operations. Read it with [`snapshot`](Self::snapshot) once the response
/// body has ended (or been dropped): every record is in by then, because a
/// record is made before the body reports its end.
///
/// ```
/// use std::sync::Arc;
/// use tollgate_cost::RequestTally;
///
/// let tally = Arc::new(RequestTally::new());
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(tally.clone());
/// // ... the request goes through the stack, the body ends ...
/// let sum = tally.snapshot();
/// assert_eq!(sum.attempts, 0);
/// assert!(!sum.cost_unknown);
/// ```
///
/// [`CostLayer`]: crate::CostLayer
#[derive(Debug, Default)]
pub struct RequestTally {
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cached_prompt_tokens: AtomicU64,
    cache_write_tokens: AtomicU64,
    reasoning_tokens: AtomicU64,
    estimated: AtomicBool,
    billed_picos: AtomicU64,
    cost_unknown: AtomicBool,
    attempts: AtomicU32,
    upstream_nanos: AtomicU64,
}

/// A [`RequestTally`] read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TallySnapshot {
    /// The tokens of every attempt, summed; `estimated` when any count was.
    pub usage: TokenUsage,
    /// What the attempts with a known cost were billed, summed.
    pub billed: Usd,
    /// Whether any attempt's cost is unknown (then `billed` is a lower
    /// bound).
    pub cost_unknown: bool,
    /// How many attempts were recorded.
    pub attempts: u32,
    /// Their upstream times, summed.
    pub upstream_time: Duration,
}

impl RequestTally {
    /// A tally of nothing.
    pub fn new() -> RequestTally {
        RequestTally::default()
    }

    /// Adds one attempt's record.
    pub fn add(&self, record: &CostRecord) {
        let relaxed = Ordering::Relaxed;
        if let Some(usage) = &record.usage {
            self.prompt_tokens.fetch_add(usage.prompt_tokens, relaxed);
            self.completion_tokens
                .fetch_add(usage.completion_tokens, relaxed);
            self.cached_prompt_tokens
                .fetch_add(usage.cached_prompt_tokens, relaxed);
            self.cache_write_tokens
                .fetch_add(usage.cache_write_tokens, relaxed);
            self.reasoning_tokens
                .fetch_add(usage.reasoning_tokens, relaxed);
            if usage.estimated {
                self.estimated.store(true, relaxed);
            }
        }
        match record.cost.billed() {
            Some(billed) => {
                // Saturating, like `Usd`.
                let _ = self.billed_picos.fetch_update(relaxed, relaxed, |sum| {
                    Some(sum.saturating_add(billed.picos()))
                });
            }
            None => self.cost_unknown.store(true, relaxed),
        }
        let nanos = u64::try_from(record.upstream_time.as_nanos()).unwrap_or(u64::MAX);
        self.upstream_nanos.fetch_add(nanos, relaxed);
        // Last, with release: a reader that sees the count sees the rest.
        self.attempts.fetch_add(1, Ordering::Release);
    }

    /// The sums so far.
    pub fn snapshot(&self) -> TallySnapshot {
        let attempts = self.attempts.load(Ordering::Acquire);
        let relaxed = Ordering::Relaxed;
        TallySnapshot {
            usage: TokenUsage {
                prompt_tokens: self.prompt_tokens.load(relaxed),
                completion_tokens: self.completion_tokens.load(relaxed),
                cached_prompt_tokens: self.cached_prompt_tokens.load(relaxed),
                cache_write_tokens: self.cache_write_tokens.load(relaxed),
                reasoning_tokens: self.reasoning_tokens.load(relaxed),
                estimated: self.estimated.load(relaxed),
            },
            billed: Usd::from_picos(self.billed_picos.load(relaxed)),
            cost_unknown: self.cost_unknown.load(relaxed),
            attempts,
            upstream_time: Duration::from_nanos(self.upstream_nanos.load(relaxed)),
        }
    }
}
