//! Circuit breakers shared by replicas: a breaker that opens on one replica
//! opens on every other within [`POLL_EVERY`].
//!
//! When a local breaker opens (for its own reasons, not because another
//! replica said so), the replica writes `tollgate:breaker:<deployment>`,
//! expiring when the breaker's open time ends. Every replica reads those
//! keys' time to live every [`POLL_EVERY`] and opens its own breaker for
//! the time left (`Breakers::force_open`, whose `Forced` transitions are not
//! written back, so nothing echoes). Each replica then probes on its own. A
//! poll is one pipelined round trip per replica, so a shared Redis carries a
//! few commands a second.
//!
//! Redis unreachable: writes and polls fail, breakers stay local, the
//! fallback is counted and logged at most once per
//! [`WARN_EVERY`](super::fallbacks::WARN_EVERY).

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tollgate_breaker::{Breakers, Reason, State};

use super::{Fallbacks, PREFIX, SharedState};

/// How often each replica reads the shared breakers.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(250);

/// How long a Redis command may take before the breakers stay local.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(200);

/// Shares `breakers` of `deployments` through `shared`, until the breakers
/// are gone.
pub(crate) fn spawn_breaker_sync(
    runtime: &tokio::runtime::Handle,
    shared: &SharedState,
    breakers: &Breakers,
    deployments: Vec<Arc<str>>,
) {
    let keys: Vec<String> = deployments.iter().map(|id| breaker_key(id)).collect();
    let mut changes = breakers.subscribe();
    let mut connection = shared.connection.clone();
    let warn = Arc::new(Fallbacks::new(
        "the circuit breakers",
        "they are local until Redis answers",
        Some(shared.on_fallback.clone()),
    ));
    runtime.spawn({
        let warn = warn.clone();
        async move {
            loop {
                let change = match changes.recv().await {
                    Ok(change) => change,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                if change.to != State::Open || change.reason == Reason::Forced {
                    continue;
                }
                let Some(open_for) = change
                    .open_until
                    .map(|until| until.saturating_duration_since(Instant::now()))
                    .filter(|d| !d.is_zero())
                else {
                    continue;
                };
                let millis = u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX);
                let written = tokio::time::timeout(
                    COMMAND_TIMEOUT,
                    connection.pset_ex(breaker_key(&change.key), millis, millis),
                )
                .await;
                if !matches!(written, Ok(Ok(()))) {
                    warn.fell_back(&"could not share a breaker that opened");
                }
            }
        }
    });
    let weak = breakers.downgrade();
    let mut connection = shared.connection.clone();
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(breakers) = weak.upgrade() else {
                return;
            };
            match poll(&mut connection, &keys).await {
                Some(open) => {
                    for (id, millis) in deployments.iter().zip(open) {
                        let Some(millis) = millis else { continue };
                        let local = breakers.snapshot(id).map(|s| s.state);
                        if local != Some(State::Open) {
                            breakers.force_open(id, Duration::from_millis(millis));
                        }
                    }
                }
                None => warn.fell_back(&"could not read the shared breakers"),
            }
        }
    });
}

/// The open time left of each key's breaker, as written by the replica
/// that opened it; `None` when Redis did not answer.
async fn poll(connection: &mut ConnectionManager, keys: &[String]) -> Option<Vec<Option<u64>>> {
    if keys.is_empty() {
        return Some(Vec::new());
    }
    // PTTL would be exact, but MGET is one command for every key; the
    // value is the open time as written, and the key expires with it.
    let read = tokio::time::timeout(COMMAND_TIMEOUT, async {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.pttl(key);
        }
        pipe.query_async::<Vec<i64>>(connection).await
    })
    .await;
    match read {
        Ok(Ok(ttls)) => Some(
            ttls.into_iter()
                .map(|ttl| u64::try_from(ttl).ok().filter(|&ms| ms > 0))
                .collect(),
        ),
        _ => None,
    }
}

fn breaker_key(deployment: &str) -> String {
    format!("{PREFIX}breaker:{deployment}")
}
