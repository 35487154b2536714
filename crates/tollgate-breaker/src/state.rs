//! The breaker of one key: its state machine and its sliding window.
//!
//! Everything here is a function of (state, event, `now`): no clock is read,
//! nothing is awaited and nothing is spawned, so tests and the proptest drive
//! it with whatever instants they like. The caller passes the time in.
//!
//! # Concurrency
//!
//! The CLOSED path, which is nearly every call, takes no lock:
//!
//! - admission is one atomic load of the state word (`generation << 2 |
//!   phase`);
//! - an outcome is one compare-and-swap on the current bucket of the
//!   [`Window`] (epoch and counts packed in one `u64`, so a bucket rolls over
//!   without a lock and without losing a count) and, for a failure, one
//!   `fetch_add` on the consecutive-failure counter.
//!
//! Only when a counted failure crosses a threshold, and on every path out of
//! CLOSED (OPEN, HALF_OPEN, probes), is the key's mutex taken. Transitions
//! happen under it and bump the generation, so the outcome of a call
//! admitted under an older generation can never move the breaker: a slow call
//! admitted while CLOSED that fails after the breaker already opened, closed
//! again and started a fresh window is ignored rather than counted against
//! the new window.
//!
//! Counts are statistics, not invariants: at a bucket boundary, a call that
//! raced a concurrent transition may be counted in a window it did not
//! belong to. The invariants the proptest checks — probe bounds, OPEN admits
//! nothing early, a successful probe closes — live under the mutex and are
//! exact.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::BreakerConfig;

mod window;

use window::Window;
#[cfg(test)]
use window::{COUNT_MAX, pack};

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are rejected at once until the open time is over.
    Open,
    /// A bounded number of probes go through; the rest are rejected.
    HalfOpen,
}

impl State {
    /// `"closed"`, `"open"` or `"half_open"`, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// The failure rate over the window reached the threshold.
    FailureRate,
    /// Too many counted failures in a row.
    ConsecutiveFailures,
    /// The upstream rate-limited the key and said how long to wait.
    RateLimited,
    /// The open time is over; probes may go through.
    CooldownElapsed,
    /// A probe failed.
    ProbeFailed,
    /// Enough probes succeeded.
    ProbeSucceeded,
    /// [`Breakers::force_open`](crate::Breakers::force_open) was called.
    Forced,
    /// [`Breakers::reset`](crate::Breakers::reset) was called.
    Reset,
}

impl Reason {
    /// The snake_case name, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::FailureRate => "failure_rate",
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::RateLimited => "rate_limited",
            Reason::CooldownElapsed => "cooldown_elapsed",
            Reason::ProbeFailed => "probe_failed",
            Reason::ProbeSucceeded => "probe_succeeded",
            Reason::Forced => "forced",
            Reason::Reset => "reset",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of state, as the state machine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) reason: Reason,
    pub(crate) at: Instant,
    pub(crate) open_until: Option<Instant>,
}

/// What one outcome tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed in a way that counts; `rate_limit_wait` is the wait
    /// the upstream asked for, when it was a rate limit that said.
    Failure { rate_limit_wait: Option<Duration> },
    /// Neither: a failure whose class does not count (the request's own
    /// fault), or a call the client cancelled.
    Neither,
}

/// A call let through, to be settled with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// Admitted while CLOSED, in this generation.
    Closed(u64),
    /// A HALF_OPEN probe, admitted in this generation.
    Probe(u64),
}

/// The answer to "may this call go through?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted(Ticket),
    /// Rejected; `retry_after` is the rest of the open time (none while
    /// HALF_OPEN with every probe slot taken: nobody knows yet).
    Rejected {
        retry_after: Option<Duration>,
    },
}

/// What a snapshot reads from one key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) state: State,
    pub(crate) since: Instant,
    pub(crate) window_calls: u32,
    pub(crate) window_failures: u32,
    pub(crate) consecutive_failures: u32,
    pub(crate) open_until: Option<Instant>,
    pub(crate) probes_in_flight: u32,
    pub(crate) reopenings: u32,
    pub(crate) last_reason: Option<Reason>,
}

const PHASE_CLOSED: u64 = 0;
const PHASE_OPEN: u64 = 1;
const PHASE_HALF_OPEN: u64 = 2;

fn word(generation: u64, phase: u64) -> u64 {
    generation << 2 | phase
}

/// The breaker of one key.
#[derive(Debug)]
pub(crate) struct KeyState {
    /// `generation << 2 | phase`: read without the lock by the CLOSED path,
    /// written only under it.
    word: AtomicU64,
    window: Window,
    consecutive: AtomicU32,
    slow: Mutex<Slow>,
}

/// The part of the state only transitions and non-CLOSED calls touch.
#[derive(Debug)]
struct Slow {
    phase: Phase,
    generation: u64,
    since: Instant,
    /// Failed probes since the breaker last closed: the exponent of the
    /// open time.
    reopenings: u32,
    /// Probes admitted and not yet settled, whatever generation admitted
    /// them: a probe from a HALF_OPEN period that already ended is still a
    /// request in flight to the upstream.
    probes_in_flight: u32,
    /// Successful probes in this HALF_OPEN period.
    successes: u32,
    last_reason: Option<Reason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

impl Phase {
    fn state(self) -> State {
        match self {
            Phase::Closed => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen => State::HalfOpen,
        }
    }

    fn bits(self) -> u64 {
        match self {
            Phase::Closed => PHASE_CLOSED,
            Phase::Open { .. } => PHASE_OPEN,
            Phase::HalfOpen => PHASE_HALF_OPEN,
        }
    }
}

/// The open time after `reopenings` failed probes: `cooldown × 2^reopenings`,
/// capped at `max_cooldown`, then shortened by up to `jitter` of itself
/// (`sample` is uniform in `[0, 1)`).
pub(crate) fn open_duration(config: &BreakerConfig, reopenings: u32, sample: f64) -> Duration {
    let factor = 1u32.checked_shl(reopenings).unwrap_or(u32::MAX);
    let base = config
        .cooldown
        .saturating_mul(factor)
        .min(config.max_cooldown);
    let cut = config.jitter * sample.clamp(0.0, 1.0);
    base.mul_f64(1.0 - cut)
}

impl KeyState {
    /// A CLOSED breaker whose window starts at `now`.
    pub(crate) fn new(config: &BreakerConfig, now: Instant) -> Self {
        KeyState {
            word: AtomicU64::new(word(0, PHASE_CLOSED)),
            window: Window::new(config.window, config.buckets, now),
            consecutive: AtomicU32::new(0),
            slow: Mutex::new(Slow {
                phase: Phase::Closed,
                generation: 0,
                since: now,
                reopenings: 0,
                probes_in_flight: 0,
                successes: 0,
                last_reason: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slow> {
        // Nothing under the lock can panic half-way through a transition;
        // a poisoned lock still holds a consistent state.
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fast path of [`admit`](Self::admit): a CLOSED breaker admits
    /// with one atomic load, and needs no clock.
    pub(crate) fn admit_closed(&self) -> Option<Ticket> {
        let current = self.word.load(Ordering::Acquire);
        (current & 0b11 == PHASE_CLOSED).then_some(Ticket::Closed(current >> 2))
    }

    /// Whether the breaker is CLOSED, with one atomic load: time alone
    /// never takes a CLOSED breaker anywhere else.
    pub(crate) fn is_closed(&self) -> bool {
        self.word.load(Ordering::Acquire) & 0b11 == PHASE_CLOSED
    }

    /// May a call go through at `now`?
    pub(crate) fn admit(
        &self,
        config: &BreakerConfig,
        now: Instant,
        on_change: &mut dyn FnMut(Transition),
    ) -> Admission {
        if let Some(ticket) = self.admit_closed() {
            return Admission::Admitted(ticket);
        }
        let mut slow = self.lock();
        self.advance_locked(&mut slow, now, on_change);
        match slow.phase {
            // Closed again while we waited for the lock.
            Phase::Closed => Admission::Admitted(Ticket::Closed(slow.generation)),
            Phase::Open { until } => Admission::Rejected {
                retry_after: Some(until.saturating_duration_since(now)),
            },
            Phase::HalfOpen if slow.probes_in_flight < config.half_open_max_probes => {
                slow.probes_in_flight += 1;
                Admission::Admitted(Ticket::Probe(slow.generation))
            }
            Phase::HalfOpen => Admission::Rejected { retry_after: None },
        }
    }

    /// Records how an admitted call ended.
    pub(crate) fn settle(
        &self,
        config: &BreakerConfig,
        ticket: Ticket,
        outcome: Outcome,
        now: Instant,
        sample: &mut dyn FnMut() -> f64,
        on_change: &mut dyn FnMut(Transition),
    ) {
        match ticket {
            Ticket::Closed(generation) => {
                self.settle_closed(config, generation, outcome, now, sample, on_change)
            }
            Ticket::Probe(generation) => {
                self.settle_probe(config, generation, outcome, now, sample, on_change)
            }
        }
    }

    fn settle_closed(
        &self,
        config: &BreakerConfig,
        generation: u64,
        outcome: Outcome,
        now: Instant,
        sample: &mut dyn FnMut() -> f64,
        on_change: &mut dyn FnMut(Transition),
    ) {
        let closed = word(generation, PHASE_CLOSED);
        if self.word.load(Ordering::Acquire) != closed {
            // Admitted under an older generation: says nothing about now.
            return;
        }
        let rate_limit_wait = match outcome {
            Outcome::Neither => return,
            Outcome::Success => {
                self.window.record(now, false);
                // Skip the store when already zero: no write, no cache-line
                // ping-pong between cores on the success path.
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                return;
            }
            Outcome::Failure { rate_limit_wait } => rate_limit_wait,
        };
        self.window.record(now, true);
        let in_a_row = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let rate_limit_open = rate_limit_open(config, rate_limit_wait);
        let reason = if config.consecutive_failures > 0 && in_a_row >= config.consecutive_failures {
            Some(Reason::ConsecutiveFailures)
        } else if self.window.rate_exceeded(config, now) {
            Some(Reason::FailureRate)
        } else {
            None
        };
        let (reason, open_for) = match (reason, rate_limit_open) {
            (None, None) => return,
            (None, Some(wait)) => (Reason::RateLimited, wait),
            (Some(reason), wait) => {
                let escalated = open_duration(config, 0, sample());
                (reason, escalated.max(wait.unwrap_or_default()))
            }
        };
        let mut slow = self.lock();
        if slow.generation != generation || slow.phase != Phase::Closed {
            // Another failure opened it first.
            return;
        }
        slow.reopenings = 0;
        self.transition(
            &mut slow,
            Phase::Open {
                until: now + open_for,
            },
            reason,
            now,
            on_change,
        );
    }

    fn settle_probe(
        &self,
        config: &BreakerConfig,
        generation: u64,
        outcome: Outcome,
        now: Instant,
        sample: &mut dyn FnMut() -> f64,
        on_change: &mut dyn FnMut(Transition),
    ) {
        let mut slow = self.lock();
        slow.probes_in_flight = slow.probes_in_flight.saturating_sub(1);
        if slow.generation != generation || slow.phase != Phase::HalfOpen {
            // A probe of a HALF_OPEN period that is over: it freed its slot,
            // its verdict is stale.
            return;
        }
        match outcome {
            Outcome::Neither => {}
            Outcome::Success => {
                slow.successes += 1;
                if slow.successes >= config.success_threshold {
                    // A fresh start: the window and the run of failures
                    // belong to the outage that is over.
                    self.window.reset();
                    self.consecutive.store(0, Ordering::Relaxed);
                    slow.reopenings = 0;
                    self.transition(
                        &mut slow,
                        Phase::Closed,
                        Reason::ProbeSucceeded,
                        now,
                        on_change,
                    );
                }
            }
            Outcome::Failure { rate_limit_wait } => {
                slow.reopenings = slow.reopenings.saturating_add(1);
                let escalated = open_duration(config, slow.reopenings, sample());
                let open_for =
                    escalated.max(rate_limit_open(config, rate_limit_wait).unwrap_or_default());
                self.transition(
                    &mut slow,
                    Phase::Open {
                        until: now + open_for,
                    },
                    Reason::ProbeFailed,
                    now,
                    on_change,
                );
            }
        }
    }

    /// Applies the transitions that time alone causes (OPEN → HALF_OPEN once
    /// the open time is over). Admission does this itself; snapshots call it
    /// so that a breaker nobody calls does not look open forever.
    pub(crate) fn advance(&self, now: Instant, on_change: &mut dyn FnMut(Transition)) {
        if self.word.load(Ordering::Acquire) & 0b11 != PHASE_OPEN {
            return;
        }
        let mut slow = self.lock();
        self.advance_locked(&mut slow, now, on_change);
    }

    fn advance_locked(&self, slow: &mut Slow, now: Instant, on_change: &mut dyn FnMut(Transition)) {
        if let Phase::Open { until } = slow.phase
            && now >= until
        {
            self.transition(
                slow,
                Phase::HalfOpen,
                Reason::CooldownElapsed,
                now,
                on_change,
            );
        }
    }

    /// Opens the breaker until `until`, whatever its state.
    pub(crate) fn force_open(
        &self,
        until: Instant,
        now: Instant,
        on_change: &mut dyn FnMut(Transition),
    ) {
        let mut slow = self.lock();
        self.transition(
            &mut slow,
            Phase::Open { until },
            Reason::Forced,
            now,
            on_change,
        );
    }

    /// Closes the breaker with a fresh window, whatever its state.
    pub(crate) fn reset(&self, now: Instant, on_change: &mut dyn FnMut(Transition)) {
        let mut slow = self.lock();
        self.window.reset();
        self.consecutive.store(0, Ordering::Relaxed);
        slow.reopenings = 0;
        if slow.phase != Phase::Closed {
            self.transition(&mut slow, Phase::Closed, Reason::Reset, now, on_change);
        }
    }

    /// What the breaker looks like at `now`.
    pub(crate) fn view(&self, now: Instant) -> View {
        let slow = self.lock();
        let (window_calls, window_failures) = self.window.counts(now);
        View {
            state: slow.phase.state(),
            since: slow.since,
            window_calls,
            window_failures,
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            open_until: match slow.phase {
                Phase::Open { until } => Some(until),
                _ => None,
            },
            probes_in_flight: slow.probes_in_flight,
            reopenings: slow.reopenings,
            last_reason: slow.last_reason,
        }
    }

    fn transition(
        &self,
        slow: &mut Slow,
        to: Phase,
        reason: Reason,
        now: Instant,
        on_change: &mut dyn FnMut(Transition),
    ) {
        let from = slow.phase.state();
        slow.phase = to;
        slow.generation += 1;
        slow.since = now;
        slow.last_reason = Some(reason);
        if to == Phase::HalfOpen {
            slow.successes = 0;
        }
        self.word
            .store(word(slow.generation, to.bits()), Ordering::Release);
        on_change(Transition {
            from,
            to: to.state(),
            reason,
            at: now,
            open_until: match to {
                Phase::Open { until } => Some(until),
                _ => None,
            },
        });
    }
}

/// How long a rate-limit failure opens the breaker for, if it does.
fn rate_limit_open(config: &BreakerConfig, wait: Option<Duration>) -> Option<Duration> {
    wait.filter(|wait| config.open_on_rate_limit && !wait.is_zero())
        .map(|wait| wait.min(config.max_rate_limit_open))
}

#[cfg(test)]
mod tests;
