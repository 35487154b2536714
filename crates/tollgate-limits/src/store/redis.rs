//! [`RedisStore`]: the limits' state shared by every replica, through Redis.

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use tokio::time::Instant;
use tollgate_core::shared_state::Fallbacks;

use super::{BoxFuture, Claim, Lease, MemoryStore, Store};
use crate::gcra::{Decision, Quota};
use crate::limits::BudgetWindow;

/// The prefix of every key the store writes.
pub const DEFAULT_PREFIX: &str = "tollgate:";

/// How long one operation may wait for Redis before the store answers from
/// local state.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(50);

/// A window's spend counter lives a window plus this long from its first
/// spend, for replicas whose clocks lag behind.
const SPEND_GRACE_MS: u64 = 3_600_000;

/// The limits' state in Redis, shared by every replica of the gateway.
///
/// Each operation is one atomic Lua script (`store/lua/*.lua`, loaded by
/// `EVALSHA` with a fallback to `EVAL`), or one plain command where a
/// command is atomic on its own (`GET` for spend, `ZREM` for a release):
///
/// - rate limits: GCRA as in redis-cell, one key per limit holding the
///   theoretical arrival time, computed with the server's `TIME` (so
///   replicas with skewed clocks agree), expiring when the bucket is full
///   again; a check of several keys at once ([`Store::gcra_all`]: a
///   deployment's rpm and tpm) is one script over all of them;
/// - parallel permits: one sorted set of leases per key, each scored by
///   its expiry: a replica that dies holding permits (or a release that
///   cannot reach Redis) leaks them for at most the lease TTL (default 10
///   minutes, [`lease_ttl`](Self::lease_ttl)), and releasing twice is
///   harmless. A stream that lasts longer than the
///   TTL stops counting against the limit when its lease expires;
/// - spend: `INCRBY` on one counter per key and budget window, expiring
///   one window and an hour after the window's first spend (by the
///   server's clock, so a replica's skew cannot expire it early; never,
///   for a lifetime budget).
///
/// Key names are `{prefix}{kind}:{hash}` (prefix [`DEFAULT_PREFIX`]), where
/// the hash is FNV-1a 128 of the layer's key: key names, aliases included,
/// never appear in Redis. (The hash hides names from a casual look, not
/// from a determined one; names are never secrets — the key itself is
/// never given to the limits.)
///
/// # Fail-open
///
/// When Redis is unreachable, answers with an error, or takes longer than
/// the operation timeout (default [`DEFAULT_OP_TIMEOUT`], 50 ms — a hung
/// Redis cannot stall requests for longer), the store answers from its
/// inner [`MemoryStore`]: each replica then enforces the limits on its own
/// (so together they admit up to replicas × the limit). It counts each
/// fallback ([`fallbacks`](Self::fallbacks), and the
/// [`on_fallback`](Self::on_fallback) callback, for a metric), logs a
/// warning at most once per 10 s, and goes back to Redis as soon as it
/// answers again: every operation tries Redis first, and the
/// `ConnectionManager` reconnects on the next call after a broken
/// connection — no background task. Spend counted locally during an
/// outage is added to Redis with the key's next spend once it is back;
/// until then the replica adds it to what Redis says. While Redis is away,
/// a key's spend is the last value this replica read from Redis plus its
/// local spend.
///
/// ```no_run
/// use std::sync::Arc;
/// use tollgate_limits::{RateLimitLayer, RedisStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redis::RedisError> {
/// let store = RedisStore::open("redis://127.0.0.1:6379/")?
///     .prefix("gateway-a:")
///     .on_fallback(Arc::new(|| { /* count a metric */ }));
/// let layer = RateLimitLayer::new(Arc::new(store));
/// # Ok(())
/// # }
/// ```
pub struct RedisStore {
    manager: ConnectionManager,
    memory: MemoryStore,
    /// Last spend read from Redis, per key and window: what an outage
    /// starts from.
    seen_spend: MemoryStore,
    prefix: String,
    op_timeout: Duration,
    lease_ttl: Duration,
    replica: u64,
    fallbacks: Fallbacks,
    scripts: Scripts,
}

struct Scripts {
    gcra: Script,
    gcra_all: Script,
    adjust: Script,
    acquire: Script,
    add_spend: Script,
}

/// Runs one Redis operation (an expression using `&mut $conn`) within the
/// timeout; `None` (and a counted fallback) when it failed.
///
/// A first try that finds the connection broken is made once more: the
/// connection manager reconnects on the call that finds it dropped, so
/// right after Redis comes back the first call of each replica would
/// otherwise answer from local state for nothing.
macro_rules! run {
    ($store:expr, $conn:ident => $operation:expr) => {
        try_run!($store, $conn => $operation).ok()
    };
}

/// [`run!`], with why it failed: a timeout means the command was sent and
/// may have run.
macro_rules! try_run {
    ($store:expr, $conn:ident => $operation:expr) => {{
        let mut $conn = $store.manager.clone();
        let mut answer = $store.try_once($operation).await;
        if let Err(Failed::Redis(error)) = &answer
            && Failed::is_connection(error)
        {
            answer = $store.try_once($operation).await;
        }
        if let Err(why) = &answer {
            $store.fallbacks.fell_back(why);
        }
        answer
    }};
}

/// Why a Redis operation did not answer.
#[derive(Debug)]
enum Failed {
    NoRuntime,
    Redis(redis::RedisError),
    Timeout(Duration),
}

impl Failed {
    fn is_connection(error: &redis::RedisError) -> bool {
        error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failed::NoRuntime => f.write_str("no tokio runtime"),
            Failed::Redis(error) => write!(f, "{error}"),
            Failed::Timeout(after) => write!(f, "no answer within {after:?}"),
        }
    }
}

impl RedisStore {
    /// A store on `client`'s server. Connects lazily (the first operation
    /// connects; until Redis answers, the store fails open), so a gateway
    /// starts even while Redis is down.
    ///
    /// Must be called inside a tokio runtime (the connection manager
    /// starts a task).
    pub fn new(client: redis::Client) -> RedisResult<Self> {
        // One connection attempt per call while Redis is away: the caller
        // is not kept waiting on a backoff, and the next call tries again.
        let config = ConnectionManagerConfig::new().set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        let replica = std::collections::hash_map::RandomState::new().hash_one((
            std::process::id(),
            tollgate_core::time::unix_ms(std::time::SystemTime::now()),
        ));
        Ok(RedisStore {
            manager,
            memory: MemoryStore::new(),
            seen_spend: MemoryStore::new(),
            prefix: DEFAULT_PREFIX.into(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            lease_ttl: super::DEFAULT_LEASE_TTL,
            replica,
            fallbacks: Fallbacks::new("the rate limits", "answering from local state"),
            scripts: Scripts {
                gcra: Script::new(include_str!("lua/gcra.lua")),
                gcra_all: Script::new(include_str!("lua/gcra_all.lua")),
                adjust: Script::new(include_str!("lua/adjust.lua")),
                acquire: Script::new(include_str!("lua/acquire.lua")),
                add_spend: Script::new(include_str!("lua/add_spend.lua")),
            },
        })
    }

    /// A store on the server at `url` (`redis://[:password@]host:port/db`).
    /// See [`new`](Self::new).
    pub fn open(url: &str) -> RedisResult<Self> {
        RedisStore::new(redis::Client::open(url)?)
    }

    /// Prefixes every key with `prefix` instead of [`DEFAULT_PREFIX`]
    /// (several gateways on one Redis).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Waits at most `timeout` for Redis per operation (default
    /// [`DEFAULT_OP_TIMEOUT`]) before answering from local state.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Parallel permits that are never released expire after `ttl`
    /// (default 10 minutes), in Redis and locally.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self.memory = self.memory.lease_ttl(ttl);
        self
    }

    /// Answers from `memory` while Redis is away (to set its capacity).
    pub fn memory(mut self, memory: MemoryStore) -> Self {
        self.memory = memory.lease_ttl(self.lease_ttl);
        self
    }

    /// Calls `callback` on every fallback to local state (turn it into a
    /// metric).
    pub fn on_fallback(mut self, callback: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.fallbacks = self.fallbacks.on_fallback(Some(callback));
        self
    }

    /// How many operations were answered from local state because Redis
    /// failed or was too slow.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.count()
    }

    fn redis_key(&self, kind: &str, key: &str) -> String {
        format!("{}{kind}:{:032x}", self.prefix, fnv1a_128(key.as_bytes()))
    }

    fn member(&self, lease: Lease) -> String {
        format!("{:016x}-{:x}", self.replica, lease.id())
    }

    /// One try within the timeout.
    async fn try_once<T>(
        &self,
        operation: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Failed> {
        if tokio::runtime::Handle::try_current().is_err() {
            // Polled outside a runtime (a settlement on a dropped body):
            // Redis cannot be reached from here.
            return Err(Failed::NoRuntime);
        }
        match tokio::time::timeout(self.op_timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failed::Redis(error)),
            Err(_) => Err(Failed::Timeout(self.op_timeout)),
        }
    }
}

impl Store for RedisStore {
    fn gcra<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        cost: u64,
        now: Instant,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let mut invocation = self.scripts.gcra.prepare_invoke();
            invocation
                .key(self.redis_key("gcra", key))
                .arg(quota.interval_ns())
                .arg(quota.limit())
                .arg(cost);
            let answer: Option<(i64, i64, i64, i64)> =
                run!(self, conn => invocation.invoke_async(&mut conn));
            match answer {
                Some((allowed, retry_us, remaining, reset_us)) => Decision {
                    allowed: allowed == 1,
                    retry_after: micros(retry_us),
                    remaining: remaining.max(0).unsigned_abs(),
                    reset_after: micros(reset_us),
                },
                None => self.memory.check_now(key, quota, cost, now),
            }
        })
    }

    fn gcra_all<'a>(
        &'a self,
        claims: &'a [Claim<'a>],
        now: Instant,
    ) -> BoxFuture<'a, Vec<Decision>> {
        Box::pin(async move {
            let mut invocation = self.scripts.gcra_all.prepare_invoke();
            for claim in claims {
                invocation
                    .key(self.redis_key("gcra", claim.key))
                    .arg(claim.quota.interval_ns())
                    .arg(claim.quota.limit())
                    .arg(claim.need)
                    .arg(claim.take);
            }
            let answer: Option<Vec<i64>> = run!(self, conn => invocation.invoke_async(&mut conn));
            match answer {
                Some(flat) if flat.len() == 4 * claims.len() => flat
                    .chunks_exact(4)
                    .map(|d| Decision {
                        allowed: d[0] == 1,
                        retry_after: micros(d[1]),
                        remaining: d[2].max(0).unsigned_abs(),
                        reset_after: micros(d[3]),
                    })
                    .collect(),
                _ => self.memory.check_all_now(claims, now),
            }
        })
    }

    fn adjust<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        delta: i64,
        now: Instant,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut invocation = self.scripts.adjust.prepare_invoke();
            invocation
                .key(self.redis_key("gcra", key))
                .arg(quota.interval_ns())
                .arg(delta);
            let done: Option<i64> = run!(self, conn => invocation.invoke_async(&mut conn));
            if done.is_none() {
                self.memory.adjust_now(key, quota, delta, now);
            }
        })
    }

    fn acquire<'a>(&'a self, key: &'a str, max: u32, now: Instant) -> BoxFuture<'a, Option<Lease>> {
        Box::pin(async move {
            let lease = self.memory.next_lease();
            let ttl_ms = u64::try_from(self.lease_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let mut invocation = self.scripts.acquire.prepare_invoke();
            invocation
                .key(self.redis_key("leases", key))
                .arg(max)
                .arg(ttl_ms)
                .arg(self.member(lease));
            let taken: Option<i64> = run!(self, conn => invocation.invoke_async(&mut conn));
            match taken {
                Some(taken) => (taken == 1).then_some(lease),
                None => self
                    .memory
                    .acquire_as(key, max, now, lease)
                    .then_some(lease),
            }
        })
    }

    fn release<'a>(&'a self, key: &'a str, lease: Lease) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // A lease taken locally (Redis failed to answer) goes back
            // locally — and to Redis as well: a command that timed out has
            // often run there after all, and ZREM of an absent member is a
            // no-op. Otherwise that permit would stay taken on every
            // replica until its TTL.
            self.memory.release_now(key, lease);
            let command = redis::cmd("ZREM")
                .arg(self.redis_key("leases", key))
                .arg(self.member(lease))
                .to_owned();
            // If this fails, the lease expires after its TTL.
            let _: Option<i64> = run!(self, conn => command.query_async(&mut conn));
        })
    }

    fn spend<'a>(&'a self, key: &'a str, window: BudgetWindow) -> BoxFuture<'a, u64> {
        Box::pin(async move {
            let command = redis::cmd("GET")
                .arg(self.spend_key(key, window))
                .to_owned();
            let shared: Option<Option<u64>> = run!(self, conn => command.query_async(&mut conn));
            let local = self.memory.spend_now(key, window);
            let shared = match shared {
                Some(shared) => {
                    let shared = shared.unwrap_or(0);
                    self.seen_spend.take_spend(key, window);
                    self.seen_spend.add_spend_now(key, window, shared);
                    shared
                }
                None => self.seen_spend.spend_now(key, window),
            };
            shared.saturating_add(local)
        })
    }

    fn add_spend<'a>(
        &'a self,
        key: &'a str,
        window: BudgetWindow,
        picos: u64,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Spend counted locally during an outage goes to Redis now.
            let total = picos.saturating_add(self.memory.take_spend(key, window));
            if total == 0 {
                return;
            }
            let increment = total.min(i64::MAX.unsigned_abs());
            let ttl_ms = window.duration().map_or(0, |duration| {
                u64::try_from(duration.as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_add(SPEND_GRACE_MS)
                    .max(1)
            });
            let mut invocation = self.scripts.add_spend.prepare_invoke();
            invocation
                .key(self.spend_key(key, window))
                .arg(increment)
                .arg(ttl_ms);
            let done: Result<i64, Failed> =
                try_run!(self, conn => invocation.invoke_async(&mut conn));
            match done {
                Ok(_) => {}
                // Sent, and most likely applied once Redis answers: kept
                // locally too, it would count twice. (If Redis never applies
                // it, the live budget misses this spend; the ledger has it.)
                Err(Failed::Timeout(_)) => {}
                // Not applied: kept here, and pushed with the next spend.
                Err(_) => self.memory.add_spend_now(key, window, total),
            }
        })
    }
}

impl RedisStore {
    fn spend_key(&self, key: &str, window: BudgetWindow) -> String {
        format!(
            "{}:{}",
            self.redis_key("spend", key),
            window.start_unix_ms()
        )
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("fallbacks", &self.fallbacks())
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(value.max(0).unsigned_abs())
}

/// FNV-1a, 128 bits: stable across builds and platforms (Redis keys must
/// be the same on every replica and every version).
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    bytes.iter().fold(OFFSET, |hash, &byte| {
        (hash ^ u128::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_hash_is_stable() {
        // FNV-1a 128 test vectors.
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }
}
