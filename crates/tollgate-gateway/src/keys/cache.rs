//! [`Cache`]: what one replica knows of the keys — the live ones, the
//! deleted ones, and Redis's recent "no such key" answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::store::{Change, Tombstone};
use super::sync::reconcile::Local;
use super::{KeySource, NEGATIVE_CAPACITY, NEGATIVE_TTL, VirtualKey};
use crate::key_format::KeyHash;

#[derive(Default)]
pub(super) struct Cache {
    /// Every live key this replica knows: config keys and generated keys.
    pub(super) known: HashMap<KeyHash, Arc<VirtualKey>>,
    /// Every deleted key this replica knows.
    pub(super) buried: HashMap<KeyHash, Tombstone>,
    /// Hashes Redis said it did not have, and when (unix ms).
    pub(super) missing: HashMap<KeyHash, i64>,
}

/// Whether something recorded at `at_ms` is still current at `now_ms`.
pub(super) fn fresh(now_ms: i64, at_ms: i64, ttl: Duration) -> bool {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    (0..ttl_ms).contains(&now_ms.saturating_sub(at_ms))
}

impl Cache {
    pub(super) fn remember_missing(&mut self, hash: KeyHash, now_ms: i64) {
        if self.missing.len() >= NEGATIVE_CAPACITY {
            self.missing
                .retain(|_, at| fresh(now_ms, *at, NEGATIVE_TTL));
        }
        if self.missing.len() < NEGATIVE_CAPACITY {
            self.missing.insert(hash, now_ms);
        }
    }

    /// Applies `change` as the stores do: a tombstone wins over a record,
    /// in either order. Config keys are not the stores' to change.
    pub(super) fn apply(&mut self, change: &Change) {
        match change {
            Change::Put(key) => {
                if !self.buried.contains_key(&key.hash)
                    && self
                        .known
                        .get(&key.hash)
                        .is_none_or(|known| known.source != KeySource::Config)
                {
                    self.missing.remove(&key.hash);
                    self.known.insert(key.hash, key.clone());
                }
            }
            Change::Bury(tombstone) => {
                if self
                    .known
                    .get(&tombstone.hash)
                    .is_some_and(|known| known.source == KeySource::Config)
                {
                    return;
                }
                self.known.remove(&tombstone.hash);
                let merged = match self.buried.remove(&tombstone.hash) {
                    Some(kept) => kept.merge(tombstone),
                    None => tombstone.clone(),
                };
                self.buried.insert(merged.hash, merged);
            }
        }
    }

    /// What this replica knows of `hash`.
    pub(super) fn local(&self, hash: &KeyHash) -> Local {
        match (self.known.get(hash), self.buried.get(hash)) {
            (Some(key), _) => Local::Live(key.clone()),
            (None, Some(tombstone)) => Local::Deleted(tombstone.clone()),
            (None, None) => Local::Unknown,
        }
    }

    pub(super) fn alias_owner(&self, alias: &str) -> Option<&Arc<VirtualKey>> {
        self.known.values().find(|key| key.alias() == Some(alias))
    }

    /// Whether a live key other than `except` has `alias` as its alias or
    /// its name (a name outlives an alias change, and two keys with one
    /// name would share their limits and budget).
    pub(super) fn alias_used(&self, alias: &str, except: &KeyHash) -> bool {
        self.known
            .values()
            .any(|key| key.hash != *except && (key.alias() == Some(alias) || *key.name() == *alias))
    }
}
