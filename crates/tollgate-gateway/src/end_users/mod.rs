//! End users: the people or tenants of a client application, named by a
//! request's `user` field (Anthropic's `metadata.user_id`, the Responses
//! API's `user`), limited and budgeted apart from the key that sends their
//! requests — LiteLLM's "customers" (`/customer/*`, `/end_user/*`).
//!
//! # The model
//!
//! Any `user` value counts: an end user needs no registration for the
//! ledger to record their spend (the `end_user` column) or for
//! `litellm_settings.max_end_user_budget` to apply to them (a budget for
//! the end user's lifetime, as LiteLLM applies it). Registering one with
//! `POST /customer/new` gives them their own `rpm_limit`, `tpm_limit`,
//! `max_parallel_requests`, `max_budget` per `budget_duration` (replacing
//! the default budget), an `alias`, and `blocked`.
//!
//! A request for an end user counts against their limits beside its key's
//! (`tollgate_limits::SharedLimits`, under the name `end_user:<id>`): the
//! stricter wins, and a refusal gives back what the key had reserved. A
//! blocked end user is refused with a 403 before anything is counted.
//!
//! # Where they are kept
//!
//! In this process's map, written through to the table `end_users` of the
//! spend ledger's file (so they survive restarts), and with Redis to the
//! hash `tollgate:end_users` that every replica shares (see [`store`]).
//! With Redis, each request for an end user reads their row from Redis
//! (one `HGET` within the operation timeout), so that a block or a new
//! limit made on any replica holds on every replica at the next request;
//! when Redis fails or is slow, the local copy answers and Redis is not
//! asked again for 1 s. Admin changes need Redis when it is configured
//! (a 503 while it is away), as key changes do. Every copy carries
//! `updated_at_ms`, and the newer wins; a deletion leaves a tombstone, so
//! a stale copy cannot bring a deleted end user back.
//!
//! Admin changes are logged under `tollgate::audit` (action, end user,
//! the names of the fields changed).

pub(crate) mod admin;
mod record;
mod spend;
mod store;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::StatusCode;
use tollgate_core::{ErrorClass, Failure};
use tollgate_limits::{Budget, KeyLimits, SharedLimits};

pub(crate) use record::{Change, EndUser};
use store::{Redis, Sqlite};

use crate::ledger::Ledger;
use crate::shared::{Fallbacks, PREFIX, SharedState};

/// How long, after Redis failed to answer, end users are read from the
/// local copy alone.
const REDIS_DOWN_FOR_MS: i64 = 1000;

/// The end-user registry. Cheap to clone.
#[derive(Clone)]
pub(crate) struct EndUsers {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every known row, tombstones included; never locked across an await.
    known: RwLock<HashMap<String, Arc<EndUser>>>,
    sqlite: Option<Sqlite>,
    redis: Option<Redis>,
    /// `max_end_user_budget`, in pico-dollars.
    default_budget: Option<u64>,
    /// Serialises admin changes on this replica.
    admin: tokio::sync::Mutex<()>,
    fallbacks: Fallbacks,
    redis_down_until_ms: AtomicI64,
}

impl std::fmt::Debug for EndUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndUsers")
            .field("default_budget", &self.inner.default_budget)
            .field("redis", &self.inner.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl EndUsers {
    /// The registry: its rows loaded from the table in `path` (the ledger's
    /// file) when there is one, shared through `shared`'s Redis when set
    /// (each call waiting at most `timeout`).
    ///
    /// Blocking (reads the file): call it at start-up.
    pub(crate) fn open(
        path: Option<&Path>,
        shared: Option<&SharedState>,
        timeout: Duration,
        default_budget: Option<u64>,
    ) -> rusqlite::Result<EndUsers> {
        let sqlite = path.map(Sqlite::open).transpose()?;
        let mut known = HashMap::new();
        if let Some(sqlite) = &sqlite {
            for record in sqlite.load()? {
                known.insert(record.user_id.clone(), Arc::new(record));
            }
        }
        Ok(EndUsers {
            inner: Arc::new(Inner {
                known: RwLock::new(known),
                sqlite,
                redis: shared.map(|s| Redis::new(s.connection.clone(), PREFIX, timeout)),
                default_budget,
                admin: tokio::sync::Mutex::new(()),
                fallbacks: Fallbacks::new("the end users", "answering from the local copy")
                    .on_fallback(shared.map(|s| s.on_fallback.clone())),
                redis_down_until_ms: AtomicI64::new(i64::MIN),
            }),
        })
    }

    /// In memory only (tests).
    #[cfg(test)]
    pub(crate) fn in_memory(default_budget: Option<u64>) -> EndUsers {
        EndUsers::open(None, None, Duration::from_millis(100), default_budget)
            .expect("no file to open")
    }

    /// The limits a request for `user` counts against beside its key's, at
    /// `now_ms`; `None` when it has none.
    ///
    /// # Errors
    ///
    /// A 403 (`end_user_blocked`) for a blocked end user.
    pub(crate) async fn admit(
        &self,
        user: &str,
        now_ms: i64,
    ) -> Result<Option<Arc<KeyLimits>>, Failure> {
        let record = self.current(user, now_ms).await;
        if record.as_ref().is_some_and(|r| r.blocked) {
            return Err(blocked(user));
        }
        // Most end users have no limit at all: no name to build for them.
        if self.inner.default_budget.is_none() && !record.as_ref().is_some_and(|r| r.has_limits()) {
            return Ok(None);
        }
        let limits = record::limits_of(user, record.as_deref(), self.inner.default_budget);
        Ok(Some(Arc::new(limits)))
    }

    /// For a request for `user`: names them for the ledger (core's
    /// `EndUser`) and adds their limits to the request's
    /// `Arc<SharedLimits>` (beside any already there).
    ///
    /// # Errors
    ///
    /// As [`admit`](Self::admit).
    pub(crate) async fn admit_request(
        &self,
        extensions: &mut http::Extensions,
        user: Arc<str>,
        now_ms: i64,
    ) -> Result<(), Failure> {
        let limits = self.admit(&user, now_ms).await?;
        extensions.insert(tollgate_core::extensions::EndUser(user));
        if let Some(limits) = limits {
            let mut shared = extensions
                .remove::<Arc<SharedLimits>>()
                .map(Arc::unwrap_or_clone)
                .unwrap_or_default();
            shared.0.push(limits);
            extensions.insert(Arc::new(shared));
        }
        Ok(())
    }

    /// The budget `user` counts against (their own, else the default).
    pub(crate) fn budget_of(&self, record: Option<&EndUser>) -> Option<Budget> {
        record::budget_of(record, self.inner.default_budget)
    }

    /// The live row of `user` (not a tombstone): from Redis when it is
    /// shared and answers, else the local copy.
    pub(crate) async fn current(&self, user: &str, now_ms: i64) -> Option<Arc<EndUser>> {
        let local = self.local(user);
        let down = now_ms < self.inner.redis_down_until_ms.load(Ordering::Relaxed);
        let found = match &self.inner.redis {
            // Boxed: a Redis round trip's future is large, and inline it
            // would set the size of every request's handler future, which
            // is moved whole several times per request.
            Some(redis) if !down => Box::pin(self.shared_copy(redis, user, local, now_ms)).await,
            _ => local,
        };
        found.filter(|record| !record.deleted)
    }

    /// Redis's row of `user`, learnt if newer than `local` (this
    /// replica's copy); `local` when Redis lost it (then put back) or does
    /// not answer.
    async fn shared_copy(
        &self,
        redis: &Redis,
        user: &str,
        local: Option<Arc<EndUser>>,
        now_ms: i64,
    ) -> Option<Arc<EndUser>> {
        match redis.get(user).await {
            Ok(Some(remote)) => Some(self.learn(remote).await),
            // Redis lost it (or never had it): put the local copy back.
            Ok(None) => {
                if let Some(local) = &local
                    && let Err(error) = redis.put(local).await
                {
                    self.fell_back(&error, now_ms);
                }
                local
            }
            Err(error) => {
                self.fell_back(&error, now_ms);
                local
            }
        }
    }

    /// This replica's copy of `user`, tombstones included.
    fn local(&self, user: &str) -> Option<Arc<EndUser>> {
        let known = self
            .inner
            .known
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        known.get(user).cloned()
    }

    /// Keeps `remote` when it is newer than the local copy (and writes it
    /// to the file); returns whichever is newer.
    async fn learn(&self, remote: EndUser) -> Arc<EndUser> {
        let newer = {
            let mut known = self
                .inner
                .known
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            match known.get(&remote.user_id) {
                Some(local) if local.updated_at_ms >= remote.updated_at_ms => {
                    return local.clone();
                }
                _ => {
                    let remote = Arc::new(remote);
                    known.insert(remote.user_id.clone(), remote.clone());
                    remote
                }
            }
        };
        if let Some(sqlite) = &self.inner.sqlite
            && let Err(error) = sqlite.put_async((*newer).clone()).await
        {
            tracing::warn!(%error, "an end user could not be written to the local file");
        }
        newer
    }

    fn fell_back(&self, why: &dyn std::fmt::Display, now_ms: i64) {
        self.inner.fallbacks.fell_back(why);
        self.inner
            .redis_down_until_ms
            .store(now_ms.saturating_add(REDIS_DOWN_FOR_MS), Ordering::Relaxed);
    }

    /// Every live registered end user, by id: Redis's rows (when it
    /// answers) merged with the local copy.
    pub(crate) async fn list(&self, now_ms: i64) -> Vec<Arc<EndUser>> {
        if let Some(redis) = &self.inner.redis {
            match redis.all().await {
                Ok(remote) => {
                    for record in remote {
                        self.learn(record).await;
                    }
                }
                Err(error) => self.fell_back(&error, now_ms),
            }
        }
        let known = self
            .inner
            .known
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Arc<EndUser>> = known.values().filter(|r| !r.deleted).cloned().collect();
        out.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        out
    }

    /// Writes `record` everywhere: Redis first (it must take it), then the
    /// file and this replica's map.
    async fn store(&self, record: EndUser) -> Result<Arc<EndUser>, Failure> {
        if let Some(redis) = &self.inner.redis {
            redis.put(&record).await.map_err(|error| {
                tracing::warn!(%error, "an end-user change could not reach Redis");
                Failure::new(
                    ErrorClass::Internal,
                    "the end-user store (Redis) is unavailable; try again shortly",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
            })?;
        }
        if let Some(sqlite) = &self.inner.sqlite {
            sqlite.put_async(record.clone()).await.map_err(|error| {
                tracing::error!(%error, "the end-user store failed");
                Failure::new(ErrorClass::Internal, "the end-user store failed")
            })?;
        }
        let record = Arc::new(record);
        self.inner
            .known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(record.user_id.clone(), record.clone());
        Ok(record)
    }

    /// `/customer/new`: registers `change.user_id` with its settings.
    ///
    /// # Errors
    ///
    /// A 400 when the end user is registered already; a 503 when Redis is
    /// configured and away.
    pub(crate) async fn create(
        &self,
        change: &Change,
        now_ms: i64,
    ) -> Result<Arc<EndUser>, Failure> {
        let _admin = self.inner.admin.lock().await;
        if self.current(&change.user_id, now_ms).await.is_some() {
            return Err(crate::keys::generate::bad_request(
                format!(
                    "Customer with user_id={} already exists; change it with /customer/update",
                    change.user_id
                ),
                Some("user_id"),
            ));
        }
        let mut record = EndUser::new(change.user_id.clone(), now_ms);
        if let Some(old) = self.local(&change.user_id) {
            // After a tombstone: newer than it.
            record.updated_at_ms = now_ms.max(old.updated_at_ms + 1);
        }
        change.apply_to(&mut record, now_ms);
        let record = self.store(record).await?;
        audit("customer.new", &record.user_id, &change.fields());
        Ok(record)
    }

    /// `/customer/update`: changes the settings given.
    ///
    /// # Errors
    ///
    /// A 404 for an end user not registered; a 503 when Redis is away.
    pub(crate) async fn update(
        &self,
        change: &Change,
        now_ms: i64,
    ) -> Result<Arc<EndUser>, Failure> {
        let _admin = self.inner.admin.lock().await;
        let Some(current) = self.current(&change.user_id, now_ms).await else {
            return Err(not_registered(&change.user_id));
        };
        let mut record = (*current).clone();
        change.apply_to(&mut record, now_ms);
        let record = self.store(record).await?;
        audit("customer.update", &record.user_id, &change.fields());
        Ok(record)
    }

    /// `/customer/block` and `/unblock`: sets `blocked` on each of `ids`;
    /// blocking registers an end user not registered yet (LiteLLM upserts).
    pub(crate) async fn set_blocked(
        &self,
        ids: &[String],
        blocked: bool,
        now_ms: i64,
    ) -> Result<Vec<Arc<EndUser>>, Failure> {
        let _admin = self.inner.admin.lock().await;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let mut record = match self.current(id, now_ms).await {
                Some(current) => (*current).clone(),
                None if !blocked => continue,
                None => {
                    let mut fresh = EndUser::new(id.clone(), now_ms);
                    if let Some(old) = self.local(id) {
                        fresh.updated_at_ms = old.updated_at_ms;
                    }
                    fresh
                }
            };
            record.blocked = blocked;
            record.updated_at_ms = now_ms.max(record.updated_at_ms + 1);
            let record = self.store(record).await?;
            audit(
                if blocked {
                    "customer.block"
                } else {
                    "customer.unblock"
                },
                id,
                "blocked",
            );
            out.push(record);
        }
        Ok(out)
    }

    /// `/customer/delete`: deletes each of `ids`, all registered, or none.
    pub(crate) async fn delete(&self, ids: &[String], now_ms: i64) -> Result<usize, Failure> {
        let _admin = self.inner.admin.lock().await;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            match self.current(id, now_ms).await {
                Some(record) => found.push(record),
                None => return Err(not_registered(id).with_param("user_ids")),
            }
        }
        for record in &found {
            self.store(record.tombstone(now_ms)).await?;
            audit("customer.delete", &record.user_id, "");
        }
        Ok(found.len())
    }

    /// Brings back what each end user spent in their budget's current
    /// window, from `ledger` into the limits' `store`: the registered ones,
    /// and, with a default budget, every one the ledger has seen.
    pub(crate) async fn restore_budgets(
        &self,
        ledger: &Ledger,
        store: &dyn tollgate_limits::Store,
        now: i64,
    ) {
        let mut users: Vec<String> = self
            .list(now)
            .await
            .iter()
            .map(|r| r.user_id.clone())
            .collect();
        if self.inner.default_budget.is_some() {
            users.extend(spend::seen(ledger).await);
            users.sort();
            users.dedup();
        }
        for user in users {
            let record = self.local(&user).filter(|r| !r.deleted);
            let Some(budget) = self.budget_of(record.as_deref()) else {
                continue;
            };
            let since = budget.window_at(now).start_unix_ms();
            match ledger.billed_to_end_user_since(&user, since).await {
                Ok(0) => {}
                Ok(spent) => {
                    let name = format!("{}{user}", record::LIMITS_PREFIX);
                    let spent = u64::try_from(spent).unwrap_or(u64::MAX);
                    tollgate_limits::restore_spend(store, &name, &budget, now, spent).await;
                }
                Err(error) => {
                    tracing::error!(end_user = %user, %error, "an end user's spend could not be read from the ledger");
                }
            }
        }
    }
}

fn audit(action: &'static str, user: &str, changed: &str) {
    tracing::info!(
        target: "tollgate::audit",
        actor = "master_key",
        action,
        end_user = %user,
        changed,
        "end user changed"
    );
}

/// A blocked end user's request: 403, as LiteLLM refuses one.
fn blocked(user: &str) -> Failure {
    Failure::new(
        ErrorClass::Auth,
        format!(
            "End user '{}' is blocked. An admin can unblock them with POST /customer/unblock.",
            tollgate_core::sanitize_message(user)
        ),
    )
    .with_status(StatusCode::FORBIDDEN)
    .with_code("end_user_blocked")
    .with_param("user")
}

fn not_registered(user: &str) -> Failure {
    Failure::new(
        ErrorClass::BadRequest,
        format!("End User Id={user} does not exist; register it with /customer/new"),
    )
    .with_status(StatusCode::NOT_FOUND)
    .with_code("not_found")
    .with_param("user_id")
}
