//! [`MemoryStore`]: the limits' state in this process.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{BoxFuture, Claim, Lease, Store};
use crate::gcra::{self, Decision, Quota};
use crate::limits::BudgetWindow;

/// How many keys a [`MemoryStore`] holds before it sweeps out the ones it
/// no longer needs.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// How long a parallel permit lives if it is never released.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(600);

const SHARDS: usize = 16;

/// The limits' state in this process: GCRA times, parallel permits and
/// spend, in 16 shards of `Mutex<HashMap>` (a lock is held for one map
/// operation — a check of several keys holds their shards' locks together,
/// taken in shard order — never across an `.await`; every operation is
/// ready on its first poll).
///
/// # Bounded memory
///
/// A key's rate state is only kept while it differs from a fresh key's:
/// once its bucket has fully recovered (at most one period — a minute —
/// after its last request, unless a reconciliation pushed it further),
/// forgetting it changes nothing. Permits are removed when released or
/// expired, spend when its window has ended. When a shard grows past its
/// share of the capacity (default [`DEFAULT_CAPACITY`] keys in all), the
/// next insert sweeps those entries out. The capacity is a threshold, not
/// a hard cap: live state (keys active within the last minute, unexpired
/// permits, spend of current windows and lifetime budgets) is never
/// dropped, since that would let a key burst again or forget its spend;
/// after a sweep that frees little, the next one waits until the shard
/// has doubled, so sweeping stays amortised O(1).
///
/// Leases expire [`DEFAULT_LEASE_TTL`] after they were taken
/// ([`lease_ttl`](Self::lease_ttl)); in one process that only matters if
/// a response body is leaked (`mem::forget`), as dropping one releases its
/// permit.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    epoch: Instant,
    shard_capacity: usize,
    lease_ttl: Duration,
    next_lease: AtomicU64,
    /// The newest budget window start seen: every window that ended before
    /// it has ended for sure, whatever clock the caller uses.
    newest_window: AtomicI64,
}

#[derive(Default)]
struct Shard {
    gcra: HashMap<Box<str>, u64>,
    /// Per key: (lease id, expiry in ns since the epoch).
    leases: HashMap<Box<str>, Vec<(u64, u64)>>,
    spend: HashMap<Box<str>, Spend>,
    sweep_at: usize,
}

struct Spend {
    window: BudgetWindow,
    picos: u64,
}

impl MemoryStore {
    /// An empty store with the default capacity and lease TTL.
    pub fn new() -> Self {
        MemoryStore::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty store that sweeps when it holds more than `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            epoch: Instant::now(),
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
            lease_ttl: DEFAULT_LEASE_TTL,
            next_lease: AtomicU64::new(1),
            newest_window: AtomicI64::new(i64::MIN),
        }
    }

    /// Permits that are never released expire after `ttl`.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How many keys the store holds (rate states, permit holders and spend
    /// windows).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_index(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % SHARDS
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.shard_index(key)])
    }

    fn nanos(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX)
    }

    fn sweep_context(&self, now: u64) -> Sweep {
        Sweep {
            now,
            newest_window: self.newest_window.load(Ordering::Relaxed),
            capacity: self.shard_capacity,
        }
    }

    pub(crate) fn check_now(&self, key: &str, quota: Quota, cost: u64, now: Instant) -> Decision {
        let now = self.nanos(now);
        let sweep = self.sweep_context(now);
        let mut shard = self.shard(key);
        let tat = shard.gcra.get(key).copied().unwrap_or(0);
        let (decision, new_tat) = gcra::check(tat, now, &quota, cost);
        if new_tat != tat {
            shard.set_gcra(key, new_tat, &sweep);
        }
        decision
    }

    pub(crate) fn check_all_now(&self, claims: &[Claim<'_>], now: Instant) -> Vec<Decision> {
        let now = self.nanos(now);
        let sweep = self.sweep_context(now);
        // Every shard involved, each locked once, in index order (so two
        // checks never wait on each other).
        let mut needed = [false; SHARDS];
        for claim in claims {
            needed[self.shard_index(claim.key)] = true;
        }
        let mut locked: [Option<MutexGuard<'_, Shard>>; SHARDS] = Default::default();
        for (index, guard) in locked.iter_mut().enumerate() {
            if needed[index] {
                *guard = Some(lock(&self.shards[index]));
            }
        }
        let mut states: Vec<gcra::ClaimState> = claims
            .iter()
            .map(|claim| gcra::ClaimState {
                tat: locked[self.shard_index(claim.key)]
                    .as_ref()
                    .and_then(|shard| shard.gcra.get(claim.key).copied())
                    .unwrap_or(0),
                quota: claim.quota,
                need: claim.need,
                take: claim.take,
            })
            .collect();
        let decisions = gcra::check_all(&mut states, now);
        for (claim, state) in claims.iter().zip(&states) {
            let Some(shard) = locked[self.shard_index(claim.key)].as_deref_mut() else {
                continue;
            };
            if shard.gcra.get(claim.key).copied().unwrap_or(0) != state.tat {
                shard.set_gcra(claim.key, state.tat, &sweep);
            }
        }
        decisions
    }

    pub(crate) fn adjust_now(&self, key: &str, quota: Quota, delta: i64, now: Instant) {
        let now = self.nanos(now);
        let sweep = self.sweep_context(now);
        let mut shard = self.shard(key);
        let tat = shard.gcra.get(key).copied().unwrap_or(0);
        let new_tat = gcra::adjust(tat, now, &quota, delta);
        if new_tat <= now {
            shard.gcra.remove(key);
        } else {
            shard.set_gcra(key, new_tat, &sweep);
        }
    }

    pub(crate) fn next_lease(&self) -> Lease {
        Lease::new(self.next_lease.fetch_add(1, Ordering::Relaxed))
    }

    /// Takes a permit under the id of `lease`.
    pub(crate) fn acquire_as(&self, key: &str, max: u32, now: Instant, lease: Lease) -> bool {
        let now = self.nanos(now);
        let expires =
            now.saturating_add(u64::try_from(self.lease_ttl.as_nanos()).unwrap_or(u64::MAX));
        let sweep = self.sweep_context(now);
        let mut shard = self.shard(key);
        if let Some(leases) = shard.leases.get_mut(key) {
            leases.retain(|&(_, expiry)| expiry > now);
            if leases.len() >= max as usize {
                return false;
            }
            leases.push((lease.id(), expires));
            return true;
        }
        if max == 0 {
            return false;
        }
        shard.leases.insert(key.into(), vec![(lease.id(), expires)]);
        shard.inserted(&sweep);
        true
    }

    /// Gives a permit back; whether this store held it.
    pub(crate) fn release_now(&self, key: &str, lease: Lease) -> bool {
        let mut shard = self.shard(key);
        let Some(leases) = shard.leases.get_mut(key) else {
            return false;
        };
        let before = leases.len();
        leases.retain(|&(id, _)| id != lease.id());
        let found = leases.len() < before;
        if leases.is_empty() {
            shard.leases.remove(key);
        }
        found
    }

    pub(crate) fn spend_now(&self, key: &str, window: BudgetWindow) -> u64 {
        let shard = self.shard(key);
        match shard.spend.get(key) {
            Some(spend) if spend.window == window => spend.picos,
            _ => 0,
        }
    }

    pub(crate) fn add_spend_now(&self, key: &str, window: BudgetWindow, picos: u64) {
        self.newest_window
            .fetch_max(window.start_unix_ms(), Ordering::Relaxed);
        let sweep = self.sweep_context(self.nanos(Instant::now()));
        let mut shard = self.shard(key);
        if let Some(spend) = shard.spend.get_mut(key) {
            if spend.window == window {
                spend.picos = spend.picos.saturating_add(picos);
            } else if spend.window.start_unix_ms() < window.start_unix_ms() {
                *spend = Spend { window, picos };
            }
            return;
        }
        shard.spend.insert(key.into(), Spend { window, picos });
        shard.inserted(&sweep);
    }

    /// Removes and returns `key`'s spend in `window` (the Redis store
    /// flushes spend counted here during an outage).
    #[cfg(feature = "redis")]
    pub(crate) fn take_spend(&self, key: &str, window: BudgetWindow) -> u64 {
        let mut shard = self.shard(key);
        match shard.spend.get(key) {
            Some(spend) if spend.window == window => {
                let picos = spend.picos;
                shard.spend.remove(key);
                picos
            }
            _ => 0,
        }
    }
}

struct Sweep {
    now: u64,
    newest_window: i64,
    capacity: usize,
}

impl Shard {
    fn len(&self) -> usize {
        self.gcra.len() + self.leases.len() + self.spend.len()
    }

    fn set_gcra(&mut self, key: &str, tat: u64, sweep: &Sweep) {
        if let Some(slot) = self.gcra.get_mut(key) {
            *slot = tat;
            return;
        }
        self.gcra.insert(key.into(), tat);
        self.inserted(sweep);
    }

    /// After an insert: sweeps when over capacity.
    fn inserted(&mut self, sweep: &Sweep) {
        if self.len() <= self.sweep_at.max(sweep.capacity) {
            return;
        }
        let now = sweep.now;
        self.gcra.retain(|_, tat| *tat > now);
        self.leases.retain(|_, leases| {
            leases.retain(|&(_, expiry)| expiry > now);
            !leases.is_empty()
        });
        self.spend.retain(|_, spend| {
            spend
                .window
                .end_unix_ms()
                .is_none_or(|end| end > sweep.newest_window)
        });
        self.sweep_at = sweep.capacity.max(self.len().saturating_mul(2));
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // The maps stay consistent whatever panicked: no operation leaves them
    // half-changed.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.len())
            .field("capacity", &(self.shard_capacity * SHARDS))
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl Store for MemoryStore {
    fn gcra<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        cost: u64,
        now: Instant,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(std::future::ready(self.check_now(key, quota, cost, now)))
    }

    fn gcra_all<'a>(
        &'a self,
        claims: &'a [Claim<'a>],
        now: Instant,
    ) -> BoxFuture<'a, Vec<Decision>> {
        Box::pin(std::future::ready(self.check_all_now(claims, now)))
    }

    fn adjust<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        delta: i64,
        now: Instant,
    ) -> BoxFuture<'a, ()> {
        self.adjust_now(key, quota, delta, now);
        Box::pin(std::future::ready(()))
    }

    fn acquire<'a>(&'a self, key: &'a str, max: u32, now: Instant) -> BoxFuture<'a, Option<Lease>> {
        let lease = self.next_lease();
        let acquired = self.acquire_as(key, max, now, lease);
        Box::pin(std::future::ready(acquired.then_some(lease)))
    }

    fn release<'a>(&'a self, key: &'a str, lease: Lease) -> BoxFuture<'a, ()> {
        self.release_now(key, lease);
        Box::pin(std::future::ready(()))
    }

    fn spend<'a>(&'a self, key: &'a str, window: BudgetWindow) -> BoxFuture<'a, u64> {
        Box::pin(std::future::ready(self.spend_now(key, window)))
    }

    fn add_spend<'a>(
        &'a self,
        key: &'a str,
        window: BudgetWindow,
        picos: u64,
    ) -> BoxFuture<'a, ()> {
        self.add_spend_now(key, window, picos);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn recovered_keys_are_swept_past_capacity() {
        let store = MemoryStore::with_capacity(SHARDS * 4);
        let quota = Quota::per_minute(10);
        for i in 0..1000 {
            store.check_now(&format!("old-{i}"), quota, 1, Instant::now());
        }
        // All live: nothing may be dropped.
        assert_eq!(store.len(), 1000);
        tokio::time::advance(Duration::from_secs(7)).await;
        // Round after round of new keys: the recovered ones are swept out,
        // so the store holds a few rounds' worth, not all of them.
        for round in 0..20 {
            for i in 0..200 {
                store.check_now(&format!("r{round}-{i}"), quota, 1, Instant::now());
            }
            tokio::time::advance(Duration::from_secs(7)).await;
        }
        assert!(store.len() < 1000, "{}", store.len());
    }

    #[tokio::test(start_paused = true)]
    async fn leases_expire_and_release_is_idempotent() {
        let store = MemoryStore::new().lease_ttl(Duration::from_secs(10));
        let a = store.acquire("k", 1, Instant::now()).await.unwrap();
        assert!(store.acquire("k", 1, Instant::now()).await.is_none());
        tokio::time::advance(Duration::from_secs(11)).await;
        let b = store.acquire("k", 1, Instant::now()).await.unwrap();
        store.release("k", a).await;
        assert!(store.acquire("k", 1, Instant::now()).await.is_none());
        store.release("k", b).await;
        store.release("k", b).await;
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn spend_is_per_window() {
        let store = MemoryStore::new();
        let day = Some(Duration::from_secs(86_400));
        let w1 = BudgetWindow::at(0, day);
        let w2 = BudgetWindow::at(86_400_000, day);
        store.add_spend("k", w1, 5).await;
        store.add_spend("k", w1, 6).await;
        assert_eq!(store.spend("k", w1).await, 11);
        assert_eq!(store.spend("k", w2).await, 0);
        store.add_spend("k", w2, 1).await;
        assert_eq!(store.spend("k", w2).await, 1);
        assert_eq!(store.spend("k", w1).await, 0);
    }
}
