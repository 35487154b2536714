//! The in-memory store: tests and library use; keys live as long as the
//! process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::StoreError;
use crate::keys::hash::KeyHash;
use crate::keys::key::VirtualKey;

/// Generated keys by hash, in memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    keys: Mutex<HashMap<KeyHash, Arc<VirtualKey>>>,
}

impl MemoryStore {
    pub(crate) fn load(&self) -> Vec<VirtualKey> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.values().map(|key| (**key).clone()).collect()
    }

    pub(crate) fn put(&self, key: Arc<VirtualKey>, replace: bool) -> Result<(), StoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let same_alias = |other: &VirtualKey| {
            other.hash != key.hash && key.alias().is_some() && other.alias() == key.alias()
        };
        if replace {
            keys.retain(|_, other| !same_alias(other));
        } else if keys.values().any(|other| same_alias(other)) {
            return Err(StoreError::AliasTaken);
        }
        keys.insert(key.hash, key);
        Ok(())
    }

    pub(crate) fn remove(&self, hash: &KeyHash) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.remove(hash);
    }
}
