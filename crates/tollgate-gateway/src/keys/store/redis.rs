//! The Redis store: generated keys shared by every replica.
//!
//! Redis is a cache of the truth, not its only copy: every replica keeps
//! every key and tombstone in its own store too (see [`crate::keys::sync`]),
//! and puts them back when Redis comes back empty. The Redis keys, under
//! the configured prefix:
//!
//! - `{prefix}key:{hex hash}` → the key's [`Record`] as JSON (a string
//!   value, no TTL: expiry is checked against `expires_at_ms`, so a key
//!   stays visible to `/key/info` after it expires, and stays expired when
//!   it is put back);
//! - `{prefix}alias:{alias}` → the hex hash of the key with that alias,
//!   which makes aliases unique across replicas (`SET NX`-like, in a
//!   script);
//! - `{prefix}deleted:{hex hash}` → the [`Tombstone`] of a deleted key, as
//!   JSON, for good: a record is never written over a tombstone;
//! - `{prefix}keys:epoch` → a random id, written by the first replica that
//!   finds it missing: a missing or changed epoch is how a replica learns
//!   that Redis lost its data (restarted empty, flushed), as opposed to a
//!   key being deleted;
//! - `{prefix}keys:seq` and `{prefix}keys:changes`: a counter, and a sorted
//!   set of hex hashes scored by the counter's value at their last change,
//!   from which replicas read what changed since they last looked.
//!
//! Every write is one Lua script, so a record, its alias, its tombstone and
//! its place in the change set never disagree.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::{Record, Tombstone};
use crate::key_format::{KeyHash, ct_eq, from_hex, to_hex};
use crate::keys::key::VirtualKey;

/// How long one Redis operation may take before the gateway answers from
/// its local copy.
pub(crate) const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(100);

/// How long one round trip of the background sync may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

#[path = "redis_scripts.rs"]
mod scripts;

use scripts::{BURY, INDEX, PUT, REPLACE, RESTORE};

#[path = "redis_replace.rs"]
mod replace;

pub(crate) use replace::Replaced;

/// Redis keys per `SCAN` step.
const SCAN_COUNT: usize = 1000;

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

/// Why Redis did not answer, or answered something unreadable.
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

/// What [`RedisStore::restore`] did with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Restored {
    /// Redis has this tombstone for the key: it was deleted.
    Deleted(Tombstone),
    /// Redis had the record.
    Present,
    /// The record was written back, with its alias.
    Written,
    /// The record was written back, but another key holds its alias.
    AliasHeld,
}

/// How long a call may wait on Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Patience {
    /// On a request's path: the operation timeout, then the local copy
    /// answers.
    Request,
    /// The background sync: longer, it holds no request up.
    Sync,
}

/// What Redis holds for one hash.
#[derive(Debug, Default)]
pub(crate) struct Remote {
    /// The record, if Redis has it.
    pub(crate) record: Option<VirtualKey>,
    /// The tombstone, if Redis has one.
    pub(crate) tombstone: Option<Tombstone>,
}

/// One read of the change set: the epoch, and hashes that changed.
#[derive(Debug)]
pub(crate) struct Page {
    /// `{prefix}keys:epoch`; `None` when Redis does not have it (it lost
    /// its data, or no replica has written it yet).
    pub(crate) epoch: Option<String>,
    /// Hashes changed after the asked position, with their positions, in
    /// order.
    pub(crate) changes: Vec<(KeyHash, i64)>,
}

/// The operations on Redis.
pub(crate) struct RedisStore {
    manager: ConnectionManager,
    prefix: String,
    op_timeout: Duration,
    put: Script,
    restore: Script,
    bury: Script,
    index: Script,
    replace: Script,
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
            restore: Script::new(RESTORE),
            bury: Script::new(BURY),
            index: Script::new(INDEX),
            replace: Script::new(REPLACE),
        }
    }

    fn key_key(&self, hash: &KeyHash) -> String {
        format!("{}key:{}", self.prefix, to_hex(hash))
    }

    fn tombstone_key(&self, hash: &KeyHash) -> String {
        format!("{}deleted:{}", self.prefix, to_hex(hash))
    }

    fn alias_key(&self, alias: &str) -> String {
        format!("{}alias:{alias}", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}keys:epoch", self.prefix)
    }

    fn seq_key(&self) -> String {
        format!("{}keys:seq", self.prefix)
    }

    fn changes_key(&self) -> String {
        format!("{}keys:changes", self.prefix)
    }

    fn timeout(&self, patience: Patience) -> Duration {
        match patience {
            Patience::Request => self.op_timeout,
            Patience::Sync => SYNC_TIMEOUT,
        }
    }

    /// Runs `operation` within `timeout`, once more if the first try found
    /// the connection broken: after a Redis restart the connection manager
    /// reconnects on the call that finds it dropped, and that call would
    /// fail for nothing. Every operation here may run twice (writes are
    /// idempotent scripts).
    async fn run<T, F, Fut>(&self, timeout: Duration, operation: F) -> Result<T, RedisFailure>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        run_retrying(&self.manager, timeout, operation).await
    }

    /// What Redis holds for each of `hashes` (one `MGET`), in order.
    pub(crate) async fn observe(
        &self,
        hashes: &[KeyHash],
        patience: Patience,
    ) -> Result<Vec<Remote>, RedisFailure> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let mut command = redis::cmd("MGET");
        for hash in hashes {
            command
                .arg(self.key_key(hash))
                .arg(self.tombstone_key(hash));
        }
        let values: Vec<Option<String>> = self
            .run(self.timeout(patience), |mut conn| {
                let command = command.clone();
                async move { command.query_async(&mut conn).await }
            })
            .await?;
        if values.len() != hashes.len() * 2 {
            return Err(RedisFailure::Corrupt("MGET answered another count".into()));
        }
        hashes
            .iter()
            .zip(values.chunks_exact(2))
            .map(|(hash, pair)| {
                Ok(Remote {
                    record: pair[0]
                        .as_deref()
                        .map(|json| read_record(json, hash))
                        .transpose()?,
                    tombstone: pair[1]
                        .as_deref()
                        .map(|json| read_tombstone(json, hash))
                        .transpose()?,
                })
            })
            .collect()
    }

    /// The hash of the key with `alias`, if any.
    pub(crate) async fn alias(&self, alias: &str) -> Result<Option<KeyHash>, RedisFailure> {
        let command = redis::cmd("GET").arg(self.alias_key(alias)).clone();
        let hex: Option<String> = self
            .run(self.op_timeout, |mut conn| {
                let command = command.clone();
                async move { command.query_async(&mut conn).await }
            })
            .await?;
        Ok(hex.and_then(|hex| from_hex(&hex)))
    }

    /// Stores a new key and claims its alias, atomically.
    pub(crate) async fn put(&self, key: &VirtualKey) -> Result<Put, RedisFailure> {
        let json = serde_json::to_string(&Record::of(key))
            .map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
        let stored: i64 = self
            .run(self.op_timeout, |mut conn| {
                let mut invocation = self.put.prepare_invoke();
                invocation
                    .key(self.key_key(&key.hash))
                    .key(self.seq_key())
                    .key(self.changes_key());
                if let Some(alias) = key.alias() {
                    invocation.key(self.alias_key(alias));
                }
                invocation.arg(&json).arg(to_hex(&key.hash));
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(if stored == 1 {
            Put::Stored
        } else {
            Put::AliasTaken
        })
    }

    /// Puts back each of `keys` that Redis lost, unless Redis has its
    /// tombstone; one round trip, and safe to repeat.
    pub(crate) async fn restore(
        &self,
        keys: &[Arc<VirtualKey>],
        patience: Patience,
    ) -> Result<Vec<Restored>, RedisFailure> {
        let calls = keys
            .iter()
            .map(|key| {
                let json = serde_json::to_string(&Record::of(key))
                    .map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
                let keys = self.record_keys(&key.hash, key.alias());
                Ok((keys, [json, to_hex(&key.hash)]))
            })
            .collect::<Result<Vec<_>, RedisFailure>>()?;
        let answers = self
            .eval_all((RESTORE, &self.restore), &calls, patience)
            .await?;
        answers
            .into_iter()
            .zip(keys)
            .map(|(answer, key)| match answer {
                redis::Value::Int(1) => Ok(Restored::Present),
                redis::Value::Int(2) => Ok(Restored::Written),
                redis::Value::Int(3) => Ok(Restored::AliasHeld),
                redis::Value::BulkString(json) => {
                    let json = String::from_utf8(json)
                        .map_err(|_| RedisFailure::Corrupt("a tombstone is not UTF-8".into()))?;
                    read_tombstone(&json, &key.hash).map(Restored::Deleted)
                }
                other => Err(RedisFailure::Corrupt(format!(
                    "restoring a key answered {other:?}"
                ))),
            })
            .collect()
    }

    /// Records each deletion of `tombstones`; whether each changed Redis.
    /// One round trip, and safe to repeat.
    pub(crate) async fn bury(
        &self,
        tombstones: &[Tombstone],
        patience: Patience,
    ) -> Result<Vec<bool>, RedisFailure> {
        let calls: Vec<_> = tombstones
            .iter()
            .map(|tombstone| {
                let keys = self.record_keys(&tombstone.hash, tombstone.alias.as_deref());
                (keys, [tombstone.to_json(), to_hex(&tombstone.hash)])
            })
            .collect();
        let answers = self.eval_all((BURY, &self.bury), &calls, patience).await?;
        Ok(answers
            .into_iter()
            .map(|answer| answer == redis::Value::Int(1))
            .collect())
    }

    /// Runs `script` once per call in one pipeline, loading it first (a
    /// Redis that restarted has no scripts): the answers, in order.
    async fn eval_all(
        &self,
        (text, script): (&str, &Script),
        calls: &[(Vec<String>, [String; 2])],
        patience: Patience,
    ) -> Result<Vec<redis::Value>, RedisFailure> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(text).ignore();
        for (keys, args) in calls {
            pipe.cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(args.as_slice());
        }
        let answers: Vec<redis::Value> = self
            .run(self.timeout(patience), |mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        if answers.len() != calls.len() {
            return Err(RedisFailure::Corrupt(
                "a script pipeline answered another count".into(),
            ));
        }
        Ok(answers)
    }

    /// KEYS of [`RESTORE`] and [`BURY`]: record, tombstone, seq, changes,
    /// (alias, if any).
    fn record_keys(&self, hash: &KeyHash, alias: Option<&str>) -> Vec<String> {
        let mut keys = vec![
            self.key_key(hash),
            self.tombstone_key(hash),
            self.seq_key(),
            self.changes_key(),
        ];
        keys.extend(alias.map(|alias| self.alias_key(alias)));
        keys
    }

    /// The epoch, and up to `limit` hashes changed after position `since`
    /// (one round trip).
    pub(crate) async fn changes(&self, since: i64, limit: usize) -> Result<Page, RedisFailure> {
        let mut pipe = redis::pipe();
        pipe.get(self.epoch_key())
            .cmd("ZRANGEBYSCORE")
            .arg(self.changes_key())
            .arg(format!("({since}"))
            .arg("+inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let (epoch, changed): (Option<String>, Vec<(String, i64)>) = self
            .run(SYNC_TIMEOUT, |mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        let changes = changed
            .into_iter()
            .map(|(hex, position)| {
                from_hex(&hex)
                    .map(|hash| (hash, position))
                    .ok_or_else(|| RedisFailure::Corrupt("a changed hash is not hex".into()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page { epoch, changes })
    }

    /// Puts every record in Redis into the change set, where a version
    /// before it left them out (one `SCAN` of the key space: call it only
    /// on a Redis without an epoch). How many were added.
    pub(crate) async fn index_records(&self) -> Result<usize, RedisFailure> {
        let prefix = format!("{}key:", self.prefix);
        let pattern = format!("{prefix}*");
        let (mut cursor, mut added) = (0u64, 0);
        // SCAN ends when its cursor comes back to 0.
        loop {
            let step = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .clone();
            let (next, names): (u64, Vec<String>) = self
                .run(SYNC_TIMEOUT, |mut conn| {
                    let step = step.clone();
                    async move { step.query_async(&mut conn).await }
                })
                .await?;
            let hexes: Vec<&str> = names
                .iter()
                .filter_map(|name| name.strip_prefix(&prefix))
                .filter(|hex| from_hex(hex).is_some())
                .collect();
            if !hexes.is_empty() {
                let count: usize = self
                    .run(SYNC_TIMEOUT, |mut conn| {
                        let mut invocation = self.index.prepare_invoke();
                        invocation
                            .key(self.seq_key())
                            .key(self.changes_key())
                            .arg(&hexes);
                        async move { invocation.invoke_async(&mut conn).await }
                    })
                    .await?;
                added += count;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(added);
            }
        }
    }

    /// Writes `epoch` unless Redis has one; the epoch in force.
    pub(crate) async fn seed_epoch(&self, epoch: &str) -> Result<String, RedisFailure> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.epoch_key())
            .arg(epoch)
            .arg("NX")
            .ignore()
            .get(self.epoch_key());
        let (in_force,): (Option<String>,) = self
            .run(SYNC_TIMEOUT, |mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        // Only a flush between the two commands leaves none: go with ours.
        Ok(in_force.unwrap_or_else(|| epoch.to_owned()))
    }
}

/// Runs `operation` on `manager` within `timeout`, once more if the first
/// try found the connection broken (see [`RedisStore::run`]): the teams'
/// store runs its calls the same way.
pub(crate) async fn run_retrying<T, F, Fut>(
    manager: &ConnectionManager,
    timeout: Duration,
    mut operation: F,
) -> Result<T, RedisFailure>
where
    F: FnMut(ConnectionManager) -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    match run_within(timeout, operation(manager.clone())).await {
        Err(RedisFailure::Redis(error))
            if error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal() =>
        {
            run_within(timeout, operation(manager.clone())).await
        }
        other => other,
    }
}

async fn run_within<T>(
    timeout: Duration,
    operation: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisFailure> {
    match tokio::time::timeout(timeout, operation).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(RedisFailure::Timeout(timeout)),
    }
}

/// A tombstone read from Redis, checked to be the one of `hash`.
fn read_tombstone(json: &str, hash: &KeyHash) -> Result<Tombstone, RedisFailure> {
    let tombstone = Tombstone::from_json(json).map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
    if !ct_eq(&tombstone.hash, hash) {
        return Err(RedisFailure::Corrupt(
            "a tombstone is stored under another key's hash".into(),
        ));
    }
    Ok(tombstone)
}

/// A record read from Redis, checked to be the one of `hash`.
fn read_record(json: &str, hash: &KeyHash) -> Result<VirtualKey, RedisFailure> {
    let record: Record =
        serde_json::from_str(json).map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
    let key = record
        .into_key()
        .map_err(|e| RedisFailure::Corrupt(e.to_string()))?;
    if !ct_eq(&key.hash, hash) {
        return Err(RedisFailure::Corrupt(
            "a record is stored under another key's hash".into(),
        ));
    }
    Ok(key)
}
