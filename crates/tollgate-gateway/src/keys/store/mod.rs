//! Where generated keys are kept, per backend, and the one record format
//! they share.
//!
//! Config keys are never stored: they come from the config file at every
//! start. A store holds only generated keys, and only their hashes, and a
//! [`Tombstone`] for every key deleted: a deletion is a fact that is kept
//! (and copied between replicas through Redis), not the absence of a
//! record, so that a copy of the record found elsewhere later (another
//! replica's, after Redis lost its data) cannot bring the key back. In
//! every store a tombstone wins over a record of the same hash, whatever
//! the order they arrive in.

pub(crate) mod memory;
pub(crate) mod redis;
pub(crate) mod sqlite;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::key::{KeySource, VirtualKey};
use crate::key_format::{KeyHash, from_hex, to_hex};
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
///  "expires_at_ms":null,"metadata":{},"created_at_ms":1767225600000,
///  "name":"team-a","blocked":false,"aliases":{},"team_id":null,
///  "user_id":null,"updated_at_ms":null}
/// ```
///
/// The fields from `name` on came with `/key/update` and friends; a record
/// without them reads as it did before (name from the alias or hash, not
/// blocked, no aliases).
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
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    updated_at_ms: Option<i64>,
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
            name: Some(key.name().to_string()),
            blocked: key.blocked,
            aliases: key.model_aliases.clone(),
            team_id: key.team_id.clone(),
            user_id: key.user_id.clone(),
            updated_at_ms: key.updated_at_ms,
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
        key.blocked = self.blocked;
        key.model_aliases = self.aliases;
        key.team_id = self.team_id;
        key.user_id = self.user_id;
        key.updated_at_ms = self.updated_at_ms;
        Ok(match &self.name {
            Some(name) if !name.is_empty() => key.named(name),
            _ => key,
        })
    }
}

/// The record that a key was deleted, and when: kept for good, so that a
/// copy of the key found elsewhere is never taken for a live key.
///
/// As JSON (the Redis value): `{"v":1,"hash":"<64 hex digits>","alias":
/// "team-a","deleted_at_ms":1767225600000}`. The alias is kept so that
/// whoever writes the tombstone into a Redis that lost it can free the
/// alias too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tombstone {
    /// The deleted key's hash.
    pub(crate) hash: KeyHash,
    /// Its alias, if it had one.
    pub(crate) alias: Option<String>,
    /// When it was deleted, unix ms (the earliest, when two replicas
    /// recorded it).
    pub(crate) deleted_at_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct TombstoneRecord {
    v: u32,
    hash: String,
    alias: Option<String>,
    deleted_at_ms: i64,
}

impl Tombstone {
    /// The tombstone of `key`, deleted at `deleted_at_ms`.
    pub(crate) fn of(key: &VirtualKey, deleted_at_ms: i64) -> Self {
        Tombstone {
            hash: key.hash,
            alias: key.alias().map(str::to_owned),
            deleted_at_ms,
        }
    }

    /// As JSON, for Redis.
    pub(crate) fn to_json(&self) -> String {
        let record = TombstoneRecord {
            v: RECORD_VERSION,
            hash: to_hex(&self.hash),
            alias: self.alias.clone(),
            deleted_at_ms: self.deleted_at_ms,
        };
        // Strings and integers always serialise.
        serde_json::to_string(&record).unwrap_or_default()
    }

    /// From JSON, as [`to_json`](Self::to_json) writes it.
    pub(crate) fn from_json(json: &str) -> Result<Self, StoreError> {
        let record: TombstoneRecord =
            serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if record.v > RECORD_VERSION {
            return Err(StoreError::Corrupt(format!(
                "tombstone version {} is newer than this gateway reads ({RECORD_VERSION})",
                record.v
            )));
        }
        let hash = from_hex(&record.hash)
            .ok_or_else(|| StoreError::Corrupt("a tombstone's hash is not 64 hex digits".into()))?;
        Ok(Tombstone {
            hash,
            alias: record.alias,
            deleted_at_ms: record.deleted_at_ms,
        })
    }

    /// The same deletion as recorded by two replicas: the earliest time,
    /// so that merging is the same in any order.
    pub(crate) fn merge(self, other: &Tombstone) -> Tombstone {
        Tombstone {
            deleted_at_ms: self.deleted_at_ms.min(other.deleted_at_ms),
            alias: self.alias.or_else(|| other.alias.clone()),
            hash: self.hash,
        }
    }
}

/// One write to a store's copy, as a replica of the shared set of keys.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Keep this key (replacing a record with the same hash or alias);
    /// ignored when its hash has a tombstone.
    Put(Arc<VirtualKey>),
    /// The key was deleted: drop its record, keep the tombstone.
    Bury(Tombstone),
}

/// Everything a store holds.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Live generated keys.
    pub(crate) keys: Vec<VirtualKey>,
    /// Deleted keys.
    pub(crate) tombstones: Vec<Tombstone>,
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
    /// Every stored key and tombstone (blocking, for start-up).
    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        match self {
            LocalStore::Memory(store) => Ok(store.load()),
            LocalStore::Sqlite(store) => store.load(),
        }
    }

    /// Stores a new key; another key with its alias is
    /// [`StoreError::AliasTaken`] (the memory and SQLite backends, where
    /// this store is the truth).
    pub(crate) async fn insert(&self, key: Arc<VirtualKey>) -> Result<(), StoreError> {
        match self {
            LocalStore::Memory(store) => store.insert(key),
            LocalStore::Sqlite(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.insert(&key))
                    .await
                    .map_err(|_| StoreError::Lost)?
            }
        }
    }

    /// Applies `changes` in order, all or none (see [`Change`]).
    pub(crate) async fn apply(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        match self {
            LocalStore::Memory(store) => {
                store.apply(changes);
                Ok(())
            }
            LocalStore::Sqlite(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.apply(&changes))
                    .await
                    .map_err(|_| StoreError::Lost)?
            }
        }
    }
}
