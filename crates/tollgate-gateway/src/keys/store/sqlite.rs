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
//!     created_at_ms         INTEGER NOT NULL      -- unix ms
//! );
//! ```
//!
//! The key text is never written: a row is found by the hash of the text a
//! client presents. The table lives beside the ledger's tables without
//! touching them or the file's `user_version` (which is the ledger's
//! schema version). The connection is this store's own, in WAL mode, so it
//! writes beside the ledger's writer; every call blocks, so async code runs
//! it on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, params};

use super::{Record, StoreError};
use crate::keys::hash::{KeyHash, to_hex};
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
    created_at_ms         INTEGER NOT NULL
)";

const COLUMNS: &str = "hash, alias, models, rpm_limit, tpm_limit, max_parallel_requests, \
                       max_budget_picos, budget_duration_s, expires_at_ms, metadata, created_at_ms";

/// Generated keys in a SQLite file.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the file at `path` in WAL mode and creates the
    /// table if it is missing.
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let fail = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            // A missing directory shows up as the open error below.
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        conn.execute(CREATE, []).map_err(fail)?;
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

    /// Every stored key.
    pub(crate) fn load(&self) -> Result<Vec<VirtualKey>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut select = conn
            .prepare(&format!("SELECT {COLUMNS} FROM virtual_keys"))
            .map_err(|e| self.fail(e))?;
        let rows = select
            .query_map([], read_row)
            .map_err(|e| self.fail(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))?;
        rows.into_iter().map(Record::into_key).collect()
    }

    /// Inserts `key`; `replace` overwrites rows with the same hash or alias.
    pub(crate) fn put(&self, key: &VirtualKey, replace: bool) -> Result<(), StoreError> {
        let record = Record::of(key);
        let verb = if replace {
            "INSERT OR REPLACE"
        } else {
            "INSERT"
        };
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let inserted = conn.execute(
            &format!(
                "{verb} INTO virtual_keys ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
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
            ],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::AliasTaken)
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Deletes the key with `hash`, if stored.
    pub(crate) fn remove(&self, hash: &KeyHash) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute("DELETE FROM virtual_keys WHERE hash = ?1", [to_hex(hash)])
            .map(drop)
            .map_err(|e| self.fail(e))
    }
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
