//! Keys across replicas: Redis is a cache of the truth, never its only
//! copy.
//!
//! # The design
//!
//! The truth is a set of records and a set of tombstones (a key is live
//! when it has a record and no tombstone), and every copy holds all of
//! both: each replica's store (the SQLite mirror in the ledger's file, or
//! memory) and Redis. Merging copies is a union in which a tombstone wins
//! ([`reconcile()`]), so copies agree whatever order they hear things in.
//!
//! - **Absence is not deletion.** A key Redis does not have is a key Redis
//!   lost (it restarted empty, was flushed, evicted the record); the
//!   replica that has it keeps answering from its copy and puts it back.
//!   Only a tombstone deletes.
//! - **Deletion is an event that is kept.** `/key/delete` writes a
//!   [`Tombstone`] (hash, alias, time) to Redis and to the replica's store;
//!   it needs Redis (a 503 while Redis is away), so that a deletion is
//!   never known to one replica only. Tombstones are never dropped: a
//!   replica that was down during the deletion, or that comes back with the
//!   record after Redis lost everything, meets the tombstone (in Redis, or
//!   put back by any replica that has it) before or as it puts the record
//!   back, and Redis refuses a record over a tombstone.
//! - **"Redis lost its data" is told by an epoch**: `{prefix}keys:epoch`, a
//!   random id written by the first replica that finds it missing. A
//!   replica that finds no epoch, or one it has not joined, puts its whole
//!   copy into Redis (tombstones first; both writes are idempotent and
//!   tombstone-first), then reads every change.
//! - **Every replica copies everything**: every [`SYNC_EVERY`] a replica
//!   reads the hashes changed since its last read (`{prefix}keys:changes`,
//!   a sorted set scored by a counter every write bumps) and merges them
//!   into its copy. So a key survives as long as one replica's copy does,
//!   a deletion reaches every replica within about a second, and
//!   authentication of a known key never waits on Redis.
//! - **Expiry** is a field of the record: a key put back is as expired as
//!   it was.
//!
//! # Timings and limits
//!
//! A key made on one replica works on every other at once (an unknown
//! key-shaped text is looked up in Redis); a deletion stops the key at once
//! on the replica that made it and within [`SYNC_EVERY`] on the others.
//! After Redis comes back empty, known keys never stop working; a key made
//! within [`SYNC_EVERY`] before Redis went, on a replica other than the one
//! asked, works once that replica puts its copy back (within
//! [`SYNC_EVERY`]). A replica that comes back with a deleted key while
//! Redis is empty, before the replica that holds the tombstone has put it
//! back, may accept that key until then (within [`SYNC_EVERY`]). Two keys
//! with one alias can only arise when one is made in that same window with
//! the alias of a key not yet put back: both keep working, and a warning
//! names the alias. Only a loss of Redis *and* of every replica's store
//! loses a key or a deletion.

pub(crate) mod reconcile;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use ring::rand::SecureRandom;

use super::Keys;
use super::key::{KeySource, VirtualKey};
use super::store::redis::{Patience, RedisFailure, RedisStore, Restored};
use super::store::{Change, Tombstone};
use crate::key_format::{KeyHash, to_hex};
use reconcile::{Plan, Step, Verdict, reconcile, step};

/// How often each replica reads Redis's changes (and checks its epoch).
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Hashes per round trip: a page of changes, a batch of writes.
const PAGE: usize = 256;

/// Where this replica's sync with Redis stands.
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// The epoch whose Redis this replica has put its copy into; `None`
    /// before the first sync, and when Redis lost its data mid-sync.
    joined: Option<String>,
    /// The position in `{prefix}keys:changes` read up to.
    since: i64,
}

/// What one [`Keys::sync`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Synced {
    /// Keys this replica put back into Redis.
    pub(crate) restored: usize,
    /// Deletions this replica put back into Redis.
    pub(crate) reburied: usize,
    /// Keys this replica learned from Redis.
    pub(crate) learned: usize,
    /// Deletions this replica learned from Redis.
    pub(crate) deleted: usize,
}

impl Keys {
    /// Runs [`sync`](Self::sync) every [`SYNC_EVERY`] until the keys are
    /// dropped (with the Redis backend; nothing otherwise). The first sync
    /// runs at once.
    pub(crate) fn spawn_sync(&self, runtime: &tokio::runtime::Handle) {
        if self.inner.redis.is_none() {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        crate::shared::spawn_every(runtime, weak, SYNC_EVERY, |inner| async move {
            let keys = Keys { inner };
            if let Err(error) = keys.sync().await {
                keys.fell_back(&error);
            }
        });
    }

    /// One round of the sync with Redis: checks the epoch (putting this
    /// replica's copy back if Redis lost its data), then merges every
    /// change since the last round into this replica's copy.
    ///
    /// # Errors
    ///
    /// Redis failed; the next round starts over where this one stopped.
    pub(crate) async fn sync(&self) -> Result<Synced, RedisFailure> {
        let Some(redis) = &self.inner.redis else {
            return Ok(Synced::default());
        };
        // One round at a time (the background task, or a test).
        let mut state = self.inner.sync.lock().await;
        let mut synced = Synced::default();
        let mut page = redis.changes(state.since, PAGE).await?;
        let step = step(state.joined.as_deref(), page.epoch.as_deref());
        if step != Step::Follow {
            let epoch = match page.epoch.take() {
                Some(epoch) if step == Step::Rejoin => epoch,
                _ => {
                    let epoch = redis.seed_epoch(&self.new_epoch()).await?;
                    // A Redis from before epochs has records the change set
                    // lacks (after a loss, it has none: a quick scan).
                    let indexed = redis.index_records().await?;
                    if indexed > 0 {
                        tracing::info!(
                            keys = indexed,
                            "indexed virtual keys written before the change set"
                        );
                    }
                    epoch
                }
            };
            state.joined = None;
            self.rejoin(redis, &mut synced).await?;
            state.joined = Some(epoch);
            state.since = 0;
            page = redis.changes(0, PAGE).await?;
        }
        // Every page moves `since` forward through a finite set.
        loop {
            if page.epoch != state.joined {
                // Redis lost its data meanwhile: rejoin next round.
                state.joined = None;
                break;
            }
            let full = page.changes.len() == PAGE;
            let hashes: Vec<KeyHash> = page.changes.iter().map(|(hash, _)| *hash).collect();
            self.follow(redis, &hashes, &mut synced).await?;
            if let Some((_, position)) = page.changes.last() {
                state.since = *position;
            }
            if !full {
                break;
            }
            page = redis.changes(state.since, PAGE).await?;
        }
        if synced.restored + synced.reburied > 0 {
            tracing::warn!(
                restored = synced.restored,
                reburied = synced.reburied,
                "Redis had lost virtual keys or deletions; put back this replica's copy"
            );
        }
        Ok(synced)
    }

    /// Puts this replica's whole copy into Redis: tombstones first, so that
    /// no key another replica deleted is live in Redis even for a moment.
    async fn rejoin(&self, redis: &RedisStore, synced: &mut Synced) -> Result<(), RedisFailure> {
        let (keys, tombstones) = {
            let cache = self.read();
            let keys: Vec<Arc<VirtualKey>> = cache
                .known
                .values()
                .filter(|key| key.source == KeySource::Generated)
                .cloned()
                .collect();
            let tombstones: Vec<Tombstone> = cache.buried.values().cloned().collect();
            (keys, tombstones)
        };
        for batch in tombstones.chunks(PAGE) {
            let changed = redis.bury(batch, Patience::Sync).await?;
            synced.reburied += changed.into_iter().filter(|changed| *changed).count();
        }
        for batch in keys.chunks(PAGE) {
            self.restore(redis, batch, Patience::Sync, synced).await?;
        }
        Ok(())
    }

    /// Merges what Redis holds for `hashes` into this replica's copy, and
    /// gives Redis back what it lost.
    async fn follow(
        &self,
        redis: &RedisStore,
        hashes: &[KeyHash],
        synced: &mut Synced,
    ) -> Result<(), RedisFailure> {
        let remotes = redis.observe(hashes, Patience::Sync).await?;
        let (mut local, mut restore, mut bury) = (Vec::new(), Vec::new(), Vec::new());
        {
            let cache = self.read();
            for (hash, remote) in hashes.iter().zip(remotes) {
                let plan = reconcile(cache.local(hash), remote);
                match plan.local {
                    Some(Change::Put(key)) => {
                        synced.learned += 1;
                        local.push(Change::Put(key));
                    }
                    Some(Change::Bury(tombstone)) => {
                        synced.deleted += 1;
                        local.push(Change::Bury(tombstone));
                    }
                    None => {}
                }
                match plan.redis {
                    Some(Change::Put(key)) => restore.push(key),
                    Some(Change::Bury(tombstone)) => bury.push(tombstone),
                    None => {}
                }
            }
        }
        self.keep(local).await;
        let changed = redis.bury(&bury, Patience::Sync).await?;
        synced.reburied += changed.into_iter().filter(|changed| *changed).count();
        self.restore(redis, &restore, Patience::Sync, synced).await
    }

    /// Puts `keys` back into Redis; a key Redis has a tombstone for is
    /// deleted here too.
    async fn restore(
        &self,
        redis: &RedisStore,
        keys: &[Arc<VirtualKey>],
        patience: Patience,
        synced: &mut Synced,
    ) -> Result<(), RedisFailure> {
        let answers = redis.restore(keys, patience).await?;
        let mut deleted = Vec::new();
        for (key, answer) in keys.iter().zip(answers) {
            match answer {
                Restored::Present => {}
                // A sync round logs how many; one found on a request's path
                // is logged by itself.
                Restored::Written if patience == Patience::Sync => synced.restored += 1,
                Restored::Written => {
                    synced.restored += 1;
                    tracing::warn!(key = %key.name(), "Redis had lost a virtual key; put it back");
                }
                Restored::AliasHeld => {
                    synced.restored += 1;
                    tracing::warn!(
                        key = %key.name(),
                        token = %&to_hex(&key.hash)[..12],
                        "a virtual key put back into Redis has an alias another key took \
                         while Redis was empty; both work — delete one of them"
                    );
                }
                Restored::Deleted(tombstone) => {
                    synced.deleted += 1;
                    deleted.push(Change::Bury(tombstone));
                }
            }
        }
        self.keep(deleted).await;
        Ok(())
    }

    /// Carries out `plan` (from a lookup on a request's or an admin call's
    /// path): this replica's copy, then Redis; the key's verdict. A failed
    /// Redis write is counted as a fallback: the next sync round redoes it.
    pub(super) async fn carry_out(&self, plan: Plan) -> Verdict {
        let Plan {
            verdict,
            local,
            redis: to_redis,
        } = plan;
        self.keep(local.into_iter().collect()).await;
        let Some(redis) = &self.inner.redis else {
            return verdict;
        };
        let written = match to_redis {
            None => return verdict,
            Some(Change::Bury(tombstone)) => {
                redis.bury(&[tombstone], Patience::Request).await.map(drop)
            }
            Some(Change::Put(key)) => {
                let mut synced = Synced::default();
                let written = self
                    .restore(redis, &[key], Patience::Request, &mut synced)
                    .await;
                if synced.deleted > 0 {
                    return Verdict::Deleted;
                }
                written
            }
        };
        if let Err(error) = written {
            self.fell_back(&error);
        }
        verdict
    }

    /// Applies `changes` to this replica's map, then its store.
    pub(super) async fn keep(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        {
            let mut cache = self.write();
            for change in &changes {
                if let Change::Bury(tombstone) = change
                    && let Some(key) = cache.known.get(&tombstone.hash)
                {
                    tracing::info!(key = %key.name(), "virtual key deleted on another replica");
                }
                cache.apply(change);
            }
        }
        if let Err(error) = self.inner.local.apply(changes).await {
            tracing::warn!(%error, "cannot keep the local copy of virtual keys");
        }
    }

    /// A fresh random epoch id.
    fn new_epoch(&self) -> String {
        let mut bytes = [0u8; 32];
        if self.inner.rng.fill(&mut bytes).is_err() {
            // The OS's generator failing is next to impossible; the clock
            // is unique enough for an epoch.
            bytes[..8].copy_from_slice(&super::unix_now_ms().to_le_bytes());
        }
        to_hex(&bytes)
    }
}
