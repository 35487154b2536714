//! The SQLite store: the table `virtual_keys`, in the spend ledger's file
//! by default.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS virtual_keys (
//!     hash                  TEXT    PRIMARY KEY,  -- lowercase hex SHA-256 of the key text
//!     alias                 TEXT    UNIQUE,       -- NULL when the key has none
//!     models                TEXT    NOT NULL,     -- JSON array of model groups; [] = all
//!     rpm_limit             INTEGER,
//!     tpm_limit             INTEGER,              -- u64, stored bit for bit in i64
//!     max_parallel_requests INTEGER,
//!     max_budget_picos      INTEGER,              -- 1e-12 $, u64 stored bit for bit in i64
//!     budget_duration_s     INTEGER,
//!     expires_at_ms         INTEGER,              -- unix ms; NULL = never
//!     metadata              TEXT    NOT NULL,     -- JSON object
//!     created_at_ms         INTEGER NOT NULL,     -- unix ms
//!     key_name              TEXT,                 -- the name kept through updates
//!     blocked               INTEGER NOT NULL DEFAULT 0,
//!     aliases               TEXT    NOT NULL DEFAULT '{}', -- JSON: model → group
//!     team_id               TEXT,
//!     user_id               TEXT,
//!     updated_at_ms         INTEGER               -- unix ms of the last admin change
//! );
//! CREATE TABLE IF NOT EXISTS virtual_key_tombstones (
//!     hash                  TEXT    PRIMARY KEY,  -- the deleted key's hash
//!     alias                 TEXT,                 -- its alias, if any
//!     deleted_at_ms         INTEGER NOT NULL      -- unix ms (the earliest seen)
//! );
//! ```
//!
//! The key text is never written: a row is found by the hash of the text a
//! client presents. A deleted key leaves a tombstone (see
//! [`Tombstone`]): a record of its hash is never stored again. The tables
//! live beside the ledger's tables without touching them or the file's
//! `user_version` (which is the ledger's schema version); a file written
//! before tombstones gets their table when opened, and one written before
//! `/key/update` gets the columns from `key_name` on (see [`ADDED`]). A Redis backend's
//! mirror written before tombstones also loses its rows then (see
//! [`SqliteStore::open_mirror`]). The connection is this store's own, in WAL mode, so it
//! writes beside the ledger's writer; every call blocks, so async code runs
//! it on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, params};

use super::{Change, Loaded, Record, StoreError, Tombstone};
use crate::key_format::{from_hex, to_hex};
use crate::keys::key::VirtualKey;

/// How long a write waits for the ledger's writer to let go of the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE: &str = "CREATE TABLE IF NOT EXISTS virtual_keys (
    hash                  TEXT    PRIMARY KEY,
    alias                 TEXT    UNIQUE,
    models                TEXT    NOT NULL,
    rpm_limit             INTEGER,
    tpm_limit             INTEGER,
    max_parallel_requests INTEGER,
    max_budget_picos      INTEGER,
    budget_duration_s     INTEGER,
    expires_at_ms         INTEGER,
    metadata              TEXT    NOT NULL,
    created_at_ms         INTEGER NOT NULL,
    key_name              TEXT,
    blocked               INTEGER NOT NULL DEFAULT 0,
    aliases               TEXT    NOT NULL DEFAULT '{}',
    team_id               TEXT,
    user_id               TEXT,
    updated_at_ms         INTEGER
)";

/// Columns added after the table's first version, with their definitions:
/// added to an older file when it is opened.
const ADDED: [(&str, &str); 6] = [
    ("key_name", "TEXT"),
    ("blocked", "INTEGER NOT NULL DEFAULT 0"),
    ("aliases", "TEXT NOT NULL DEFAULT '{}'"),
    ("team_id", "TEXT"),
    ("user_id", "TEXT"),
    ("updated_at_ms", "INTEGER"),
];

const CREATE_TOMBSTONES: &str = "CREATE TABLE IF NOT EXISTS virtual_key_tombstones (
    hash                  TEXT    PRIMARY KEY,
    alias                 TEXT,
    deleted_at_ms         INTEGER NOT NULL
)";

/// A tombstone, or the earliest time of the one already there.
const BURY: &str = "INSERT INTO virtual_key_tombstones (hash, alias, deleted_at_ms) \
                    VALUES (?1, ?2, ?3) ON CONFLICT (hash) DO UPDATE SET \
                    deleted_at_ms = min(deleted_at_ms, excluded.deleted_at_ms), \
                    alias = coalesce(alias, excluded.alias)";

const COLUMNS: &str = "hash, alias, models, rpm_limit, tpm_limit, max_parallel_requests, \
                       max_budget_picos, budget_duration_s, expires_at_ms, metadata, created_at_ms, \
                       key_name, blocked, aliases, team_id, user_id, updated_at_ms";

/// Generated keys in a SQLite file.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the file at `path` in WAL mode and creates the
    /// tables if they are missing: the store of the SQLite backend, where
    /// the file is the truth.
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_as(path, false)
    }

    /// [`open`](Self::open), as the Redis backend's mirror. A mirror
    /// written before tombstones existed was only a cache of Redis, and may
    /// hold keys deleted since (a replica dropped its row only when it saw
    /// the key gone): put back into Redis, they would live again. So its
    /// rows go when the tombstones' table is made, and the first sync
    /// copies every key from Redis.
    pub(crate) fn open_mirror(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_as(path, true)
    }

    fn open_as(path: &Path, mirror: bool) -> Result<SqliteStore, StoreError> {
        let fail = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = open_wal(path).map_err(fail)?;
        let tx = conn.unchecked_transaction().map_err(fail)?;
        let before_tombstones: bool = tx
            .query_row(
                "SELECT count(*) = 0 FROM sqlite_master \
                 WHERE type = 'table' AND name = 'virtual_key_tombstones'",
                [],
                |row| row.get(0),
            )
            .map_err(fail)?;
        tx.execute(CREATE, []).map_err(fail)?;
        add_columns(&tx).map_err(fail)?;
        tx.execute(CREATE_TOMBSTONES, []).map_err(fail)?;
        if mirror && before_tombstones {
            let dropped = tx.execute("DELETE FROM virtual_keys", []).map_err(fail)?;
            if dropped > 0 {
                tracing::info!(
                    keys = dropped,
                    path = %path.display(),
                    "the virtual keys' mirror predates tombstones; it is copied again from Redis"
                );
            }
        }
        tx.commit().map_err(fail)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    fn fail(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Every stored key and tombstone.
    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut select = conn
            .prepare(&format!("SELECT {COLUMNS} FROM virtual_keys"))
            .map_err(|e| self.fail(e))?;
        let rows = select
            .query_map([], read_row)
            .map_err(|e| self.fail(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))?;
        let keys = rows
            .into_iter()
            .map(Record::into_key)
            .collect::<Result<_, _>>()?;
        let mut select = conn
            .prepare("SELECT hash, alias, deleted_at_ms FROM virtual_key_tombstones")
            .map_err(|e| self.fail(e))?;
        let rows = select
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.fail(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))?;
        let tombstones = rows
            .into_iter()
            .map(|(hex, alias, deleted_at_ms)| {
                let hash = from_hex(&hex).ok_or_else(|| {
                    StoreError::Corrupt("a tombstone's hash is not 64 hex digits".into())
                })?;
                Ok(Tombstone {
                    hash,
                    alias,
                    deleted_at_ms,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Loaded { keys, tombstones })
    }

    /// Inserts a new key; another row with its alias is
    /// [`StoreError::AliasTaken`].
    pub(crate) fn insert(&self, key: &VirtualKey) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        match put(&conn, "INSERT", key) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::AliasTaken)
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Applies `changes` in order, in one transaction: a record replaces
    /// rows with its hash or alias unless its hash has a tombstone; a
    /// tombstone deletes the record.
    pub(crate) fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction().map_err(|e| self.fail(e))?;
        for change in changes {
            match change {
                Change::Put(key) => put(&tx, "INSERT OR REPLACE", key).map(drop),
                Change::Bury(tombstone) => {
                    let hex = to_hex(&tombstone.hash);
                    tx.execute("DELETE FROM virtual_keys WHERE hash = ?1", [&hex])
                        .and_then(|_| {
                            tx.execute(BURY, params![hex, tombstone.alias, tombstone.deleted_at_ms])
                        })
                        .map(drop)
                }
            }
            .map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))
    }
}

/// A connection of its own to the SQLite file at `path` (made, with its
/// directory, if missing), in WAL mode so that it writes beside the
/// ledger's writer: the keys' store and the teams' open theirs so.
pub(crate) fn open_wal(path: &Path) -> rusqlite::Result<Connection> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        // A missing directory shows up as the open error below.
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Adds the columns of [`ADDED`] that the table lacks (a file from before
/// them).
fn add_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut info = conn.prepare("SELECT name FROM pragma_table_info('virtual_keys')")?;
    let present = info
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (column, definition) in ADDED {
        if !present.iter().any(|name| name == column) {
            conn.execute(
                &format!("ALTER TABLE virtual_keys ADD COLUMN {column} {definition}"),
                [],
            )?;
        }
    }
    Ok(())
}

/// Writes `key`'s row with `verb` (`INSERT`, `INSERT OR REPLACE`), unless
/// its hash has a tombstone; how many rows were written.
fn put(conn: &Connection, verb: &str, key: &VirtualKey) -> rusqlite::Result<usize> {
    let record = Record::of(key);
    conn.execute(
        &format!(
            "{verb} INTO virtual_keys ({COLUMNS}) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17 \
             WHERE NOT EXISTS (SELECT 1 FROM virtual_key_tombstones WHERE hash = ?1)"
        ),
        params![
            record.hash,
            record.alias,
            json(&record.models),
            record.rpm_limit,
            record.tpm_limit.map(to_sql),
            record.max_parallel_requests,
            record.max_budget_picos.map(to_sql),
            record.budget_duration_s.map(to_sql),
            record.expires_at_ms,
            json(&record.metadata),
            record.created_at_ms,
            record.name,
            record.blocked,
            json(&record.aliases),
            record.team_id,
            record.user_id,
            record.updated_at_ms,
        ],
    )
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let models: String = row.get(2)?;
    let metadata: String = row.get(9)?;
    Ok(Record {
        v: super::RECORD_VERSION,
        hash: row.get(0)?,
        alias: row.get(1)?,
        models: serde_json::from_str(&models).unwrap_or_default(),
        rpm_limit: row.get(3)?,
        tpm_limit: row.get::<_, Option<i64>>(4)?.map(from_sql),
        max_parallel_requests: row.get(5)?,
        max_budget_picos: row.get::<_, Option<i64>>(6)?.map(from_sql),
        budget_duration_s: row.get::<_, Option<i64>>(7)?.map(from_sql),
        expires_at_ms: row.get(8)?,
        metadata: serde_json::from_str(&metadata)
            .unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new())),
        created_at_ms: row.get(10)?,
        name: row.get(11)?,
        blocked: row.get(12)?,
        aliases: serde_json::from_str(&row.get::<_, String>(13)?).unwrap_or_default(),
        team_id: row.get(14)?,
        user_id: row.get(15)?,
        updated_at_ms: row.get(16)?,
    })
}

fn json(value: &impl serde::Serialize) -> String {
    // Vectors of strings and JSON values always serialise.
    serde_json::to_string(value).unwrap_or_default()
}

/// A `u64` as the `i64` with the same bits (the same number below 2^63).
fn to_sql(n: u64) -> i64 {
    n as i64
}

/// The inverse of [`to_sql`].
fn from_sql(n: i64) -> u64 {
    n as u64
}
