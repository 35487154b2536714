//! The checks of one request, and [`Admission`]: what settles it.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::RateLimited;
use crate::gcra::Quota;
use crate::headers::{LimitState, RateLimitHeaders};
use crate::limits::{Budget, BudgetWindow, KeyLimits};
use crate::store::{Lease, Store};
use tollgate_core::extensions::UsageReport;
use tollgate_core::time::Clock;

/// What a request with a limit of 0 is told to wait: a minute (the limit
/// does not recover, but the configuration may change).
const ZERO_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The store key of a limit of a key: `{kind}:{name}`.
pub(crate) fn store_key(kind: &str, name: &str) -> String {
    format!("{kind}:{name}")
}

/// Counts `picos` as already spent by the key `name` in the window of
/// `budget` that holds `now_unix_ms` — for an application that keeps spend
/// in a durable record of its own (a ledger) and starts again with an empty
/// [`MemoryStore`](crate::MemoryStore): without it a restart would give
/// every key its whole budget back.
pub async fn restore_spend(
    store: &dyn Store,
    name: &str,
    budget: &Budget,
    now_unix_ms: i64,
    picos: u64,
) {
    let window = budget.window_at(now_unix_ms);
    store
        .add_spend(&store_key("budget", name), window, picos)
        .await;
}

/// Runs a request's checks in order — rpm, tpm, parallel, budget — and
/// returns what must be settled when its response ends, or the first
/// rejection.
///
/// A rejection gives back what the earlier checks took, except the
/// request cell (OpenAI counts rejected requests against the request
/// limit too, so retrying in a loop does not help).
pub(crate) async fn admit(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limits: Arc<KeyLimits>,
    tokens: u64,
    report: Option<Arc<UsageReport>>,
    now: Instant,
) -> Result<Admission, RateLimited> {
    let name = &limits.name;
    let mut admission = Admission::nothing(store.clone(), report);

    if let Some(rpm) = limits.rpm {
        if rpm == 0 {
            return Err(RateLimited::requests(
                name.clone(),
                rpm,
                ZERO_LIMIT_RETRY_AFTER,
                admission.headers,
            ));
        }
        let limit = u64::from(rpm);
        let decision = store
            .gcra(&store_key("rpm", name), Quota::per_minute(limit), 1, now)
            .await;
        admission.headers.requests = Some(LimitState::from_decision(limit, &decision));
        if !decision.allowed {
            return Err(RateLimited::requests(
                name.clone(),
                rpm,
                decision.retry_after,
                admission.headers,
            ));
        }
    }

    if let Some(tpm) = limits.tpm {
        if tpm == 0 {
            return Err(RateLimited::tokens(
                name.clone(),
                tpm,
                ZERO_LIMIT_RETRY_AFTER,
                admission.headers,
            ));
        }
        let quota = Quota::per_minute(tpm);
        // A request larger than the whole limit waits for a full bucket
        // and empties it, rather than never going.
        let reserved = tokens.min(tpm);
        let key = store_key("tpm", name);
        let decision = store.gcra(&key, quota, reserved, now).await;
        admission.headers.tokens = Some(LimitState::from_decision(tpm, &decision));
        if !decision.allowed {
            return Err(RateLimited::tokens(
                name.clone(),
                tpm,
                decision.retry_after,
                admission.headers,
            ));
        }
        if reserved > 0 {
            admission.tpm = Some(Reservation {
                key,
                quota,
                reserved,
            });
        }
    }

    if let Some(max) = limits.max_parallel {
        let key = store_key("parallel", name);
        match store.acquire(&key, max, now).await {
            Some(lease) => admission.lease = Some((key, lease)),
            None => {
                return Err(RateLimited::parallel(name.clone(), max, admission.refund()));
            }
        }
    }

    if let Some(budget) = limits.max_budget {
        let now_ms = clock.now_unix_ms();
        let window = budget.window_at(now_ms);
        let key = store_key("budget", name);
        let spent = store.spend(&key, window).await;
        if spent >= budget.max_picos {
            return Err(RateLimited::budget(
                name.clone(),
                &budget,
                spent,
                window.remaining(now_ms),
                admission.refund(),
            ));
        }
        admission.budget = Some((key, window));
    }

    Ok(admission)
}

/// Runs [`admit`] for each of `subjects` in order (a key, then what it
/// shares limits with: its team, its end user), so that the stricter limit
/// wins; one [`Admission`] holds them all. A rejection by a later subject
/// gives back what the earlier ones took, as a rejection by a later check
/// does.
pub(crate) async fn admit_all(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    subjects: Vec<Arc<KeyLimits>>,
    tokens: u64,
    report: Option<Arc<UsageReport>>,
    now: Instant,
) -> Result<Admission, RateLimited> {
    let mut admitted: Vec<Admission> = Vec::with_capacity(subjects.len());
    for limits in subjects {
        let checked = admit(
            store.clone(),
            clock.clone(),
            limits,
            tokens,
            report.clone(),
            now,
        )
        .await;
        match checked {
            Ok(admission) => admitted.push(admission),
            Err(rejected) => {
                for earlier in &mut admitted {
                    earlier.refund = true;
                }
                return Err(rejected);
            }
        }
    }
    // Chain them, the first (the key's) outermost; the headers show, per
    // kind, the subject with the least left.
    let mut chained = admitted
        .pop()
        .unwrap_or_else(|| Admission::nothing(store, report));
    while let Some(mut admission) = admitted.pop() {
        admission.headers.tighten(&chained.headers);
        admission.next = Some(Box::new(chained));
        chained = admission;
    }
    Ok(chained)
}

struct Reservation {
    key: String,
    quota: Quota,
    reserved: u64,
}

/// What an admitted request holds until its response ends: the tpm
/// reservation, the parallel permit, the budget window. Settles when
/// dropped — at the end of the body, on an error, when the client goes
/// away — so no path can leak a permit.
pub(crate) struct Admission {
    store: Arc<dyn Store>,
    tpm: Option<Reservation>,
    lease: Option<(String, Lease)>,
    budget: Option<(String, BudgetWindow)>,
    report: Option<Arc<UsageReport>>,
    headers: RateLimitHeaders,
    /// A later check rejected the request: give the reservation back.
    refund: bool,
    /// The next subject's admission ([`admit_all`]), settled with this one.
    next: Option<Box<Admission>>,
}

impl Admission {
    /// An admission that holds nothing yet.
    fn nothing(store: Arc<dyn Store>, report: Option<Arc<UsageReport>>) -> Self {
        Admission {
            store,
            tpm: None,
            lease: None,
            budget: None,
            report,
            headers: RateLimitHeaders::default(),
            refund: false,
            next: None,
        }
    }

    /// The headers for the response.
    pub(crate) fn headers(&self) -> &RateLimitHeaders {
        &self.headers
    }

    /// Marks the admission as rejected by a later check; returns the
    /// headers as they will be once the tokens are given back.
    fn refund(&mut self) -> RateLimitHeaders {
        self.refund = true;
        let mut headers = self.headers;
        if let (Some(tokens), Some(reservation)) = (&mut headers.tokens, &self.tpm) {
            tokens.remaining = tokens
                .remaining
                .saturating_add(reservation.reserved)
                .min(tokens.limit);
            let interval = reservation.quota.emission_interval();
            let given_back =
                interval.saturating_mul(u32::try_from(reservation.reserved).unwrap_or(u32::MAX));
            tokens.reset = tokens.reset.saturating_sub(given_back);
        }
        headers
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let report = self.report.as_deref();
        let tpm = self.tpm.take().and_then(|reservation| {
            let reserved = i64::try_from(reservation.reserved).unwrap_or(i64::MAX);
            let delta = if self.refund {
                -reserved
            } else {
                // No report: the reservation stands as the usage.
                let used = i64::try_from(report?.tokens()?).unwrap_or(i64::MAX);
                used - reserved
            };
            (delta != 0).then_some((reservation, delta))
        });
        let spend = match (self.budget.take(), report.and_then(UsageReport::picos)) {
            (Some(budget), Some(picos)) if picos > 0 && !self.refund => Some((budget, picos)),
            _ => None,
        };
        let lease = self.lease.take();
        if tpm.is_none() && spend.is_none() && lease.is_none() {
            return;
        }
        let store = self.store.clone();
        settle_soon(async move {
            if let Some((key, lease)) = lease {
                store.release(&key, lease).await;
            }
            if let Some((reservation, delta)) = tpm {
                store
                    .adjust(&reservation.key, reservation.quota, delta, Instant::now())
                    .await;
            }
            if let Some(((key, window), picos)) = spend {
                store.add_spend(&key, window, picos).await;
            }
        });
    }
}

/// Runs a settlement now if it can finish at once (the memory store's
/// always can), else on a task.
pub(crate) fn settle_soon(future: impl Future<Output = ()> + Send + 'static) {
    let mut future = Box::pin(future);
    if future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
    {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(future);
        }
        Err(_) => {
            tracing::warn!("a rate-limit settlement was dropped: no tokio runtime to finish it on")
        }
    }
}
