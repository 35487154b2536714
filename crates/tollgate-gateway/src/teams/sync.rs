//! Teams across replicas, as the keys are (see [`crate::keys::sync`]):
//! Redis is a cache of the truth, never its only copy.
//!
//! The truth is a set of team records and a set of tombstones; every copy
//! (each replica's store, and Redis) holds all of both, and merging two
//! copies is a union ([`plan`]): of two records of one team the newer wins,
//! of two tombstones the later, and a tombstone ends the records made at
//! or before it. So the copies agree whatever order they hear things in.
//!
//! - **Absence is not deletion**: a team Redis lacks is one it lost; the
//!   replica that has it puts it back. Only a tombstone deletes.
//! - **Every replica copies everything**, reading both hashes whole every
//!   [`SYNC_EVERY`]: a change made on one replica (an update, a block, a
//!   deletion) holds on the others within about a second, and a team
//!   survives as long as one replica's copy does.
//! - **Changes need Redis** (a 503 while it is away), so that no change is
//!   known to one replica only; requests never wait on a sync.

use std::sync::Arc;
use std::time::Duration;

use super::Teams;
use super::redis::{RedisFailure, RedisTeams, Remote};
use super::store::Change;
use super::team::{Team, Tombstone};

/// How often each replica reads Redis's teams.
pub(crate) const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What to do about one team id, every copy considered.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// The live team, if any.
    pub(crate) live: Option<Arc<Team>>,
    /// What this replica writes to its copy, in order.
    pub(crate) local: Vec<Change>,
    /// A deletion Redis lacks.
    pub(crate) bury: Option<Tombstone>,
    /// A team Redis lost.
    pub(crate) restore: Option<Arc<Team>>,
}

/// Merges this replica's copy of one team id (`team`, `tombstone`) with
/// Redis's.
pub(crate) fn plan(
    team: Option<&Arc<Team>>,
    tombstone: Option<&Tombstone>,
    remote: Remote,
) -> Plan {
    let merged_tombstone = match (tombstone, remote.tombstone.clone()) {
        (Some(mine), theirs) => Some(mine.clone().later(theirs.as_ref())),
        (None, theirs) => theirs,
    };
    let remote_team = remote.team.map(Arc::new);
    // The newer record; Redis's on a tie (writes go to Redis first).
    let newest = match (team, &remote_team) {
        (Some(mine), Some(theirs)) if mine.newer_than(theirs) => Some(mine.clone()),
        (_, Some(theirs)) => Some(theirs.clone()),
        (Some(mine), None) => Some(mine.clone()),
        (None, None) => None,
    };
    let live = newest.filter(|team| !merged_tombstone.as_ref().is_some_and(|t| t.ends(team)));
    let mut local = Vec::new();
    if merged_tombstone.as_ref() != tombstone {
        // A Bury drops the record too: put a newer live team back after it.
        local.extend(merged_tombstone.clone().map(Change::Bury));
        local.extend(live.clone().map(Change::Put));
    } else if live.as_ref() != team {
        local.extend(live.clone().map(Change::Put));
    }
    Plan {
        bury: merged_tombstone.filter(|t| remote.tombstone.as_ref() != Some(t)),
        restore: live.clone().filter(|_| remote_team.is_none()),
        live,
        local,
    }
}

impl Teams {
    /// Runs [`sync`](Self::sync) every [`SYNC_EVERY`] until the teams are
    /// dropped (with Redis; nothing otherwise). The first runs at once.
    pub(crate) fn spawn_sync(&self, runtime: &tokio::runtime::Handle) {
        if self.inner.redis.is_none() {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        crate::shared::spawn_every(runtime, weak, SYNC_EVERY, |inner| async move {
            let teams = Teams { inner };
            if let Err(error) = teams.sync().await {
                teams.inner.fallbacks.fell_back(&error);
            }
        });
    }

    /// One round: reads every team and tombstone in Redis, merges them
    /// with this replica's copy, and puts back what Redis lost. How many
    /// teams or deletions were put back.
    ///
    /// # Errors
    ///
    /// Redis failed; the next round starts over.
    pub(crate) async fn sync(&self) -> Result<usize, RedisFailure> {
        let Some(redis) = &self.inner.redis else {
            return Ok(0);
        };
        let _round = self.inner.sync.lock().await;
        let mut remote = redis.all().await?;
        let ids: Vec<String> = {
            let state = self.read();
            let mut ids: Vec<String> = state
                .live
                .keys()
                .chain(state.buried.keys())
                .cloned()
                .collect();
            ids.extend(remote.keys().cloned());
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut put_back = 0;
        for id in ids {
            let theirs = remote.remove(&id).unwrap_or_default();
            put_back += self.merge(redis, &id, theirs, true).await?;
        }
        if put_back > 0 {
            tracing::warn!(
                put_back,
                "Redis had lost teams or their deletions; put back this replica's copy"
            );
        }
        Ok(put_back)
    }

    /// Merges Redis's copy of team `id` into this replica's and puts back
    /// into Redis what it lacks; how many writes that took. `sync`: from a
    /// sync round (its patience), else from a request's path.
    pub(super) async fn merge(
        &self,
        redis: &RedisTeams,
        id: &str,
        remote: Remote,
        sync: bool,
    ) -> Result<usize, RedisFailure> {
        let plan = {
            let state = self.read();
            plan(state.live.get(id), state.buried.get(id), remote)
        };
        self.keep(plan.local).await;
        let mut written = 0;
        if let Some(tombstone) = &plan.bury {
            let patience = sync.then(RedisTeams::sync_timeout);
            redis.bury(tombstone, patience).await?;
            written += 1;
        }
        if let Some(team) = &plan.restore
            && redis.restore(team).await?
        {
            written += 1;
        }
        Ok(written)
    }

    /// Applies `changes` to this replica's map, then its store.
    pub(super) async fn keep(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        {
            let mut state = self.write();
            for change in &changes {
                state.apply(change);
            }
        }
        if let Err(error) = self.inner.local.apply(changes).await {
            tracing::warn!(%error, "cannot keep the local copy of the teams");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team(id: &str, created: i64, updated: i64) -> Arc<Team> {
        let mut team = Team::new(id.into(), created);
        team.updated_at_ms = updated;
        Arc::new(team)
    }

    fn tombstone(id: &str, at: i64) -> Tombstone {
        Tombstone {
            team_id: id.into(),
            deleted_at_ms: at,
        }
    }

    #[test]
    fn a_team_redis_lost_is_put_back_not_deleted() {
        let mine = team("t", 1, 1);
        let plan = plan(Some(&mine), None, Remote::default());
        assert_eq!(plan.live, Some(mine.clone()));
        assert_eq!(plan.restore, Some(mine));
        assert!(plan.local.is_empty() && plan.bury.is_none());
    }

    #[test]
    fn a_tombstone_wins_on_either_side_and_is_given_to_the_side_without_it() {
        let mine = team("t", 1, 1);
        let plan_a = plan(
            Some(&mine),
            None,
            Remote {
                team: None,
                tombstone: Some(tombstone("t", 5)),
            },
        );
        assert_eq!(plan_a.live, None);
        assert_eq!(plan_a.local, vec![Change::Bury(tombstone("t", 5))]);
        assert!(plan_a.bury.is_none() && plan_a.restore.is_none());
        // This replica deleted it; Redis lost the deletion and has the
        // record again (another replica put it back).
        let plan_b = plan(
            None,
            Some(&tombstone("t", 5)),
            Remote {
                team: Some((*mine).clone()),
                tombstone: None,
            },
        );
        assert_eq!(plan_b.live, None);
        assert_eq!(plan_b.bury, Some(tombstone("t", 5)));
        assert!(plan_b.local.is_empty() && plan_b.restore.is_none());
    }

    #[test]
    fn a_team_made_again_after_its_deletion_lives() {
        let again = team("t", 10, 10);
        let plan = plan(
            None,
            Some(&tombstone("t", 5)),
            Remote {
                team: Some((*again).clone()),
                tombstone: Some(tombstone("t", 5)),
            },
        );
        assert_eq!(plan.live, Some(again.clone()));
        assert_eq!(plan.local, vec![Change::Put(again)]);
    }

    #[test]
    fn the_newer_record_wins() {
        let (old, new) = (team("t", 1, 1), team("t", 1, 2));
        let learned = plan(
            Some(&old),
            None,
            Remote {
                team: Some((*new).clone()),
                tombstone: None,
            },
        );
        assert_eq!(learned.live, Some(new.clone()));
        assert_eq!(learned.local, vec![Change::Put(new.clone())]);
        let same = plan(
            Some(&new),
            None,
            Remote {
                team: Some((*new).clone()),
                tombstone: None,
            },
        );
        assert_eq!(
            same,
            Plan {
                live: Some(new),
                ..Plan::default()
            }
        );
    }
}
