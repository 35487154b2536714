//! [`Breakers`]: the registry of per-key breakers, shared by every clone of
//! a layer and its services, and how to watch it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tollgate_core::classify::StreamEnd;
use tollgate_core::{ErrorClass, Failure, Valid};

use crate::config::BreakerConfig;
use crate::jitter::{DefaultJitter, JitterSource};
use crate::state::{Admission, KeyState, Outcome, Reason, State, Ticket, Transition};

/// How many state changes a slow subscriber may fall behind before it
/// misses some (it then gets `RecvError::Lagged` and should re-read the
/// snapshots, which are the truth).
pub const EVENT_CAPACITY: usize = 1024;

/// The breakers of every key, built once with the layer and shared by all
/// its services: a cheap, cloneable handle.
///
/// Read it to see the breakers ([`snapshots`](Self::snapshots)), subscribe
/// to their state changes ([`subscribe`](Self::subscribe)), register the keys
/// you know up front so that they show before their first call
/// ([`register`](Self::register)), give one key its own settings
/// ([`register_with`](Self::register_with)), or act on one by hand
/// ([`force_open`](Self::force_open), [`reset`](Self::reset)).
///
/// # Concurrency
///
/// The key → breaker map sits behind an [`ArcSwap`]: a call finds its
/// breaker with a lock-free load and one hash lookup; adding a key copies
/// the map under a mutex, which only happens the first time a key is seen.
/// Each breaker keeps its CLOSED path in atomics (see the `state` module), so
/// calls on a healthy key never contend on a lock.
#[derive(Clone)]
pub struct Breakers {
    shared: Arc<Shared>,
}

struct Shared {
    config: Arc<BreakerConfig>,
    map: ArcSwap<KeyMap>,
    /// Serialises copy-on-write inserts into `map`.
    insert: Mutex<()>,
    hub: Arc<Hub>,
    warned_full: AtomicBool,
}

/// The breakers by key. Hashed with foldhash, not SipHash: every call
/// looks its key up (and the cascade each group's), and the keys are the
/// configuration's deployment ids, not a client's text to flood a bucket
/// with.
type KeyMap = HashMap<Arc<str>, Arc<Entry>, foldhash::fast::RandomState>;

/// What every key's breaker shares: where events go, where jitter comes
/// from.
struct Hub {
    events: broadcast::Sender<StateChange>,
    jitter: Box<dyn JitterSource>,
}

/// One key's breaker and its settings.
pub(crate) struct Entry {
    key: Arc<str>,
    config: Arc<BreakerConfig>,
    state: KeyState,
    hub: Arc<Hub>,
}

/// A handle on a [`Breakers`] registry that does not keep it alive — for
/// background tasks (a metrics exporter, a sync with other replicas) that
/// should end with the registry.
#[derive(Clone)]
pub struct WeakBreakers {
    shared: std::sync::Weak<Shared>,
}

impl WeakBreakers {
    /// The registry, if it still exists.
    pub fn upgrade(&self) -> Option<Breakers> {
        self.shared.upgrade().map(|shared| Breakers { shared })
    }
}

impl std::fmt::Debug for WeakBreakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakBreakers").finish_non_exhaustive()
    }
}

impl Breakers {
    /// A handle that does not keep the registry alive.
    pub fn downgrade(&self) -> WeakBreakers {
        WeakBreakers {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// An empty registry whose breakers use `config` (checked where it was
    /// loaded: see [`Valid`]).
    pub fn new(config: Valid<BreakerConfig>) -> Self {
        Breakers::with_jitter(config, DefaultJitter::new())
    }

    /// Like [`new`](Self::new), with open times jittered from `jitter`.
    pub fn with_jitter(config: Valid<BreakerConfig>, jitter: impl JitterSource) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Breakers {
            shared: Arc::new(Shared {
                config: Arc::new(config.into_inner()),
                map: ArcSwap::from_pointee(KeyMap::default()),
                insert: Mutex::new(()),
                hub: Arc::new(Hub {
                    events,
                    jitter: Box::new(jitter),
                }),
                warned_full: AtomicBool::new(false),
            }),
        }
    }

    /// The settings of keys registered without their own.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// Adds a breaker for `key` with the default settings, so that it shows
    /// in [`snapshots`](Self::snapshots) before its first call. Does nothing
    /// if the key is known.
    pub fn register(&self, key: &str) {
        self.entry(key);
    }

    /// Gives `key` its own settings (a deployment's overrides), adding its
    /// breaker if new. Meant for start-up: a key already known starts over
    /// with a fresh CLOSED breaker, and its calls in flight settle on the
    /// old one.
    pub fn register_with(&self, key: &str, config: Valid<BreakerConfig>) {
        let _guard = self.lock_inserts();
        let current = self.shared.map.load();
        let entry = self.new_entry(key, Arc::new(config.into_inner()));
        let mut map = KeyMap::clone(&current);
        map.insert(entry.key.clone(), entry);
        self.shared.map.store(Arc::new(map));
    }

    /// The breaker of `key` at this moment, if the key is known.
    pub fn snapshot(&self, key: &str) -> Option<Snapshot> {
        let entry = self.shared.map.load().get(key).cloned()?;
        Some(entry.snapshot(Instant::now()))
    }

    /// Whether the breaker of `key` is OPEN at this moment (an unknown key
    /// is not): a snapshot's state, without the snapshot when the breaker
    /// is CLOSED — the cascade and the balancer ask this of each request's
    /// deployments.
    pub(crate) fn is_open_now(&self, key: &str) -> bool {
        let map = self.shared.map.load();
        let Some(entry) = map.get(key) else {
            return false;
        };
        !entry.state.is_closed() && entry.snapshot(Instant::now()).state == State::Open
    }

    /// Every breaker at this moment, sorted by key.
    ///
    /// A breaker whose open time is over is shown (and reported) as
    /// HALF_OPEN even if no call came to probe it yet: it is, since the next
    /// call will be a probe.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        let now = Instant::now();
        let map = self.shared.map.load();
        let mut snapshots: Vec<Snapshot> = map.values().map(|entry| entry.snapshot(now)).collect();
        snapshots.sort_by(|a, b| a.key.cmp(&b.key));
        snapshots
    }

    /// State changes from now on, for metrics and logs.
    ///
    /// A bounded broadcast channel ([`EVENT_CAPACITY`] events): sending never
    /// blocks a call, and a subscriber that falls behind learns how many
    /// events it missed (`RecvError::Lagged`) instead of slowing the
    /// breakers down or growing memory. The events of one key arrive in the
    /// order they happened. Every change is also logged with `tracing`.
    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.shared.hub.events.subscribe()
    }

    /// Opens the breaker of `key` for `duration`, whatever its state (an
    /// operator's "cool this deployment down"). After that it probes as
    /// usual. Registers the key if needed; returns false when the registry
    /// is full.
    pub fn force_open(&self, key: &str, duration: Duration) -> bool {
        let Some(entry) = self.entry(key) else {
            return false;
        };
        let now = Instant::now();
        entry
            .state
            .force_open(now + duration, now, &mut |t| entry.publish(t));
        true
    }

    /// Closes the breaker of `key` with fresh counts, whatever its state.
    /// Returns false when the key is unknown.
    pub fn reset(&self, key: &str) -> bool {
        let Some(entry) = self.shared.map.load().get(key).cloned() else {
            return false;
        };
        entry.state.reset(Instant::now(), &mut |t| entry.publish(t));
        true
    }

    /// Forgets the breaker of `key` (a deployment a reloaded config no
    /// longer has); calls in flight settle on it, and a later call for the
    /// key starts a fresh one. Returns false when the key is unknown.
    pub fn remove(&self, key: &str) -> bool {
        let _guard = self.lock_inserts();
        let current = self.shared.map.load();
        if !current.contains_key(key) {
            return false;
        }
        let mut map = KeyMap::clone(&current);
        map.remove(key);
        self.shared.map.store(Arc::new(map));
        true
    }

    /// The breaker of `key`, added if new; `None` when the registry is full.
    pub(crate) fn entry(&self, key: &str) -> Option<Arc<Entry>> {
        if let Some(entry) = self.shared.map.load().get(key) {
            return Some(entry.clone());
        }
        self.insert(key)
    }

    #[cold]
    fn insert(&self, key: &str) -> Option<Arc<Entry>> {
        let _guard = self.lock_inserts();
        let current = self.shared.map.load();
        if let Some(entry) = current.get(key) {
            return Some(entry.clone());
        }
        if current.len() >= self.shared.config.max_keys {
            if !self.shared.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_keys = self.shared.config.max_keys,
                    "circuit breaker registry is full; calls for new keys pass unguarded"
                );
            }
            return None;
        }
        let entry = self.new_entry(key, self.shared.config.clone());
        let mut map = KeyMap::clone(&current);
        map.insert(entry.key.clone(), entry.clone());
        self.shared.map.store(Arc::new(map));
        Some(entry)
    }

    fn new_entry(&self, key: &str, config: Arc<BreakerConfig>) -> Arc<Entry> {
        Arc::new(Entry {
            key: Arc::from(key),
            state: KeyState::new(&config, Instant::now()),
            config,
            hub: self.shared.hub.clone(),
        })
    }

    fn lock_inserts(&self) -> std::sync::MutexGuard<'_, ()> {
        self.shared
            .insert
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Breakers {
    /// An empty registry with the default [`BreakerConfig`] (which is
    /// valid: a unit test says so).
    fn default() -> Self {
        Breakers::new(Valid::new(BreakerConfig::default()).expect("the default config is valid"))
    }
}

impl fmt::Debug for Breakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breakers")
            .field("config", &self.shared.config)
            .field("keys", &self.shared.map.load().len())
            .finish_non_exhaustive()
    }
}

impl Entry {
    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// Asks to let a call through now.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Permit, Option<Duration>> {
        let admission = match self.state.admit_closed() {
            Some(ticket) => Admission::Admitted(ticket),
            // Only the paths out of CLOSED need the time.
            None => self
                .state
                .admit(&self.config, Instant::now(), &mut |t| self.publish(t)),
        };
        match admission {
            Admission::Admitted(ticket) => Ok(Permit {
                entry: self.clone(),
                ticket: Some(ticket),
            }),
            Admission::Rejected { retry_after } => Err(retry_after),
        }
    }

    fn snapshot(&self, now: Instant) -> Snapshot {
        self.state.advance(now, &mut |t| self.publish(t));
        let view = self.state.view(now);
        Snapshot {
            key: self.key.clone(),
            state: view.state,
            since: view.since,
            window_calls: view.window_calls,
            window_failures: view.window_failures,
            consecutive_failures: view.consecutive_failures,
            open_until: view.open_until,
            probes_in_flight: view.probes_in_flight,
            reopenings: view.reopenings,
            reason: view.last_reason,
            taken_at: now,
        }
    }

    /// Sends a state change to subscribers and to the log. Called under the
    /// key's lock, so one key's events are sent in order.
    fn publish(&self, t: Transition) {
        let change = StateChange {
            key: self.key.clone(),
            from: t.from,
            to: t.to,
            reason: t.reason,
            at: t.at,
            open_until: t.open_until,
        };
        let open_for = t
            .open_until
            .map(|until| until.saturating_duration_since(t.at));
        match t.to {
            State::Open => tracing::warn!(
                key = %self.key, from = %t.from, reason = %t.reason, ?open_for,
                "circuit breaker opened"
            ),
            _ => tracing::info!(
                key = %self.key, from = %t.from, to = %t.to, reason = %t.reason,
                "circuit breaker changed state"
            ),
        }
        // No subscriber is not an error.
        let _ = self.hub.events.send(change);
    }
}

/// A call let through by a breaker. Settle it with the call's outcome; if it
/// is dropped unsettled (the caller went away), the call counts as neither
/// success nor failure, and a probe frees its slot.
pub(crate) struct Permit {
    entry: Arc<Entry>,
    ticket: Option<Ticket>,
}

impl Permit {
    /// The call succeeded.
    pub(crate) fn success(mut self) {
        self.settle(Outcome::Success);
    }

    /// The call failed; whether it counts depends on the key's settings.
    pub(crate) fn failure(mut self, failure: &Failure) {
        let outcome = if self.entry.config.counts(failure.class()) {
            Outcome::Failure {
                rate_limit_wait: (failure.class() == ErrorClass::RateLimited)
                    .then(|| failure.retry_after())
                    .flatten(),
            }
        } else {
            Outcome::Neither
        };
        self.settle(outcome);
    }

    /// The call (or its body) failed with `error`, which `classified` is
    /// the classifier's verdict on.
    ///
    /// An error the classifier could not place (`internal`, with no
    /// [`Failure`] anywhere in its source chain) still means the inner
    /// service could not answer: a tower `Elapsed`, a hyper "connection
    /// closed before message completed". It counts as `upstream_unavailable`,
    /// or a stream cut by the upstream would never count against it.
    pub(crate) fn error(self, classified: Failure, error: &(dyn std::error::Error + 'static)) {
        if classified.class() == ErrorClass::Internal && !carries_failure(error) {
            let failure = Failure::new(ErrorClass::UpstreamUnavailable, "the upstream call failed")
                .with_subkind("unclassified_error");
            self.failure(&failure);
        } else {
            self.failure(&classified);
        }
    }

    /// How a watched body ended.
    pub(crate) fn end(self, end: StreamEnd) {
        match end {
            StreamEnd::Complete => self.success(),
            StreamEnd::Failed(failure) => self.failure(&failure),
            // Dropping settles it as neither.
            StreamEnd::Cancelled => drop(self),
        }
    }

    fn settle(&mut self, outcome: Outcome) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        // A CLOSED call the client cancelled changes nothing: skip the
        // clock read.
        if outcome == Outcome::Neither && matches!(ticket, Ticket::Closed(_)) {
            return;
        }
        let entry = &*self.entry;
        let hub = &*entry.hub;
        entry.state.settle(
            &entry.config,
            ticket,
            outcome,
            Instant::now(),
            &mut || hub.jitter.sample(),
            &mut |t| entry.publish(t),
        );
    }
}

/// Whether a [`Failure`] is anywhere in `error`'s source chain.
fn carries_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.is::<Failure>() {
            return true;
        }
        source = error.source();
    }
    false
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.settle(Outcome::Neither);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("key", &self.entry.key)
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// One key's breaker at one moment, for health endpoints and dashboards.
///
/// Serialises to JSON with durations relative to the moment it was taken:
/// `{"key", "state", "since_secs", "window_calls", "window_failures",
/// "consecutive_failures", "next_probe_in_secs", "probes_in_flight",
/// "reopenings", "reason"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The key (a deployment id, say).
    pub key: Arc<str>,
    /// The state.
    pub state: State,
    /// When the breaker entered this state (when it was created, if it never
    /// changed).
    pub since: Instant,
    /// Calls that finished within the sliding window (CLOSED counts; the
    /// window restarts when the breaker closes).
    pub window_calls: u32,
    /// Counted failures among them.
    pub window_failures: u32,
    /// Counted failures in a row, while CLOSED.
    pub consecutive_failures: u32,
    /// While OPEN, when the next probe may go through.
    pub open_until: Option<Instant>,
    /// Probes in flight.
    pub probes_in_flight: u32,
    /// Failed probes since the breaker last closed (the open time doubles
    /// with each).
    pub reopenings: u32,
    /// Why the breaker entered this state (`None` if it never changed).
    pub reason: Option<Reason>,
    /// When the snapshot was taken.
    pub taken_at: Instant,
}

impl Snapshot {
    /// How long the breaker has been in this state.
    pub fn age(&self) -> Duration {
        self.taken_at.saturating_duration_since(self.since)
    }

    /// While OPEN, how long until the next probe may go through.
    pub fn next_probe_in(&self) -> Option<Duration> {
        self.open_until
            .map(|until| until.saturating_duration_since(self.taken_at))
    }
}

impl Serialize for Snapshot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Snapshot", 10)?;
        s.serialize_field("key", &*self.key)?;
        s.serialize_field("state", &self.state)?;
        s.serialize_field("since_secs", &self.age().as_secs_f64())?;
        s.serialize_field("window_calls", &self.window_calls)?;
        s.serialize_field("window_failures", &self.window_failures)?;
        s.serialize_field("consecutive_failures", &self.consecutive_failures)?;
        s.serialize_field(
            "next_probe_in_secs",
            &self.next_probe_in().map(|d| d.as_secs_f64()),
        )?;
        s.serialize_field("probes_in_flight", &self.probes_in_flight)?;
        s.serialize_field("reopenings", &self.reopenings)?;
        s.serialize_field("reason", &self.reason)?;
        s.end()
    }
}

/// A breaker changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The key whose breaker changed.
    pub key: Arc<str>,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// When.
    pub at: Instant,
    /// When it entered OPEN: when the next probe may go through.
    pub open_until: Option<Instant>,
}
