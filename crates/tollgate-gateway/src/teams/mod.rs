//! Teams: groups of virtual keys with a budget, rate limits and a model
//! list of their own, in the shape of LiteLLM's admin API (`POST
//! /team/new`, `GET /team/info`, `GET /team/list`, `POST /team/update`,
//! `/team/block`, `/team/unblock`, `/team/delete`).
//!
//! # The model
//!
//! A key belongs to a team when its `team_id` is the team's (set by
//! `/key/generate` or `/key/update`, refused with a 400 for a team that
//! does not exist). A request made with a member key counts against the
//! key's own limits *and* the team's ([`admit`]): rpm, tpm, parallel
//! requests and the budget are checked under the name `team:<team_id>`
//! beside the key's (tollgate-limits' `SharedLimits`), so the stricter
//! wins and the team's budget is spent by all its keys together; the model
//! group must be in both the key's and the team's `models` (empty: all);
//! a blocked team's keys are refused (403, `team_blocked`). Deleting a
//! team deletes its keys, as LiteLLM does.
//!
//! # Where teams are stored
//!
//! As the keys are: in memory, in the SQLite file of the ledger (tables
//! `teams` and `team_tombstones`, see [`store`]), or shared through Redis
//! with a local copy that survives a restart ([`redis`], [`sync`]). Each
//! replica answers requests from its own map (a `RwLock` never held across
//! an `.await`): a change made on another replica holds here within
//! [`sync::SYNC_EVERY`] (a key's team it has not seen yet is read from
//! Redis on the spot). When Redis is away, requests are served from the
//! local copy and every admin change is a 503.

pub(crate) mod admin;
mod manage;
mod redis;
pub(crate) mod spend;
pub(crate) mod store;
pub(crate) mod sync;
pub(crate) mod team;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use http::StatusCode;
use ring::rand::SystemRandom;
use tollgate_core::extensions::{AllowedGroups, TeamId};
use tollgate_core::{ErrorClass, Failure};
use tollgate_limits::SharedLimits;

use crate::keys::Principal;
use crate::keys::generate::bad_request;
use crate::shared::Fallbacks;
use redis::RedisTeams;
use store::{Change, LocalStore, SqliteStore, StoreError};
pub(crate) use team::{Team, TeamRequest, Tombstone};

/// How long Redis's "no such team" is trusted on a request's path.
const NEGATIVE_TTL_MS: i64 = 1000;
/// The most "no such team" answers remembered at once.
const NEGATIVE_CAPACITY: usize = 10_000;

/// Where teams are kept.
pub(crate) enum TeamBackend {
    /// In this process only.
    Memory,
    /// Tables in this SQLite file.
    Sqlite(PathBuf),
    /// Shared through Redis (under `prefix`), with a local copy in memory
    /// or in the SQLite file `mirror`.
    Redis {
        manager: ConnectionManager,
        prefix: String,
        mirror: Option<PathBuf>,
        op_timeout: Duration,
        on_fallback: Option<Arc<dyn Fn() + Send + Sync>>,
    },
}

/// The team registry: cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub(crate) struct Teams {
    inner: Arc<Inner>,
}

struct Inner {
    state: RwLock<State>,
    local: LocalStore,
    redis: Option<RedisTeams>,
    rng: SystemRandom,
    /// Serialises admin changes, so a check and the write after it cannot
    /// interleave with another change.
    admin: tokio::sync::Mutex<()>,
    /// One sync round at a time.
    sync: tokio::sync::Mutex<()>,
    fallbacks: Fallbacks,
}

#[derive(Debug, Default)]
struct State {
    live: HashMap<String, Arc<Team>>,
    buried: HashMap<String, Tombstone>,
    /// Ids Redis said it does not have, and when (unix ms).
    missing: HashMap<String, i64>,
}

impl State {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Put(team) => {
                self.missing.remove(&team.team_id);
                self.live.insert(team.team_id.clone(), team.clone());
            }
            Change::Bury(tombstone) => {
                self.live.remove(&tombstone.team_id);
                let later = tombstone.clone().later(self.buried.get(&tombstone.team_id));
                self.buried.insert(tombstone.team_id.clone(), later);
            }
        }
    }
}

impl std::fmt::Debug for Teams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teams")
            .field("live", &self.read().live.len())
            .field("redis", &self.inner.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Teams {
    /// The registry, loaded from its local store (blocking: call it at
    /// start-up). It sends nothing to Redis: the first sync round does.
    ///
    /// # Errors
    ///
    /// The SQLite file cannot be opened or read.
    pub(crate) fn new(backend: TeamBackend) -> Result<Teams, StoreError> {
        let sqlite = |path: &PathBuf| -> Result<LocalStore, StoreError> {
            Ok(LocalStore::Sqlite(Arc::new(SqliteStore::open(path)?)))
        };
        let memory = || LocalStore::Memory(Default::default());
        let (local, redis, on_fallback) = match backend {
            TeamBackend::Memory => (memory(), None, None),
            TeamBackend::Sqlite(path) => (sqlite(&path)?, None, None),
            TeamBackend::Redis {
                manager,
                prefix,
                mirror,
                op_timeout,
                on_fallback,
            } => {
                let local = match &mirror {
                    Some(path) => sqlite(path)?,
                    None => memory(),
                };
                let redis = RedisTeams::new(manager, &prefix, op_timeout);
                (local, Some(redis), on_fallback)
            }
        };
        let loaded = local.load()?;
        let mut state = State::default();
        for tombstone in loaded.tombstones {
            state.apply(&Change::Bury(tombstone));
        }
        for team in loaded.teams {
            state.apply(&Change::Put(Arc::new(team)));
        }
        Ok(Teams {
            inner: Arc::new(Inner {
                state: RwLock::new(state),
                local,
                redis,
                rng: SystemRandom::new(),
                admin: tokio::sync::Mutex::new(()),
                sync: tokio::sync::Mutex::new(()),
                fallbacks: Fallbacks::new("the teams", "answering from the local copy")
                    .on_fallback(on_fallback),
            }),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The live team `id` as this replica knows it (no Redis round trip).
    pub(crate) fn known(&self, id: &str) -> Option<Arc<Team>> {
        self.read().live.get(id).cloned()
    }

    /// The teams known here that have a budget.
    pub(crate) fn with_budgets(&self) -> Vec<Arc<Team>> {
        self.read()
            .live
            .values()
            .filter(|team| team.max_budget_picos.is_some())
            .cloned()
            .collect()
    }

    /// The live team `id`, for a request at `now_ms`: this replica's copy,
    /// else (with Redis, a team made on another replica a moment ago)
    /// Redis's. `None` when no copy has it, or Redis is away and this
    /// replica never saw it.
    pub(crate) async fn lookup(&self, id: &str, now_ms: i64) -> Option<Arc<Team>> {
        let redis = {
            let state = self.read();
            if let Some(team) = state.live.get(id) {
                return Some(team.clone());
            }
            let recently_missing = state
                .missing
                .get(id)
                .is_some_and(|at| now_ms.saturating_sub(*at) < NEGATIVE_TTL_MS);
            match &self.inner.redis {
                Some(redis) if !recently_missing && !state.buried.contains_key(id) => redis,
                _ => return None,
            }
        };
        // Boxed: a Redis round trip's future is large, and inline it would
        // set the size of every request's handler future, which is moved
        // whole several times per request — this path is the rare one.
        Box::pin(self.fetch(redis, id, now_ms)).await
    }

    /// The rest of [`lookup`](Self::lookup): team `id` as Redis has it,
    /// merged with this replica's copy; a team no copy has is remembered
    /// as missing for a while.
    async fn fetch(&self, redis: &RedisTeams, id: &str, now_ms: i64) -> Option<Arc<Team>> {
        let found = match redis.get(id).await {
            Ok(remote) => match self.merge(redis, id, remote, false).await {
                Ok(_) => self.read().live.get(id).cloned(),
                Err(error) => {
                    self.inner.fallbacks.fell_back(&error);
                    self.read().live.get(id).cloned()
                }
            },
            Err(error) => {
                self.inner.fallbacks.fell_back(&error);
                return None;
            }
        };
        if found.is_none() {
            let mut state = self.write();
            if state.missing.len() >= NEGATIVE_CAPACITY {
                state.missing.clear();
            }
            state.missing.insert(id.to_owned(), now_ms);
        }
        found
    }
}

/// What a request made with a member key counts against and may use: its
/// team's limits and models. Carried into the request's extensions by
/// [`Admission::apply`].
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    team: Arc<Team>,
}

/// The request walk's check of the key's team (see the module docs):
/// `Ok(None)` for a request without a team, the team's [`Admission`] when
/// the team lets it through for the model group `group`.
///
/// # Errors
///
/// 403 when the team is blocked (`team_blocked`), does not exist
/// (`team_not_found`), or may not use `group` (`model_not_allowed`).
pub(crate) async fn admit(
    teams: &Teams,
    principal: &Principal,
    group: &str,
    now_ms: i64,
) -> Result<Option<Admission>, Failure> {
    let Some(id) = principal
        .virtual_key()
        .and_then(|key| key.team_id.as_deref())
    else {
        return Ok(None);
    };
    let forbidden = |message: String, code: &'static str| {
        Failure::new(ErrorClass::Auth, message)
            .with_status(StatusCode::FORBIDDEN)
            .with_code(code)
    };
    let team = teams.lookup(id, now_ms).await.ok_or_else(|| {
        forbidden(
            format!("The key's team '{id}' does not exist."),
            "team_not_found",
        )
    })?;
    if team.blocked {
        return Err(forbidden(
            format!("The team '{id}' is blocked. An admin can unblock it with POST /team/unblock."),
            "team_blocked",
        ));
    }
    if !team.allows_model(group) {
        return Err(forbidden(
            format!(
                "The team '{id}' may not use the model `{}`.",
                tollgate_core::sanitize_message(group)
            ),
            "model_not_allowed",
        )
        .with_param("model"));
    }
    Ok(Some(Admission { team }))
}

impl Admission {
    /// Puts the team into the request: its limits beside the key's (added
    /// to any other shared limits there), its id for the ledger, and its
    /// models narrowing the groups a fallback may answer with.
    pub(crate) fn apply(&self, extensions: &mut http::Extensions) {
        let mut shared = extensions
            .get::<Arc<SharedLimits>>()
            .map(|shared| shared.0.clone())
            .unwrap_or_default();
        shared.push(Arc::new(self.team.limits()));
        extensions.insert(Arc::new(SharedLimits(shared)));
        extensions.insert(TeamId(Arc::from(self.team.team_id.as_str())));
        let team = &self.team;
        if team.models.is_empty() || team.models.iter().any(|m| m == "*") {
            return;
        }
        let allowed: Arc<[Arc<str>]> = match extensions.get::<AllowedGroups>() {
            Some(AllowedGroups(key)) => key
                .iter()
                .filter(|group| team.allows_model(group))
                .cloned()
                .collect(),
            None => team.models.iter().map(|m| Arc::from(m.as_str())).collect(),
        };
        extensions.insert(AllowedGroups(allowed));
    }
}

fn not_found(id: &str) -> Failure {
    Failure::new(
        ErrorClass::BadRequest,
        format!("Team not found, passed team_id={id}"),
    )
    .with_status(StatusCode::NOT_FOUND)
    .with_code("not_found")
    .with_param("team_id")
}

fn store_unavailable(error: &dyn std::fmt::Display) -> Failure {
    tracing::warn!(%error, "the team store cannot reach Redis");
    Failure::new(
        ErrorClass::Internal,
        "the team store is unavailable; try again shortly",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

fn store_failed(error: &StoreError) -> Failure {
    tracing::error!(%error, "the team store failed");
    Failure::new(ErrorClass::Internal, "the team store failed")
}

/// A 400 for a `team_id` that names no team (`/key/generate`,
/// `/key/update`), as LiteLLM refuses it.
pub(crate) fn unknown_team(id: &str) -> Failure {
    bad_request(
        format!("team_id '{id}' does not exist: create the team with POST /team/new first"),
        Some("team_id"),
    )
}

/// Logs an admin change to a team: who (the master key, the only principal
/// the admin API serves), what, which team, and the names of the fields
/// changed — never their values.
fn audit(action: &'static str, team_id: &str, changed: &str) {
    tracing::info!(
        target: "tollgate::audit",
        actor = "master_key",
        action,
        team = %team_id,
        changed,
        "team changed"
    );
}
