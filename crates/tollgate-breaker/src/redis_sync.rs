//! Circuit breakers shared by replicas through Redis (feature `redis`): a
//! breaker that opens on one replica opens on every other within
//! [`POLL_EVERY`].
//!
//! When a local breaker opens (for its own reasons, not because another
//! replica said so), the replica writes `<prefix>breaker:<key>`,
//! holding its own id and expiring when the breaker's open time ends. Every
//! replica reads those keys (their writer and time to live) every
//! [`POLL_EVERY`] and opens its own breaker for the time left
//! (`Breakers::force_open`, whose `Forced` transitions are not written
//! back, so nothing echoes). Each replica then probes on its own. A poll
//! is one pipelined round trip per replica, so a shared Redis carries a few
//! commands a second.
//!
//! A replica never opens a breaker from a key it wrote itself (its own
//! breaker is the truth: it may be probing already), nor for the last
//! [`MIN_REMOTE_OPEN`] of another's open time (its breaker is about to
//! probe, and so is the other's).
//!
//! Redis unreachable: writes and polls fail, breakers stay local, and each
//! failure is handed to the [`RedisSync::on_fallback`] hook (the gateway
//! counts and logs it). A breaker that opened
//! while its write failed is written again at each poll until Redis takes
//! it (or its open time is over), so the other replicas hear of it once
//! Redis is back; that return is logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::breakers::Breakers;
use crate::state::{Reason, State};
use arc_swap::ArcSwap;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// How often each replica reads the shared breakers.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// How long a Redis command may take before the breakers stay local.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(200);

/// Another replica's breaker with less open time left than this is not
/// opened here.
const MIN_REMOTE_OPEN: Duration = Duration::from_millis(50);

/// What is told of each failed Redis command: why.
pub type OnFallback = Arc<dyn Fn(&dyn std::fmt::Display) + Send + Sync>;

/// Shares breakers between the replicas that use the same Redis.
///
/// ```no_run
/// # async fn run(connection: redis::aio::ConnectionManager) {
/// use std::sync::Arc;
///
/// use arc_swap::ArcSwap;
/// use tollgate_breaker::{Breakers, RedisSync};
///
/// let breakers = Breakers::default();
/// RedisSync::new(connection)
///     .prefix("myapp:")
///     .spawn(
///         &tokio::runtime::Handle::current(),
///         &breakers,
///         Arc::new(ArcSwap::from_pointee(vec![Arc::from("gpt-4o-east")])),
///     );
/// # }
/// ```
#[derive(Clone)]
pub struct RedisSync {
    connection: ConnectionManager,
    prefix: String,
    on_fallback: Option<OnFallback>,
}

impl std::fmt::Debug for RedisSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSync")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisSync {
    /// Sharing through `connection`, under keys starting `tollgate:`.
    pub fn new(connection: ConnectionManager) -> Self {
        RedisSync {
            connection,
            prefix: String::from("tollgate:"),
            on_fallback: None,
        }
    }

    /// The start of every Redis key written (`<prefix>breaker:<key>`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Called with the reason each time a Redis command fails and the
    /// breakers stay local.
    pub fn on_fallback(mut self, hook: OnFallback) -> Self {
        self.on_fallback = Some(hook);
        self
    }

    /// Shares the breakers of the keys `watched` holds in `breakers`, on a
    /// task of `runtime`, until the breakers are dropped. Another list
    /// stored in `watched` (a reloaded config's) is read at the next poll.
    pub fn spawn(
        self,
        runtime: &tokio::runtime::Handle,
        breakers: &Breakers,
        watched: Arc<ArcSwap<Vec<Arc<str>>>>,
    ) {
        let keys = watched.load_full();
        let sync = BreakerSync {
            keys: keys
                .iter()
                .map(|key| breaker_key(&self.prefix, key))
                .collect(),
            deployments: keys,
            watched,
            prefix: self.prefix,
            connection: self.connection,
            replica: replica_id(),
            unshared: HashMap::new(),
            on_fallback: self.on_fallback,
            degraded: false,
        };
        runtime.spawn(sync.run(breakers.clone()));
    }
}

/// One replica's side of the sharing: a single task, so the breakers it
/// has yet to share need no lock.
struct BreakerSync {
    deployments: Arc<Vec<Arc<str>>>,
    keys: Vec<String>,
    prefix: String,
    /// Where a reload puts its list of `deployments`.
    watched: Arc<ArcSwap<Vec<Arc<str>>>>,
    connection: ConnectionManager,
    /// Written in the keys: a replica knows its own.
    replica: String,
    /// Breakers opened here that Redis has not taken yet, with the end of
    /// their open time.
    unshared: HashMap<Arc<str>, Instant>,
    on_fallback: Option<OnFallback>,
    /// Whether the last Redis command failed (to log its return once).
    degraded: bool,
}

impl BreakerSync {
    /// Writes the breakers that open here and polls the others' until the
    /// breakers are gone (the task holds them only weakly).
    async fn run(mut self, breakers: Breakers) {
        let mut changes = breakers.subscribe();
        let weak = breakers.downgrade();
        drop(breakers);
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) => {
                        if change.to == State::Open && change.reason != Reason::Forced
                            && let Some(until) = change.open_until
                        {
                            self.share(change.key, until).await;
                        }
                    }
                    // Missed some: the snapshots are the truth.
                    Err(RecvError::Lagged(_)) => {
                        let Some(breakers) = weak.upgrade() else { return };
                        for snapshot in breakers.snapshots() {
                            if snapshot.state == State::Open
                                && snapshot.reason != Some(Reason::Forced)
                                && let Some(until) = snapshot.open_until
                            {
                                self.share(snapshot.key, until).await;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = ticks.tick() => {
                    let Some(breakers) = weak.upgrade() else { return };
                    self.share_again().await;
                    self.poll(&breakers).await;
                }
            }
        }
    }

    /// Writes that `deployment`'s breaker opened here until `until`; keeps
    /// it to write again when Redis does not take it.
    async fn share(&mut self, deployment: Arc<str>, until: Instant) {
        let open_for = until.saturating_duration_since(Instant::now());
        if open_for.is_zero() {
            self.unshared.remove(&deployment);
            return;
        }
        let millis = u64::try_from(open_for.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let command = redis::cmd("PSETEX")
            .arg(breaker_key(&self.prefix, &deployment))
            .arg(millis)
            .arg(&self.replica)
            .to_owned();
        let written = tokio::time::timeout(
            COMMAND_TIMEOUT,
            command.query_async::<()>(&mut self.connection),
        )
        .await;
        if matches!(written, Ok(Ok(()))) {
            self.unshared.remove(&deployment);
            self.answered();
        } else {
            self.unshared.insert(deployment, until);
            self.failed(&"could not share a breaker that opened");
        }
    }

    /// Writes again the breakers Redis did not take, while they are open.
    async fn share_again(&mut self) {
        if self.unshared.is_empty() {
            return;
        }
        let pending: Vec<(Arc<str>, Instant)> =
            self.unshared.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (deployment, until) in pending {
            self.share(deployment, until).await;
            if self.degraded {
                // Still away: the rest waits for the next poll.
                return;
            }
        }
    }

    /// Opens here the breakers other replicas opened.
    async fn poll(&mut self, breakers: &Breakers) {
        let watched = self.watched.load_full();
        if !Arc::ptr_eq(&watched, &self.deployments) {
            self.keys = watched
                .iter()
                .map(|id| breaker_key(&self.prefix, id))
                .collect();
            self.deployments = watched;
        }
        let Some(shared) = self.read().await else {
            self.failed(&"could not read the shared breakers");
            return;
        };
        self.answered();
        for (id, (writer, left)) in self.deployments.iter().zip(shared) {
            let Some(left) = remote_open(writer.as_deref(), left, &self.replica) else {
                continue;
            };
            let local = breakers.snapshot(id).map(|s| s.state);
            if local != Some(State::Open) {
                breakers.force_open(id, left);
            }
        }
    }

    /// Each key's writer and open time left; `None` when Redis did not
    /// answer.
    async fn read(&mut self) -> Option<Vec<(Option<String>, Option<Duration>)>> {
        if self.keys.is_empty() {
            return Some(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in &self.keys {
            pipe.get(key).pttl(key);
        }
        let read = tokio::time::timeout(
            COMMAND_TIMEOUT,
            pipe.query_async::<Vec<redis::Value>>(&mut self.connection),
        )
        .await;
        let Ok(Ok(values)) = read else {
            return None;
        };
        let mut values = values.into_iter();
        let mut out = Vec::with_capacity(self.keys.len());
        for _ in &self.keys {
            let writer: Option<String> = redis::from_redis_value(values.next()?).ok()?;
            let ttl: i64 = redis::from_redis_value(values.next()?).ok()?;
            let left = u64::try_from(ttl)
                .ok()
                .filter(|&ms| ms > 0)
                .map(Duration::from_millis);
            out.push((writer, left));
        }
        Some(out)
    }

    fn answered(&mut self) {
        if std::mem::take(&mut self.degraded) {
            tracing::info!("Redis answers again: the circuit breakers are shared again");
        }
    }

    fn failed(&mut self, why: &dyn std::fmt::Display) {
        self.degraded = true;
        if let Some(hook) = &self.on_fallback {
            hook(why);
        }
    }
}

/// How long to open a breaker here for, from its key: written by `writer`
/// (`None`: no key), with `left` of its open time; `me` is this replica.
fn remote_open(writer: Option<&str>, left: Option<Duration>, me: &str) -> Option<Duration> {
    let left = left?;
    (writer? != me && left >= MIN_REMOTE_OPEN).then_some(left)
}

/// This replica's id in the keys it writes: the process and a random
/// number, unique among the replicas.
fn replica_id() -> String {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("{}-{random:016x}", std::process::id())
}

fn breaker_key(prefix: &str, key: &str) -> String {
    format!("{prefix}breaker:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_is_opened_from_another_replicas_key_only() {
        let second = Duration::from_secs(1);
        assert_eq!(remote_open(Some("b"), Some(second), "a"), Some(second));
        // Its own key: its own breaker knows better (it may be probing
        // already, the key outliving it by the write's delay).
        assert_eq!(remote_open(Some("a"), Some(second), "a"), None);
        // The last moments of another's open time: both are about to probe.
        let moment = MIN_REMOTE_OPEN - Duration::from_millis(1);
        assert_eq!(remote_open(Some("b"), Some(moment), "a"), None);
        // No key, or one without a writer.
        assert_eq!(remote_open(Some("b"), None, "a"), None);
        assert_eq!(remote_open(None, Some(second), "a"), None);
    }

    #[test]
    fn replicas_have_distinct_ids() {
        assert_ne!(replica_id(), replica_id());
    }
}
