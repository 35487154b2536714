//! Where generated keys are kept, per backend, and the one record format
//! they share.
//!
//! Config keys are never stored: they come from the config file at every
//! start. A store holds only generated keys, and only their hashes.

pub(crate) mod memory;
pub(crate) mod redis;
pub(crate) mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hash::{KeyHash, from_hex, to_hex};
use super::key::{KeySource, VirtualKey};
use memory::MemoryStore;
use sqlite::SqliteStore;

/// Version of [`Record`]'s JSON; a reader refuses newer records rather
/// than misread them.
const RECORD_VERSION: u32 = 1;

/// A generated key as JSON: the Redis value, and the shape of the SQLite
/// row.
///
/// ```json
/// {"v":1,"hash":"<64 hex digits>","alias":"team-a","models":["demo"],
///  "rpm_limit":60,"tpm_limit":100000,"max_parallel_requests":4,
///  "max_budget_picos":25000000000000,"budget_duration_s":2592000,
///  "expires_at_ms":null,"metadata":{},"created_at_ms":1767225600000}
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    v: u32,
    hash: String,
    alias: Option<String>,
    models: Vec<String>,
    rpm_limit: Option<u32>,
    tpm_limit: Option<u64>,
    max_parallel_requests: Option<u32>,
    max_budget_picos: Option<u64>,
    budget_duration_s: Option<u64>,
    expires_at_ms: Option<i64>,
    metadata: serde_json::Value,
    created_at_ms: i64,
}

impl Record {
    pub(crate) fn of(key: &VirtualKey) -> Record {
        Record {
            v: RECORD_VERSION,
            hash: to_hex(&key.hash),
            alias: key.alias().map(str::to_owned),
            models: key.models.clone(),
            rpm_limit: key.rpm_limit,
            tpm_limit: key.tpm_limit,
            max_parallel_requests: key.max_parallel_requests,
            max_budget_picos: key.max_budget_picos,
            budget_duration_s: key.budget_duration.map(|d| d.as_secs()),
            expires_at_ms: key.expires_at_ms,
            metadata: key.metadata.clone(),
            created_at_ms: key.created_at_ms,
        }
    }

    pub(crate) fn into_key(self) -> Result<VirtualKey, StoreError> {
        if self.v > RECORD_VERSION {
            return Err(StoreError::Corrupt(format!(
                "record version {} is newer than this gateway reads ({RECORD_VERSION})",
                self.v
            )));
        }
        let hash = from_hex(&self.hash)
            .ok_or_else(|| StoreError::Corrupt("a record's hash is not 64 hex digits".into()))?;
        let mut key = VirtualKey::new(hash, self.alias, KeySource::Generated, self.created_at_ms);
        key.models = self.models;
        key.rpm_limit = self.rpm_limit;
        key.tpm_limit = self.tpm_limit;
        key.max_parallel_requests = self.max_parallel_requests;
        key.max_budget_picos = self.max_budget_picos;
        key.budget_duration = self.budget_duration_s.map(Duration::from_secs);
        key.expires_at_ms = self.expires_at_ms;
        key.metadata = self.metadata;
        Ok(key)
    }
}

/// What a store could not do. Messages name files and hashes, never keys.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// SQLite failed.
    #[error("virtual key store {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Another key already has this alias.
    #[error("the key_alias is already in use")]
    AliasTaken,
    /// A stored record could not be read.
    #[error("a stored virtual key is unreadable: {0}")]
    Corrupt(String),
    /// The blocking task writing SQLite was lost (the runtime is shutting
    /// down).
    #[error("the virtual key store task did not finish")]
    Lost,
}

/// The copy of generated keys kept on this machine: the whole truth for
/// the memory and SQLite backends, and the outage copy for Redis.
#[derive(Debug)]
pub(crate) enum LocalStore {
    Memory(MemoryStore),
    Sqlite(Arc<SqliteStore>),
}

impl LocalStore {
    /// Every stored key (blocking, for start-up).
    pub(crate) fn load(&self) -> Result<Vec<VirtualKey>, StoreError> {
        match self {
            LocalStore::Memory(store) => Ok(store.load()),
            LocalStore::Sqlite(store) => store.load(),
        }
    }

    /// Stores `key`. `replace` overwrites a record with the same hash or
    /// alias (a mirror of Redis); without it, a taken alias is
    /// [`StoreError::AliasTaken`].
    pub(crate) async fn put(&self, key: Arc<VirtualKey>, replace: bool) -> Result<(), StoreError> {
        match self {
            LocalStore::Memory(store) => store.put(key, replace),
            LocalStore::Sqlite(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.put(&key, replace))
                    .await
                    .map_err(|_| StoreError::Lost)?
            }
        }
    }

    /// Removes the key with `hash`, if stored.
    pub(crate) async fn remove(&self, hash: KeyHash) -> Result<(), StoreError> {
        match self {
            LocalStore::Memory(store) => {
                store.remove(&hash);
                Ok(())
            }
            LocalStore::Sqlite(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.remove(&hash))
                    .await
                    .map_err(|_| StoreError::Lost)?
            }
        }
    }
}
