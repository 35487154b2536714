//! The operations behind the team admin API: make, read, list, change,
//! block and delete teams. Every change is one write to Redis (a Lua
//! script) then to this replica's copy, under the admin lock; without
//! Redis, one write to the local store.

use std::sync::Arc;

use tollgate_core::Failure;

use super::store::Change;
use super::team::new_team_id;
use super::{
    Team, TeamRequest, Teams, Tombstone, audit, not_found, store_failed, store_unavailable,
};
use crate::keys::generate::bad_request;

impl Teams {
    /// The live team `id`, with every replica's changes: with Redis,
    /// Redis's copy merged into this replica's first (this replica's alone
    /// when Redis is away).
    pub(crate) async fn info(&self, id: &str) -> Option<Arc<Team>> {
        if let Some(redis) = &self.inner.redis {
            let merged = match redis.get(id).await {
                Ok(remote) => self.merge(redis, id, remote, false).await.map(drop),
                Err(error) => Err(error),
            };
            if let Err(error) = merged {
                self.inner.fallbacks.fell_back(&error);
            }
        }
        self.read().live.get(id).cloned()
    }

    /// Every live team, by alias then id (LiteLLM's order); with Redis,
    /// after a sync round.
    pub(crate) async fn list(&self) -> Vec<Arc<Team>> {
        if let Err(error) = self.sync().await {
            self.inner.fallbacks.fell_back(&error);
        }
        let mut teams: Vec<Arc<Team>> = self.read().live.values().cloned().collect();
        teams.sort_by(|a, b| {
            (a.team_alias.as_deref().unwrap_or(""), &a.team_id)
                .cmp(&(b.team_alias.as_deref().unwrap_or(""), &b.team_id))
        });
        teams
    }

    /// Makes a team from a validated `/team/new` request, at `now_ms`.
    ///
    /// # Errors
    ///
    /// 400 when the id is taken; 503 when Redis is away; 500 when the store
    /// fails.
    pub(crate) async fn create(
        &self,
        request: TeamRequest,
        now_ms: i64,
    ) -> Result<Arc<Team>, Failure> {
        let _admin = self.inner.admin.lock().await;
        let id = match &request.team_id {
            Some(id) => id.clone(),
            None => new_team_id(&self.inner.rng)?,
        };
        let taken = || {
            bad_request(
                format!("Team id = {id} already exists. Please use a different team id."),
                Some("team_id"),
            )
        };
        if self.info(&id).await.is_some() {
            return Err(taken());
        }
        let changed = request.changed_fields();
        let mut team = Team::new(id.clone(), now_ms);
        // Made after any deletion of the same id, whatever the clocks say.
        if let Some(deleted) = self.read().buried.get(&id) {
            team.created_at_ms = team.created_at_ms.max(deleted.deleted_at_ms + 1);
        }
        request.apply_to(&mut team, now_ms);
        let team = Arc::new(team);
        if let Some(redis) = &self.inner.redis {
            match redis.create(&team).await {
                Ok(true) => {}
                Ok(false) => return Err(taken()),
                Err(error) => return Err(store_unavailable(&error)),
            }
        }
        self.commit(Change::Put(team.clone())).await?;
        audit("team.new", &id, &changed);
        Ok(team)
    }

    /// Changes the settings `request` gives of team `id` (`/team/update`,
    /// `/team/block`, `/team/unblock`), at `now_ms`; `action` names it in
    /// the audit log.
    ///
    /// # Errors
    ///
    /// 404 when there is no such team; 503 when Redis is away.
    pub(crate) async fn update(
        &self,
        id: &str,
        request: TeamRequest,
        action: &'static str,
        now_ms: i64,
    ) -> Result<Arc<Team>, Failure> {
        let _admin = self.inner.admin.lock().await;
        let current = self.info(id).await.ok_or_else(|| not_found(id))?;
        let changed = request.changed_fields();
        let mut team = (*current).clone();
        request.apply_to(&mut team, now_ms);
        // Newer than the copy it replaces, whatever the clocks say.
        team.updated_at_ms = team.updated_at_ms.max(current.updated_at_ms + 1);
        let team = Arc::new(team);
        if let Some(redis) = &self.inner.redis {
            match redis.update(&team).await {
                Ok(true) => {}
                Ok(false) => return Err(not_found(id)),
                Err(error) => return Err(store_unavailable(&error)),
            }
        }
        self.commit(Change::Put(team.clone())).await?;
        audit(action, id, &changed);
        Ok(team)
    }

    /// Checks that every one of `ids` is a live team.
    ///
    /// # Errors
    ///
    /// 404 naming the first that is not.
    pub(crate) async fn check_exist(&self, ids: &[String]) -> Result<(), Failure> {
        for id in ids {
            if self.info(id).await.is_none() {
                return Err(not_found(id));
            }
        }
        Ok(())
    }

    /// Deletes the teams `ids`, at `now_ms`; their ids. All are checked
    /// before any is deleted. Each leaves a tombstone (see [`super::sync`]).
    ///
    /// # Errors
    ///
    /// 404 naming a team that does not exist; 503 when Redis is away.
    pub(crate) async fn delete(&self, ids: &[String], now_ms: i64) -> Result<Vec<String>, Failure> {
        let _admin = self.inner.admin.lock().await;
        let mut found = Vec::new();
        for id in ids {
            let team = self.info(id).await.ok_or_else(|| not_found(id))?;
            if !found
                .iter()
                .any(|seen: &Arc<Team>| seen.team_id == team.team_id)
            {
                found.push(team);
            }
        }
        for team in &found {
            let tombstone = Tombstone {
                team_id: team.team_id.clone(),
                deleted_at_ms: now_ms.max(team.created_at_ms),
            };
            if let Some(redis) = &self.inner.redis {
                redis
                    .bury(&tombstone, None)
                    .await
                    .map_err(|error| store_unavailable(&error))?;
            }
            self.commit(Change::Bury(tombstone)).await?;
            audit("team.delete", &team.team_id, "");
        }
        Ok(found.iter().map(|team| team.team_id.clone()).collect())
    }

    /// Writes a change Redis has taken (or, without Redis, the truth) to
    /// this replica's store and map. Without Redis a failed write is the
    /// admin call's failure; with Redis the next sync round redoes it.
    async fn commit(&self, change: Change) -> Result<(), Failure> {
        if self.inner.redis.is_some() {
            self.keep(vec![change]).await;
            return Ok(());
        }
        self.inner
            .local
            .apply(vec![change.clone()])
            .await
            .map_err(|error| store_failed(&error))?;
        self.write().apply(&change);
        Ok(())
    }
}
