//! The in-memory store: tests and library use; keys live as long as the
//! process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Change, Loaded, StoreError, Tombstone};
use crate::key_format::KeyHash;
use crate::keys::key::VirtualKey;

/// Generated keys and tombstones by hash, in memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<KeyHash, Arc<VirtualKey>>,
    tombstones: HashMap<KeyHash, Tombstone>,
}

impl State {
    fn alias_taken(&self, key: &VirtualKey) -> bool {
        key.alias().is_some()
            && self
                .keys
                .values()
                .any(|other| other.hash != key.hash && other.alias() == key.alias())
    }
}

impl MemoryStore {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn load(&self) -> Loaded {
        let state = self.state();
        Loaded {
            keys: state.keys.values().map(|key| (**key).clone()).collect(),
            tombstones: state.tombstones.values().cloned().collect(),
        }
    }

    pub(crate) fn insert(&self, key: Arc<VirtualKey>) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.alias_taken(&key) {
            return Err(StoreError::AliasTaken);
        }
        state.keys.insert(key.hash, key);
        Ok(())
    }

    pub(crate) fn apply(&self, changes: Vec<Change>) {
        let mut state = self.state();
        for change in changes {
            match change {
                Change::Put(key) if !state.tombstones.contains_key(&key.hash) => {
                    // Like SQLite's unique alias: the newer record wins.
                    if state.alias_taken(&key) {
                        state.keys.retain(|hash, other| {
                            *hash == key.hash || other.alias() != key.alias()
                        });
                    }
                    state.keys.insert(key.hash, key);
                }
                Change::Put(_) => {}
                Change::Bury(tombstone) => {
                    state.keys.remove(&tombstone.hash);
                    let merged = match state.tombstones.remove(&tombstone.hash) {
                        Some(kept) => kept.merge(&tombstone),
                        None => tombstone,
                    };
                    state.tombstones.insert(merged.hash, merged);
                }
            }
        }
    }
}
