//! A key's life after `/key/generate`: its settings changed
//! (`/key/update`), blocked and unblocked, given a new secret
//! (`/key/regenerate`), and listed (`/key/list`).
//!
//! Each change replaces the key's record as one write — one Lua script in
//! Redis, one transaction in SQLite — under the admin lock, so an alias
//! check and the write after it cannot interleave with another change.
//! Since every replica checks a generated key against Redis on each use
//! (see the module docs), a change holds on every replica at once: a
//! regenerated key's old secret, or a blocked key, is refused by the next
//! request anywhere.

use std::sync::Arc;

use tollgate_core::Failure;

use super::error::{alias_taken, config_key, not_found, store_failed, store_unavailable};
use super::store::redis::Replaced;
use super::store::{Change, Tombstone};
use super::{GenerateRequest, Generated, KeySource, Keys, VirtualKey, generate};
use crate::key_format::{sha256, to_hex};

/// Logs an admin change to a key: who made it (the master key: the only
/// principal the admin API serves), what, and to which key — by its name
/// and the first 12 hex digits of its hash, never its secret.
pub(super) fn audit(action: &'static str, key: &VirtualKey, changed: &str) {
    tracing::info!(
        target: "tollgate::audit",
        actor = "master_key",
        action,
        key = %key.name(),
        token = %&to_hex(&key.hash)[..12],
        changed,
        "virtual key changed"
    );
}

/// The names of the settings a change gives, for the audit log (never
/// their values: metadata may hold anything).
fn changed_fields(change: &GenerateRequest) -> String {
    generate::given_names([
        ("key_alias", change.key_alias.is_some()),
        ("models", change.models.is_some()),
        ("rpm_limit", change.rpm_limit.is_some()),
        ("tpm_limit", change.tpm_limit.is_some()),
        (
            "max_parallel_requests",
            change.max_parallel_requests.is_some(),
        ),
        ("max_budget", change.max_budget_picos.is_some()),
        ("budget_duration", change.budget_duration.is_some()),
        ("duration", change.duration.is_some()),
        ("metadata", change.metadata.is_some()),
        ("aliases", change.aliases.is_some()),
        ("team_id", change.team_id.is_some()),
        ("user_id", change.user_id.is_some()),
        ("blocked", change.blocked.is_some()),
    ])
}

/// Which keys `/key/list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListFilter {
    pub(crate) team_id: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) key_alias: Option<String>,
    /// Hex hash.
    pub(crate) key_hash: Option<String>,
}

impl ListFilter {
    fn admits(&self, key: &VirtualKey) -> bool {
        let same = |wanted: &Option<String>, have: Option<&str>| {
            wanted.as_deref().is_none_or(|wanted| have == Some(wanted))
        };
        same(&self.team_id, key.team_id.as_deref())
            && same(&self.user_id, key.user_id.as_deref())
            && same(&self.key_alias, key.alias())
            && self
                .key_hash
                .as_deref()
                .is_none_or(|hex| hex.eq_ignore_ascii_case(&to_hex(&key.hash)))
    }
}

impl Keys {
    /// Changes the settings `change` gives of the generated key
    /// `target` (its text or hex hash), at `now_ms` (unix ms).
    ///
    /// # Errors
    ///
    /// 404 for no such key; 400 for a config key or an alias in use; 503
    /// when Redis is away (Redis backend); 500 when the store fails.
    pub(crate) async fn update(
        &self,
        target: &str,
        change: GenerateRequest,
        now_ms: i64,
    ) -> Result<Arc<VirtualKey>, Failure> {
        let _admin = self.inner.admin.lock().await;
        let old = self.changeable(target, "updated").await?;
        let changed = changed_fields(&change);
        let mut new = (*old).clone();
        change.apply_to(&mut new, now_ms);
        new.updated_at_ms = Some(now_ms);
        let new = Arc::new(new);
        self.replace(&old, new.clone(), None).await?;
        audit("key.update", &new, &changed);
        Ok(new)
    }

    /// Blocks (or unblocks) the generated key `target`, at `now_ms`.
    ///
    /// # Errors
    ///
    /// As [`update`](Self::update).
    pub(crate) async fn set_blocked(
        &self,
        target: &str,
        blocked: bool,
        now_ms: i64,
    ) -> Result<Arc<VirtualKey>, Failure> {
        let change = GenerateRequest {
            blocked: Some(blocked),
            ..GenerateRequest::default()
        };
        let what = if blocked { "blocked" } else { "unblocked" };
        let _admin = self.inner.admin.lock().await;
        let old = self.changeable(target, what).await?;
        let mut new = (*old).clone();
        change.apply_to(&mut new, now_ms);
        new.updated_at_ms = Some(now_ms);
        let new = Arc::new(new);
        self.replace(&old, new.clone(), None).await?;
        audit(
            if blocked { "key.block" } else { "key.unblock" },
            &new,
            "blocked",
        );
        Ok(new)
    }

    /// Gives the generated key `target` a new secret, keeping its name,
    /// settings and spend (and changing those `change` gives); the old
    /// secret is refused from now on. At `now_ms` (unix ms).
    ///
    /// # Errors
    ///
    /// As [`update`](Self::update).
    pub(crate) async fn regenerate(
        &self,
        target: &str,
        change: GenerateRequest,
        now_ms: i64,
    ) -> Result<Generated, Failure> {
        let _admin = self.inner.admin.lock().await;
        let old = self.changeable(target, "regenerated").await?;
        let changed = changed_fields(&change);
        let text = generate::new_key_text(&self.inner.rng)?;
        let mut new = old.rehashed(sha256(text.expose().as_bytes()));
        change.apply_to(&mut new, now_ms);
        new.updated_at_ms = Some(now_ms);
        let new = Arc::new(new);
        let tombstone = Tombstone::of(&old, now_ms);
        self.replace(&old, new.clone(), Some(tombstone)).await?;
        audit("key.regenerate", &new, &changed);
        Ok(Generated {
            key: text,
            record: new,
        })
    }

    /// Every key this replica knows that `filter` admits, newest first
    /// (config keys included); with Redis, after a sync round, so that
    /// changes made on other replicas a moment ago are in.
    pub(crate) async fn list(&self, filter: &ListFilter) -> Vec<Arc<VirtualKey>> {
        if let Err(error) = self.sync().await {
            self.fell_back(&error);
        }
        let mut keys: Vec<Arc<VirtualKey>> = self
            .read()
            .known
            .values()
            .filter(|key| filter.admits(key))
            .cloned()
            .collect();
        keys.sort_by(|a, b| {
            b.created_at_ms
                .cmp(&a.created_at_ms)
                .then_with(|| a.hash.cmp(&b.hash))
        });
        keys
    }

    /// The live key this replica knows by `name` (its first alias, else
    /// `key-` and a hash prefix), if any.
    pub(crate) fn named(&self, name: &str) -> Option<Arc<VirtualKey>> {
        self.read()
            .known
            .values()
            .find(|key| *key.name() == *name)
            .cloned()
    }

    /// The live generated key `target` names (text or hex hash).
    async fn changeable(&self, target: &str, what: &str) -> Result<Arc<VirtualKey>, Failure> {
        let key = self
            .info(target)
            .await?
            .ok_or_else(|| not_found("no such key".to_owned()).with_param("key"))?;
        if key.source == KeySource::Config {
            return Err(config_key(&key, what));
        }
        Ok(key)
    }

    /// Writes `new` in place of `old` — with `tombstone`, under a new
    /// hash, `old`'s secret buried — in Redis first (when there is one),
    /// then this replica's copy.
    async fn replace(
        &self,
        old: &Arc<VirtualKey>,
        new: Arc<VirtualKey>,
        tombstone: Option<Tombstone>,
    ) -> Result<(), Failure> {
        let inner = &*self.inner;
        if let Some(alias) = new.alias()
            && self.read().alias_used(alias, &old.hash)
        {
            return Err(alias_taken(alias));
        }
        let mut changes: Vec<Change> = tombstone.iter().cloned().map(Change::Bury).collect();
        changes.push(Change::Put(new.clone()));
        match &inner.redis {
            Some(redis) => {
                match redis.replace(old, &new, tombstone.as_ref()).await {
                    Ok(Replaced::Done) => {}
                    Ok(Replaced::AliasTaken) => {
                        return Err(alias_taken(new.alias().unwrap_or_default()));
                    }
                    Ok(Replaced::Deleted) => {
                        return Err(not_found("no such key".to_owned()).with_param("key"));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot change a virtual key in Redis");
                        return Err(store_unavailable());
                    }
                }
                self.keep(changes).await;
            }
            None => {
                inner
                    .local
                    .apply(changes.clone())
                    .await
                    .map_err(|error| store_failed(&error))?;
                let mut cache = self.write();
                for change in &changes {
                    cache.apply(change);
                }
            }
        }
        Ok(())
    }
}
