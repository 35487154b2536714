//! Managing keys: the operations behind the admin API — generate, info,
//! delete — and the lookups they share. Each merges this replica's copy
//! with Redis's (see [`super::sync`]).

use std::sync::Arc;

use tollgate_core::Failure;

use super::error::{alias_taken, not_found, store_failed, store_unavailable};
use super::lifecycle::audit;
use super::store::redis::{Patience, Put, RedisFailure};
use super::store::{Change, StoreError, Tombstone};
use super::sync::reconcile::{Local, reconcile};
use super::{GenerateRequest, Generated, KeySource, Keys, VirtualKey, generate};
use crate::key_format::{KeyHash, from_hex, sha256};

impl Keys {
    /// Makes a new key from a validated `/key/generate` request, at
    /// `now_ms` (unix ms).
    ///
    /// # Errors
    ///
    /// 400 when the alias is taken; 503 when Redis is away (Redis backend);
    /// 500 when the store fails.
    pub(crate) async fn generate(
        &self,
        request: GenerateRequest,
        now_ms: i64,
    ) -> Result<Generated, Failure> {
        let inner = &*self.inner;
        let _admin = inner.admin.lock().await;
        if let Some(alias) = &request.key_alias
            && self.alias_owner(alias).await?.is_some()
        {
            return Err(alias_taken(alias));
        }
        let text = generate::new_key_text(&inner.rng)?;
        let hash = sha256(text.expose().as_bytes());
        if let Some(alias) = &request.key_alias
            && self.read().alias_used(alias, &hash)
        {
            return Err(alias_taken(alias));
        }
        let alias = request.key_alias.clone();
        let mut key = VirtualKey::new(hash, alias, KeySource::Generated, now_ms);
        request.apply_to(&mut key, now_ms);
        let key = Arc::new(key);

        match &inner.redis {
            Some(redis) => {
                match redis.put(&key).await {
                    Ok(Put::Stored) => {}
                    Ok(Put::AliasTaken) => {
                        return Err(alias_taken(key.alias().unwrap_or_default()));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot store a generated virtual key in Redis");
                        return Err(store_unavailable());
                    }
                }
                self.keep(vec![Change::Put(key.clone())]).await;
            }
            None => {
                inner
                    .local
                    .insert(key.clone())
                    .await
                    .map_err(|error| match error {
                        StoreError::AliasTaken => alias_taken(key.alias().unwrap_or_default()),
                        error => store_failed(&error),
                    })?;
                self.write().apply(&Change::Put(key.clone()));
            }
        }
        audit("key.generate", &key, "");
        Ok(Generated {
            key: text,
            record: key,
        })
    }

    /// The key whose text or hex hash is `key_text_or_hash`, if there is
    /// one (expired keys included). With Redis, Redis is asked; if it is
    /// away, the local copy answers.
    pub(crate) async fn info(
        &self,
        key_text_or_hash: &str,
    ) -> Result<Option<Arc<VirtualKey>>, Failure> {
        for hash in candidates(key_text_or_hash) {
            let found = match self.find(&hash).await {
                Ok(found) => found,
                Err(error) => {
                    self.fell_back(&error);
                    self.local(&hash)
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The live key with this hash: from the local map for config keys and
    /// without Redis; with Redis, this replica's copy merged with Redis's
    /// (so a deletion made elsewhere a moment ago counts, and a key Redis
    /// lost is put back).
    async fn find(&self, hash: &KeyHash) -> Result<Option<Arc<VirtualKey>>, RedisFailure> {
        let local = self.read().local(hash);
        match (&self.inner.redis, local) {
            (_, Local::Live(key)) if key.source == KeySource::Config => Ok(Some(key)),
            (None, local) => Ok(match local {
                Local::Live(key) => Some(key),
                Local::Deleted(_) | Local::Unknown => None,
            }),
            (Some(redis), local) => {
                let remote = redis
                    .observe(&[*hash], Patience::Request)
                    .await?
                    .pop()
                    .unwrap_or_default();
                Ok(self.carry_out(reconcile(local, remote)).await.live())
            }
        }
    }

    fn local(&self, hash: &KeyHash) -> Option<Arc<VirtualKey>> {
        self.read().known.get(hash).cloned()
    }

    /// The live key with `alias`, if any: this replica's copy (checked
    /// against Redis for a generated key: it may have been deleted on
    /// another replica a moment ago), else Redis's alias.
    async fn alias_owner(&self, alias: &str) -> Result<Option<Arc<VirtualKey>>, Failure> {
        let unavailable = |error: RedisFailure| {
            tracing::warn!(%error, "cannot read a virtual key from Redis");
            store_unavailable()
        };
        let owner = self.read().alias_owner(alias).cloned();
        match (&self.inner.redis, owner) {
            (None, owner) => Ok(owner),
            (Some(_), Some(owner)) if owner.source == KeySource::Config => Ok(Some(owner)),
            (Some(_), Some(owner)) => match self.find(&owner.hash).await.map_err(unavailable)? {
                Some(live) => Ok(Some(live)),
                // Deleted meanwhile; another key may have the alias now.
                None => self.redis_alias_owner(alias).await.map_err(unavailable),
            },
            (Some(_), None) => self.redis_alias_owner(alias).await.map_err(unavailable),
        }
    }

    /// The live key Redis says has `alias`.
    async fn redis_alias_owner(
        &self,
        alias: &str,
    ) -> Result<Option<Arc<VirtualKey>>, RedisFailure> {
        let Some(redis) = &self.inner.redis else {
            return Ok(None);
        };
        match redis.alias(alias).await? {
            Some(hash) => self.find(&hash).await,
            None => Ok(None),
        }
    }

    /// The hash of the live key with `alias`, if any.
    ///
    /// # Errors
    ///
    /// 503 when Redis is away (Redis backend).
    pub(crate) async fn find_alias(&self, alias: &str) -> Result<Option<KeyHash>, Failure> {
        Ok(self.alias_owner(alias).await?.map(|key| key.hash))
    }

    /// Deletes the keys given by text or hex hash, at `now_ms` (unix ms);
    /// the deleted keys' names. All or nothing: every key is checked before
    /// any is deleted. Each leaves a tombstone (see [`super::sync`]).
    ///
    /// # Errors
    ///
    /// 404 naming the position of a key that does not exist; 400 naming the
    /// alias of a config key; 503 when Redis is away (Redis backend).
    pub(crate) async fn delete(
        &self,
        keys: &[String],
        now_ms: i64,
    ) -> Result<Vec<String>, Failure> {
        let inner = &*self.inner;
        let _admin = inner.admin.lock().await;
        let mut found: Vec<Arc<VirtualKey>> = Vec::new();
        for (index, text) in keys.iter().enumerate() {
            let mut key = None;
            for hash in candidates(text) {
                key = self.find(&hash).await.map_err(|error| {
                    tracing::warn!(%error, "cannot read a virtual key from Redis");
                    store_unavailable()
                })?;
                if key.is_some() {
                    break;
                }
            }
            let Some(key) = key else {
                return Err(
                    not_found(format!("keys[{index}] is not a known key")).with_param("keys")
                );
            };
            if key.source == KeySource::Config {
                return Err(generate::bad_request(
                    format!(
                        "{} is defined in the config file (tollgate.keys) and cannot be \
                         deleted through the API; remove it from the config",
                        key.name()
                    ),
                    Some("keys"),
                ));
            }
            if !found.iter().any(|seen| seen.hash == key.hash) {
                found.push(key);
            }
        }
        for key in &found {
            let tombstone = Tombstone::of(key, now_ms);
            if let Some(redis) = &inner.redis {
                redis
                    .bury(std::slice::from_ref(&tombstone), Patience::Request)
                    .await
                    .map_err(|error| {
                        tracing::warn!(%error, "cannot delete a virtual key in Redis");
                        store_unavailable()
                    })?;
            }
            let change = Change::Bury(tombstone);
            if let Err(error) = inner.local.apply(vec![change.clone()]).await {
                if inner.redis.is_none() {
                    return Err(store_failed(&error));
                }
                tracing::warn!(key = %key.name(), %error, "cannot keep the deletion of a virtual key in the local copy");
            }
            self.write().apply(&change);
            audit("key.delete", key, "");
        }
        Ok(found.iter().map(|key| key.name().to_string()).collect())
    }
}

/// The hashes `text` may stand for: itself as 64 hex digits (a `token`),
/// then the hash of the text (a key).
fn candidates(text: &str) -> Vec<KeyHash> {
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    from_hex(text)
        .into_iter()
        .chain(std::iter::once(sha256(text.as_bytes())))
        .collect()
}
