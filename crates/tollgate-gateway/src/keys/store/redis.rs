//! The Redis store: generated keys shared by every replica.
//!
//! Two kinds of Redis keys, under the configured prefix:
//!
//! - `{prefix}key:{hex hash}` → the key's [`Record`] as JSON (a string
//!   value, no TTL: expiry is checked against `expires_at_ms`, so a key
//!   stays visible to `/key/info` after it expires);
//! - `{prefix}alias:{alias}` → the hex hash of the key with that alias,
//!   which makes aliases unique across replicas (`SET NX`).
//!
//! Both are written and deleted together by one Lua script each, so a
//! crash or a lost connection never leaves one without the other.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::Record;
use crate::keys::hash::{KeyHash, to_hex};
use crate::keys::key::VirtualKey;

/// How long one Redis operation may take before the gateway answers from
/// its local copy.
pub(crate) const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(100);

/// Stores the record, and claims the alias if there is one; 0 when the
/// alias belongs to another key.
const PUT: &str = r"
if KEYS[2] then
  local owner = redis.call('GET', KEYS[2])
  if owner and owner ~= ARGV[2] then return 0 end
  redis.call('SET', KEYS[2], ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

/// Deletes the record, and the alias if it still points at this key; the
/// number of records deleted.
const DELETE: &str = r"
local deleted = redis.call('DEL', KEYS[1])
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return deleted
";

/// How the Redis backend is set up: the connection, the key prefix, where
/// the local copy lives, and what to do on a fallback.
#[derive(Clone)]
pub(crate) struct RedisBackend {
    pub(crate) manager: ConnectionManager,
    pub(crate) prefix: String,
    pub(crate) mirror: Option<PathBuf>,
    pub(crate) op_timeout: Duration,
    pub(crate) on_fallback: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl RedisBackend {
    /// Keys under `prefix` (e.g. `tollgate:`) on `manager`'s server, with
    /// the local copy in memory and a [`DEFAULT_OP_TIMEOUT`].
    pub(crate) fn new(manager: ConnectionManager, prefix: impl Into<String>) -> Self {
        RedisBackend {
            manager,
            prefix: prefix.into(),
            mirror: None,
            op_timeout: DEFAULT_OP_TIMEOUT,
            on_fallback: None,
        }
    }

    /// Keeps the local copy in the SQLite file at `path` (the ledger's), so
    /// keys this replica has seen survive a restart during a Redis outage.
    pub(crate) fn mirror(mut self, path: impl Into<PathBuf>) -> Self {
        self.mirror = Some(path.into());
        self
    }

    /// Waits at most `timeout` per Redis operation.
    #[cfg(test)]
    pub(crate) fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Calls `callback` whenever an answer came from the local copy because
    /// Redis failed (turn it into a metric).
    pub(crate) fn on_fallback(mut self, callback: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.on_fallback = Some(callback);
        self
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("mirror", &self.mirror)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Why Redis did not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisFailure {
    /// An error from Redis or the connection.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within the operation timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A record that is not valid JSON or not ours.
    #[error("unreadable record: {0}")]
    Corrupt(String),
}

/// What [`RedisStore::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    Stored,
    AliasTaken,
}

/// The operations on Redis.
pub(crate) struct RedisStore {
    manager: ConnectionManager,
    prefix: String,
    op_timeout: Duration,
    put: Script,
    delete: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    pub(crate) fn new(backend: &RedisBackend) -> Self {
        RedisStore {
            manager: backend.manager.clone(),
            prefix: backend.prefix.clone(),
            op_timeout: backend.op_timeout,
            put: Script::new(PUT),
            delete: Script::new(DELETE),
        }
    }

    fn key_key(&self, hash: &KeyHash) -> String {
        format!("{}key:{}", self.prefix, to_hex(hash))
    }

    fn alias_key(&self, alias: &str) -> String {
        format!("{}alias:{alias}", self.prefix)
    }

    async fn run<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisFailure> {
        match tokio::time::timeout(self.op_timeout, operation).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(RedisFailure::Timeout(self.op_timeout)),
        }
    }

    /// Runs a write, once more if the first try found the connection
    /// broken: after a Redis restart the connection manager reconnects on
    /// the call that finds it dropped, so an admin call right then would
    /// fail for nothing.
    async fn run_write<T, F, Fut>(&self, mut operation: F) -> Result<T, RedisFailure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match self.run(operation()).await {
            Err(RedisFailure::Redis(error))
                if error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal() =>
            {
                self.run(operation()).await
            }
            other => other,
        }
    }

    /// The key with `hash`, or `None` when Redis has none.
    pub(crate) async fn get(&self, hash: &KeyHash) -> Result<Option<VirtualKey>, RedisFailure> {
        let mut conn = self.manager.clone();
        let command = redis::cmd("GET").arg(self.key_key(hash)).clone();
        let json: Option<String> = self.run(command.query_async(&mut conn)).await?;
        let Some(json) = json else {
            return Ok(None);
        };
        let record: Record =
            serde_json::from_str(&json).map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
        let key = record
            .into_key()
            .map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
        if !crate::keys::hash::ct_eq(&key.hash, hash) {
            return Err(RedisFailure::Corrupt(
                "a record is stored under another key's hash".into(),
            ));
        }
        Ok(Some(key))
    }

    /// The hash of the key with `alias`, if any.
    pub(crate) async fn alias(&self, alias: &str) -> Result<Option<KeyHash>, RedisFailure> {
        let mut conn = self.manager.clone();
        let command = redis::cmd("GET").arg(self.alias_key(alias)).clone();
        let hex: Option<String> = self.run(command.query_async(&mut conn)).await?;
        Ok(hex.and_then(|hex| crate::keys::hash::from_hex(&hex)))
    }

    /// Stores `key` and claims its alias, atomically.
    pub(crate) async fn put(&self, key: &VirtualKey) -> Result<Put, RedisFailure> {
        let json = serde_json::to_string(&Record::of(key))
            .map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
        let stored: i64 = self
            .run_write(|| {
                let mut invocation = self.put.prepare_invoke();
                invocation.key(self.key_key(&key.hash));
                if let Some(alias) = key.alias() {
                    invocation.key(self.alias_key(alias));
                }
                invocation.arg(&json).arg(to_hex(&key.hash));
                let mut conn = self.manager.clone();
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(if stored == 1 {
            Put::Stored
        } else {
            Put::AliasTaken
        })
    }

    /// Deletes `key` and its alias; whether Redis had it.
    pub(crate) async fn delete(&self, key: &VirtualKey) -> Result<bool, RedisFailure> {
        let deleted: i64 = self
            .run_write(|| {
                let mut invocation = self.delete.prepare_invoke();
                invocation.key(self.key_key(&key.hash));
                if let Some(alias) = key.alias() {
                    invocation.key(self.alias_key(alias));
                }
                invocation.arg(to_hex(&key.hash));
                let mut conn = self.manager.clone();
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(deleted > 0)
    }
}
