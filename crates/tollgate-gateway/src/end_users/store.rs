//! Where registered end users are kept: a SQLite table (the spend ledger's
//! file) that survives restarts, and a Redis hash every replica shares.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS end_users (
//!     user_id       TEXT    PRIMARY KEY,
//!     record        TEXT    NOT NULL,  -- the EndUser as JSON (a tombstone too)
//!     updated_at_ms INTEGER NOT NULL   -- unix ms of the last admin change
//! );
//! ```
//!
//! In Redis: the hash `tollgate:end_users`, field the user id, value the
//! same JSON. A write replaces the field only when its `updated_at_ms` is
//! newer (a Lua script), so a stale copy put back after Redis lost its data
//! never overwrites a later change.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use rusqlite::{Connection, params};

use super::record::EndUser;

/// How long a SQLite write waits for the ledger's writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The table, in the ledger's file beside its own tables.
#[derive(Clone)]
pub(crate) struct Sqlite(Arc<Mutex<Connection>>);

impl Sqlite {
    /// Opens `path` (creating it) and the table.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Sqlite> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            // The ledger makes it too; whoever opens first.
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS end_users (
                user_id       TEXT    PRIMARY KEY,
                record        TEXT    NOT NULL,
                updated_at_ms INTEGER NOT NULL
            )",
        )?;
        Ok(Sqlite(Arc::new(Mutex::new(conn))))
    }

    /// Every stored end user, tombstones included; rows that do not read
    /// are skipped with a warning.
    pub(crate) fn load(&self) -> rusqlite::Result<Vec<EndUser>> {
        let conn = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut statement = conn.prepare("SELECT user_id, record FROM end_users")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, text) = row?;
            match EndUser::from_json(&text) {
                Some(record) => out.push(record),
                None => {
                    tracing::warn!(end_user = %id, "an end_users row could not be read; skipped")
                }
            }
        }
        Ok(out)
    }

    /// Writes `record` unless a newer one is stored. Blocking.
    pub(crate) fn put(&self, record: &EndUser) -> rusqlite::Result<()> {
        let conn = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute(
            "INSERT INTO end_users (user_id, record, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id) DO UPDATE SET record = ?2, updated_at_ms = ?3
             WHERE excluded.updated_at_ms > end_users.updated_at_ms",
            params![record.user_id, record.to_json(), record.updated_at_ms],
        )?;
        Ok(())
    }

    /// [`put`](Self::put) on the blocking pool.
    pub(crate) async fn put_async(&self, record: EndUser) -> Result<(), String> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.put(&record))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Sets the field when the stored copy is absent or older (by
/// `updated_at_ms`, passed as ARGV[3]); returns 1 when it wrote.
const PUT_NEWER: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, decoded = pcall(cjson.decode, old)
  if ok and tonumber(decoded['updated_at_ms']) >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// The shared hash in Redis.
#[derive(Clone)]
pub(crate) struct Redis {
    connection: ConnectionManager,
    hash: String,
    timeout: Duration,
    put: Arc<redis::Script>,
}

/// Redis failed or did not answer in time.
#[derive(Debug)]
pub(crate) struct RedisFailed(pub(crate) String);

impl std::fmt::Display for RedisFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Redis {
    /// The hash `{prefix}end_users`, each call waiting at most `timeout`.
    pub(crate) fn new(connection: ConnectionManager, prefix: &str, timeout: Duration) -> Redis {
        Redis {
            connection,
            hash: format!("{prefix}end_users"),
            timeout,
            put: Arc::new(redis::Script::new(PUT_NEWER)),
        }
    }

    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisFailed> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(RedisFailed(error.to_string())),
            Err(_) => Err(RedisFailed(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// The stored copy of `user`, if any (a tombstone too).
    pub(crate) async fn get(&self, user: &str) -> Result<Option<EndUser>, RedisFailed> {
        let mut connection = self.connection.clone();
        let text: Option<String> = self
            .timed(
                redis::cmd("HGET")
                    .arg(&self.hash)
                    .arg(user)
                    .query_async(&mut connection),
            )
            .await?;
        Ok(text.as_deref().and_then(EndUser::from_json))
    }

    /// Every stored end user, tombstones included.
    pub(crate) async fn all(&self) -> Result<Vec<EndUser>, RedisFailed> {
        let mut connection = self.connection.clone();
        let map: Vec<(String, String)> = self
            .timed(
                redis::cmd("HGETALL")
                    .arg(&self.hash)
                    .query_async(&mut connection),
            )
            .await?;
        Ok(map
            .iter()
            .filter_map(|(_, text)| EndUser::from_json(text))
            .collect())
    }

    /// Writes `record` unless Redis has a newer copy.
    pub(crate) async fn put(&self, record: &EndUser) -> Result<(), RedisFailed> {
        let mut connection = self.connection.clone();
        let mut invocation = self.put.key(&self.hash);
        invocation
            .arg(&record.user_id)
            .arg(record.to_json())
            .arg(record.updated_at_ms);
        let _: i64 = self.timed(invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
