//! Virtual keys: API keys the gateway hands out, each with its own model
//! list, rate limits and budget, in the shape of LiteLLM's admin API
//! (`POST /key/generate`, `GET /key/info`, `GET /key/list`,
//! `POST /key/update`, `/key/regenerate`, `/key/block`, `/key/unblock`,
//! `/key/delete`).
//!
//! # The model
//!
//! A [`VirtualKey`] is the stored record of one key: the SHA-256 of its
//! text, an optional alias, the model groups it may use (empty: all),
//! `rpm_limit`, `tpm_limit`, `max_parallel_requests`, `max_budget` (exact,
//! in pico-dollars) per `budget_duration`, an expiry, metadata, and where
//! it came from ([`KeySource`]: the config file or `/key/generate`). Its
//! [`name`](VirtualKey::name) — the alias, else `key-` and the first 12 hex
//! digits of the hash — is the only thing about a key that may appear in
//! logs, metrics, the ledger and errors.
//!
//! # Keys and hashing
//!
//! Generated keys are `sk-` and 43 characters of base64url: 32 bytes from
//! the operating system's CSPRNG (`ring::rand::SystemRandom`). Only the
//! SHA-256 of a key's text is ever kept; the text exists in the one
//! response of `/key/generate` and nowhere else (not in a store, a log, an
//! error or a `Debug` output). With 256 random bits there is nothing to
//! brute-force, so an unsalted fast hash is enough, and a request costs one
//! digest. Lookups go by hash, so the table lookup reveals nothing about
//! the text; the master key is compared as a hash, in constant time
//! ([`ct_eq`](crate::key_format::ct_eq)).
//!
//! Clients send a key as `Authorization: Bearer <key>`, or in `x-api-key`
//! (Anthropic-style clients) or `api-key` (Azure-style clients).
//! [`Keys::authenticate`] answers [`Principal::Master`] for the master key,
//! [`Principal::Virtual`] for a known, unexpired key, and
//! [`Principal::Open`] when nothing is configured (no master key, no
//! `tollgate.keys`): library and demo use, where the gateway is open.
//!
//! # Where keys are stored
//!
//! Config keys (`tollgate.keys`) come from the config file at every start
//! and are never stored; they cannot be deleted through the API. Generated
//! keys go to the [`KeyBackend`]:
//!
//! - [`KeyBackend::Memory`]: in the process; gone on restart (tests, library
//!   use).
//! - [`KeyBackend::Sqlite`]: the table `virtual_keys` in a SQLite file
//!   (the spend ledger's, by default), on this store's own connection in
//!   WAL mode; the single-process default. Every key is loaded at start, so
//!   authentication never reads the file. See [`store::sqlite`] for the
//!   schema.
//! - [`KeyBackend::Redis`]: several replicas share generated keys through
//!   Redis (see [`store::redis`] for its keys), and every replica keeps a
//!   full copy of every key and deletion (in memory, or in a SQLite mirror
//!   with [`RedisBackend::mirror`]).
//!
//! # Keys across replicas (Redis backend)
//!
//! Redis is a cache of the truth, never its only copy (the design is in
//! [`sync`]): a key Redis does not have is never taken as deleted — the
//! replicas put it back when Redis comes back empty — and a deletion is a
//! tombstone kept in Redis and in every replica's store, which no copy of
//! the key found later can outvote. A background task on each replica
//! reads Redis's changes every [`sync::SYNC_EVERY`] and notices, by an
//! epoch id, when Redis lost its data.
//!
//! Each replica answers from its map of hash → key, behind a `RwLock` that
//! is never held across an `.await`. A generated key is checked against
//! Redis on every use (one `MGET` of its record and tombstone, within the
//! operation timeout; the rate limits make a round trip per request too),
//! so that a change made on any replica — `/key/update`, `/key/block`, a
//! new secret from `/key/regenerate`, `/key/delete` — holds on every
//! replica at once. A key-shaped text not in the map is looked up the same
//! way, and a "no such key" is trusted for 1 s (at most 10,000 such answers
//! are remembered); anything else unknown is refused locally. Config keys
//! never wait on Redis.
//!
//! # Fail-open when Redis is away
//!
//! When Redis errs or does not answer within the operation timeout (100 ms
//! by default), a replica answers from its copy, without asking Redis
//! again for 1 s: keys it knows keep working, keys it never saw are
//! refused. Each such answer (and each
//! failed sync round) calls the `on_fallback` callback (for a metric) and
//! counts (`Keys::fallbacks` in tests); a warning is logged at most once per
//! 10 s. Every admin change (generate, update, regenerate, block, delete)
//! needs Redis, and fails with a 503 while it is away: a change made on one
//! replica only would split the replicas' view.

pub(crate) mod admin;
mod admin_list;

mod cache;
mod error;
pub(crate) mod generate;
pub(crate) mod key;
mod lifecycle;
mod manage;
pub(crate) mod spend;
pub(crate) mod store;
pub(crate) mod sync;
pub(crate) mod view;

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use ring::rand::SystemRandom;
use tollgate_core::Failure;

use crate::config::ConfiguredKey;
use crate::key_format::{KeyHash, ct_eq, sha256};
use crate::shared::Fallbacks;
use cache::{Cache, fresh};
pub(crate) use error::KeysError;
use error::{blocked_key, expired_key, incorrect_key, missing_key, not_found};
pub(crate) use generate::{GenerateRequest, KeyText};
pub(crate) use key::{KeySource, VirtualKey};
pub(crate) use lifecycle::ListFilter;
use store::LocalStore;
pub(crate) use store::redis::RedisBackend;
use store::redis::{Patience, RedisStore};
use store::sqlite::SqliteStore;
use sync::SyncState;
use sync::reconcile::{Local, reconcile};

/// How long Redis's "no such key" is trusted.
pub(crate) const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// The most "no such key" answers remembered at once.
pub(crate) const NEGATIVE_CAPACITY: usize = 10_000;

/// Who a request comes from.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// The master key: everything, the admin API included.
    Master,
    /// Nothing is configured (no master key, no config keys): the gateway
    /// is open, as a library or a demo.
    Open,
    /// A known, unexpired virtual key.
    Virtual(Arc<VirtualKey>),
}

impl Principal {
    /// Whether this is the master key (the admin API needs it).
    #[cfg(test)]
    pub(crate) fn is_master(&self) -> bool {
        matches!(self, Principal::Master)
    }

    /// The virtual key, if the request came with one.
    pub(crate) fn virtual_key(&self) -> Option<&Arc<VirtualKey>> {
        match self {
            Principal::Virtual(key) => Some(key),
            Principal::Master | Principal::Open => None,
        }
    }

    /// Whether the principal may use the model group `model`.
    pub(crate) fn allows_model(&self, model: &str) -> bool {
        match self {
            Principal::Virtual(key) => key.allows_model(model),
            Principal::Master | Principal::Open => true,
        }
    }
}

/// Where generated keys are kept (see the module docs).
#[derive(Debug)]
pub(crate) enum KeyBackend {
    /// In this process only.
    Memory,
    /// The table `virtual_keys` in this SQLite file.
    Sqlite(PathBuf),
    /// Shared through Redis, with a local copy.
    Redis(RedisBackend),
}

/// A freshly generated key: its text (for the one response that shows it)
/// and its record.
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    /// The key text; `Debug` shows `<redacted>`.
    pub(crate) key: KeyText,
    /// What was stored.
    pub(crate) record: Arc<VirtualKey>,
}

/// The virtual key registry the gateway asks: authentication, and the
/// admin operations. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub(crate) struct Keys {
    inner: Arc<Inner>,
}

struct Inner {
    /// SHA-256 of the master key.
    master: Option<KeyHash>,
    /// Nothing configured: every request is [`Principal::Open`].
    open: bool,
    cache: RwLock<Cache>,
    local: LocalStore,
    redis: Option<RedisStore>,
    rng: SystemRandom,
    /// Serialises generate and delete (rare), so an alias check and the
    /// write that follows it cannot interleave with another's.
    admin: tokio::sync::Mutex<()>,
    fallbacks: Fallbacks,
    /// Where the sync with Redis stands (Redis backend).
    sync: tokio::sync::Mutex<SyncState>,
    /// Until when (unix ms) a generated key is taken from the local copy
    /// without asking Redis, which just failed to answer.
    redis_down_until_ms: AtomicI64,
}

/// How long (ms), after Redis failed to answer a lookup, keys are taken
/// from the local copy alone: a Redis that is away costs one timeout per
/// second, not one per request.
const REDIS_DOWN_FOR_MS: i64 = 1000;

/// What the local map says about a hash.
enum Lookup {
    /// Known and current.
    Found(Arc<VirtualKey>),
    /// Unknown, and not worth asking Redis.
    Unknown,
    /// Ask Redis; the local copy, if any, answers if Redis cannot.
    AskRedis(Local),
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known = self.read().known.len();
        f.debug_struct("Keys")
            .field("open", &self.inner.open)
            .field("master_key", &self.inner.master.is_some())
            .field("known", &known)
            .field("redis", &self.inner.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// The registry: the master key (its text; only its hash is kept),
    /// the config's keys, and where generated keys live.
    ///
    /// Blocking (opens and reads the SQLite file): call it at start-up. It
    /// sends nothing to Redis: keys are read from Redis when first used.
    ///
    /// # Errors
    ///
    /// An empty master key; config keys that are empty, the master key, or
    /// the same key or alias twice; a budget finer than a pico-dollar; a
    /// SQLite file that cannot be opened or read; a generated key in it
    /// with the alias of a config key.
    pub(crate) fn new(
        master_key: Option<String>,
        configured: &[ConfiguredKey],
        backend: KeyBackend,
    ) -> Result<Keys, KeysError> {
        let master = match master_key {
            Some(text) if text.is_empty() => return Err(KeysError::EmptyMasterKey),
            Some(text) => Some(sha256(text.as_bytes())),
            None => None,
        };
        let started_ms = unix_now_ms();
        let mut cache = Cache::default();
        for (index, entry) in configured.iter().enumerate() {
            let key = VirtualKey::configured(index, entry, started_ms)?;
            let alias = entry.key_alias.clone();
            if master.as_ref().is_some_and(|m| ct_eq(m, &key.hash)) {
                return Err(KeysError::MasterKeyReused { index, alias });
            }
            if let Some(other) = cache.known.get(&key.hash) {
                return Err(KeysError::DuplicateKey {
                    index,
                    alias,
                    other: other.name().to_string(),
                });
            }
            if cache.alias_owner(&alias).is_some() {
                return Err(KeysError::DuplicateAlias { index, alias });
            }
            cache.known.insert(key.hash, Arc::new(key));
        }

        let (local, redis, on_fallback, sqlite_path) = match backend {
            KeyBackend::Memory => (LocalStore::Memory(Default::default()), None, None, None),
            KeyBackend::Sqlite(path) => {
                let store = SqliteStore::open(&path)?;
                (LocalStore::Sqlite(Arc::new(store)), None, None, Some(path))
            }
            KeyBackend::Redis(backend) => {
                let local = match &backend.mirror {
                    Some(path) => LocalStore::Sqlite(Arc::new(SqliteStore::open_mirror(path)?)),
                    None => LocalStore::Memory(Default::default()),
                };
                let redis = RedisStore::new(&backend);
                (local, Some(redis), backend.on_fallback, None)
            }
        };

        let loaded = local.load()?;
        for tombstone in loaded.tombstones {
            cache.buried.insert(tombstone.hash, tombstone);
        }
        for stored in loaded.keys {
            if let Some(config) = cache.known.get(&stored.hash) {
                tracing::warn!(
                    key = %config.name(),
                    "a stored generated key is also in tollgate.keys; the config's settings apply"
                );
                continue;
            }
            if let Some(alias) = stored.alias()
                && let Some(owner) = cache.alias_owner(alias)
            {
                match &sqlite_path {
                    Some(path) if owner.source == KeySource::Config => {
                        return Err(KeysError::AliasClash {
                            alias: alias.to_owned(),
                            path: path.clone(),
                            hash: crate::key_format::to_hex(&stored.hash),
                        });
                    }
                    // A mirror row: the config key keeps its alias.
                    _ => continue,
                }
            }
            cache.known.insert(stored.hash, Arc::new(stored));
        }

        // Open (no key asked for) only when there is no key at all: a
        // gateway that once made keys does not turn them off because its
        // master key was dropped from the config — its keys still work and
        // the admin endpoints are closed.
        let open = master.is_none() && cache.known.is_empty();
        if master.is_none() && !cache.known.is_empty() {
            tracing::warn!(
                keys = cache.known.len(),
                "virtual keys are configured or stored but no master key is set: \
                 every request needs a key, and the admin endpoints are closed"
            );
        }
        Ok(Keys {
            inner: Arc::new(Inner {
                master,
                open,
                cache: RwLock::new(cache),
                local,
                redis,
                rng: SystemRandom::new(),
                admin: tokio::sync::Mutex::new(()),
                fallbacks: Fallbacks::new("the virtual keys", "answering from the local copy")
                    .on_fallback(on_fallback),
                sync: tokio::sync::Mutex::new(SyncState::default()),
                redis_down_until_ms: AtomicI64::new(i64::MIN),
            }),
        })
    }

    /// The keys known here that have a budget (config keys and, without
    /// Redis, every generated one).
    pub(crate) fn with_budgets(&self) -> Vec<Arc<VirtualKey>> {
        self.read()
            .known
            .values()
            .filter(|key| key.max_budget_picos.is_some())
            .cloned()
            .collect()
    }

    /// Whether the gateway is open (no master key, no config keys).
    pub(crate) fn is_open(&self) -> bool {
        self.inner.open
    }

    /// How many answers came from the local copy because Redis failed.
    #[cfg(test)]
    pub(crate) fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.count()
    }

    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        self.inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.inner
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Who sent the request with these headers, at `now_ms` (unix ms).
    ///
    /// # Errors
    ///
    /// A 401 ([`ErrorClass::Auth`](tollgate_core::ErrorClass::Auth)) when no key was sent, the key is
    /// unknown, or it has expired. No message contains the key, or any
    /// part of it.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        now_ms: i64,
    ) -> Result<Principal, Failure> {
        if self.inner.open {
            return Ok(Principal::Open);
        }
        let Some(text) = presented_key(headers) else {
            return Err(missing_key());
        };
        let hash = sha256(text.as_bytes());
        if self.inner.master.as_ref().is_some_and(|m| ct_eq(m, &hash)) {
            return Ok(Principal::Master);
        }
        let key = match self.lookup(&hash, text, now_ms) {
            Lookup::Found(key) => Some(key),
            Lookup::Unknown => None,
            // Boxed: the Redis round trip's future is large, and inline it
            // would set the size of every request's handler future (moved
            // whole several times per request); a master key never gets here.
            Lookup::AskRedis(local) => Box::pin(self.ask_redis(&hash, local, now_ms)).await,
        };
        let Some(key) = key else {
            return Err(incorrect_key());
        };
        if key.is_expired(now_ms) {
            return Err(expired_key(&key));
        }
        if key.blocked {
            return Err(blocked_key(&key));
        }
        Ok(Principal::Virtual(key))
    }

    fn lookup(&self, hash: &KeyHash, text: &str, now_ms: i64) -> Lookup {
        let cache = self.read();
        let redis = self.inner.redis.is_some();
        match cache.known.get(hash) {
            // Found by hash; compared again in constant time for good measure.
            Some(key) if ct_eq(&key.hash, hash) => {
                // A generated key is checked against Redis on every use, so
                // that an update, a block, a new secret or a deletion made
                // on another replica counts at once here (one MGET, within
                // the operation timeout) — but not while Redis is away.
                let down = now_ms < self.inner.redis_down_until_ms.load(Ordering::Relaxed);
                if redis && key.source == KeySource::Generated && !down {
                    Lookup::AskRedis(Local::Live(key.clone()))
                } else {
                    Lookup::Found(key.clone())
                }
            }
            _ if !redis || !generate::looks_generated(text) => Lookup::Unknown,
            // Deleted: for good.
            _ if cache.buried.contains_key(hash) => Lookup::Unknown,
            _ => match cache.missing.get(hash) {
                Some(at) if fresh(now_ms, *at, NEGATIVE_TTL) => Lookup::Unknown,
                _ => Lookup::AskRedis(Local::Unknown),
            },
        }
    }

    /// Reads the key from Redis and merges it with `local` (this replica's
    /// copy); on a Redis failure, the local copy answers.
    async fn ask_redis(
        &self,
        hash: &KeyHash,
        local: Local,
        now_ms: i64,
    ) -> Option<Arc<VirtualKey>> {
        let redis = self.inner.redis.as_ref()?;
        let remote = match redis.observe(&[*hash], Patience::Request).await {
            Ok(mut remotes) => remotes.pop().unwrap_or_default(),
            Err(error) => {
                self.fell_back(&error);
                let until = now_ms.saturating_add(REDIS_DOWN_FOR_MS);
                self.inner
                    .redis_down_until_ms
                    .store(until, Ordering::Relaxed);
                return match local {
                    Local::Live(key) => Some(key),
                    Local::Deleted(_) | Local::Unknown => None,
                };
            }
        };
        let plan = reconcile(local, remote);
        if plan.verdict == sync::reconcile::Verdict::Unknown {
            self.write().remember_missing(*hash, now_ms);
        }
        self.carry_out(plan).await.live()
    }

    fn fell_back(&self, why: &dyn fmt::Display) {
        self.inner.fallbacks.fell_back(why);
    }
}

/// The key a request carries: `Authorization: Bearer <key>`, else
/// `x-api-key`, else `api-key`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, key) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        })
        .filter(|key| !key.is_empty());
    bearer.or_else(|| {
        ["x-api-key", "api-key"].into_iter().find_map(|name| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|key| !key.is_empty())
        })
    })
}

fn unix_now_ms() -> i64 {
    tollgate_core::time::unix_ms(std::time::SystemTime::now())
}
