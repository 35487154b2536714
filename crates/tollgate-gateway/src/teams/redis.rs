//! Teams in Redis, shared by every replica: two hashes under the prefix,
//! `{prefix}teams` (team id → the team's JSON) and `{prefix}teams:deleted`
//! (team id → its [`Tombstone`]'s JSON). Teams are few (a platform has
//! tens or hundreds), so a replica reads both hashes whole on each sync
//! round rather than keep a change log as the keys do.
//!
//! Every write is one Lua script, so a record and its tombstone never
//! disagree: a deletion drops the record it ends, and a record is never
//! put back over a tombstone that ends it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use super::team::{Team, Tombstone};
pub(crate) use crate::keys::store::redis::RedisFailure;
use crate::keys::store::redis::run_retrying;

/// How long one round trip of the background sync may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// Stores a new team unless the id is taken: 1 stored, 0 taken.
/// KEYS: teams, deleted; ARGV: id, record JSON.
const CREATE: &str = r"
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
";

/// Replaces a live team's record: 1 done, 0 when it was deleted meanwhile.
/// KEYS: teams; ARGV: id, record JSON.
const UPDATE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Records a deletion (the later of two), and drops the record it ends
/// (one made at or before it). KEYS: teams, deleted; ARGV: id, tombstone
/// JSON, deleted_at_ms.
const BURY: &str = r"
local at = tonumber(ARGV[3])
local kept = redis.call('HGET', KEYS[2], ARGV[1])
if not kept or cjson.decode(kept).deleted_at_ms < at then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record and cjson.decode(record).created_at_ms <= at then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
";

/// Puts back a team Redis lost: 1 present already, 2 written, 0 refused (a
/// tombstone ends it). KEYS: teams, deleted; ARGV: id, record JSON,
/// created_at_ms.
const RESTORE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
local kept = redis.call('HGET', KEYS[2], ARGV[1])
if kept and cjson.decode(kept).deleted_at_ms >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 2
";

/// What Redis holds for one team id.
#[derive(Debug, Default, Clone)]
pub(crate) struct Remote {
    pub(crate) team: Option<Team>,
    pub(crate) tombstone: Option<Tombstone>,
}

/// The team operations on Redis.
pub(crate) struct RedisTeams {
    manager: ConnectionManager,
    teams: String,
    deleted: String,
    op_timeout: Duration,
    create: Script,
    update: Script,
    bury: Script,
    restore: Script,
}

impl fmt::Debug for RedisTeams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTeams")
            .field("teams", &self.teams)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisTeams {
    /// Teams under `prefix` on `manager`'s server; each request-path call
    /// waits at most `op_timeout`.
    pub(crate) fn new(manager: ConnectionManager, prefix: &str, op_timeout: Duration) -> Self {
        RedisTeams {
            manager,
            teams: format!("{prefix}teams"),
            deleted: format!("{prefix}teams:deleted"),
            op_timeout,
            create: Script::new(CREATE),
            update: Script::new(UPDATE),
            bury: Script::new(BURY),
            restore: Script::new(RESTORE),
        }
    }

    /// Runs `operation` within `timeout`, as the keys' store does.
    async fn run<T, F, Fut>(&self, timeout: Duration, operation: F) -> Result<T, RedisFailure>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        run_retrying(&self.manager, timeout, operation).await
    }

    /// Every team and tombstone in Redis (one round trip).
    pub(crate) async fn all(&self) -> Result<HashMap<String, Remote>, RedisFailure> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL")
            .arg(&self.teams)
            .cmd("HGETALL")
            .arg(&self.deleted);
        let (teams, deleted): (HashMap<String, String>, HashMap<String, String>) = self
            .run(SYNC_TIMEOUT, |mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        let mut all: HashMap<String, Remote> = HashMap::new();
        for (id, json) in teams {
            let team = read_team(&json, &id)?;
            all.entry(id).or_default().team = Some(team);
        }
        for (id, json) in deleted {
            let tombstone = read_tombstone(&json, &id)?;
            all.entry(id).or_default().tombstone = Some(tombstone);
        }
        Ok(all)
    }

    /// What Redis holds for `id` (one round trip, within the operation
    /// timeout: on a request's path).
    pub(crate) async fn get(&self, id: &str) -> Result<Remote, RedisFailure> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(&self.teams)
            .arg(id)
            .cmd("HGET")
            .arg(&self.deleted)
            .arg(id);
        let (team, tombstone): (Option<String>, Option<String>) = self
            .run(self.op_timeout, |mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        Ok(Remote {
            team: team.map(|json| read_team(&json, id)).transpose()?,
            tombstone: tombstone
                .map(|json| read_tombstone(&json, id))
                .transpose()?,
        })
    }

    /// Stores a new team; `false` when the id is taken.
    pub(crate) async fn create(&self, team: &Team) -> Result<bool, RedisFailure> {
        let json = team.to_json();
        let stored: i64 = self
            .run(self.op_timeout, |mut conn| {
                let mut call = self.create.prepare_invoke();
                call.key(&self.teams)
                    .key(&self.deleted)
                    .arg(&team.team_id)
                    .arg(&json);
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(stored == 1)
    }

    /// Replaces a live team; `false` when it was deleted meanwhile.
    pub(crate) async fn update(&self, team: &Team) -> Result<bool, RedisFailure> {
        let json = team.to_json();
        let done: i64 = self
            .run(self.op_timeout, |mut conn| {
                let mut call = self.update.prepare_invoke();
                call.key(&self.teams).arg(&team.team_id).arg(&json);
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(done == 1)
    }

    /// Records a deletion.
    pub(crate) async fn bury(
        &self,
        tombstone: &Tombstone,
        timeout: Option<Duration>,
    ) -> Result<(), RedisFailure> {
        let json = tombstone.to_json();
        let _: i64 = self
            .run(timeout.unwrap_or(self.op_timeout), |mut conn| {
                let mut call = self.bury.prepare_invoke();
                call.key(&self.teams)
                    .key(&self.deleted)
                    .arg(&tombstone.team_id)
                    .arg(&json)
                    .arg(tombstone.deleted_at_ms);
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(())
    }

    /// Puts back a team Redis lost; `true` when it was written.
    pub(crate) async fn restore(&self, team: &Team) -> Result<bool, RedisFailure> {
        let json = team.to_json();
        let answer: i64 = self
            .run(SYNC_TIMEOUT, |mut conn| {
                let mut call = self.restore.prepare_invoke();
                call.key(&self.teams)
                    .key(&self.deleted)
                    .arg(&team.team_id)
                    .arg(&json)
                    .arg(team.created_at_ms);
                async move { call.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(answer == 2)
    }

    /// The sync's patience, for [`bury`](Self::bury) from a sync round.
    pub(crate) fn sync_timeout() -> Duration {
        SYNC_TIMEOUT
    }
}

fn read_team(json: &str, id: &str) -> Result<Team, RedisFailure> {
    let team = Team::from_json(json).map_err(RedisFailure::Corrupt)?;
    if team.team_id != id {
        return Err(RedisFailure::Corrupt(
            "a team is stored under another team's id".into(),
        ));
    }
    Ok(team)
}

fn read_tombstone(json: &str, id: &str) -> Result<Tombstone, RedisFailure> {
    let tombstone = Tombstone::from_json(json).map_err(RedisFailure::Corrupt)?;
    if tombstone.team_id != id {
        return Err(RedisFailure::Corrupt(
            "a team's tombstone is stored under another id".into(),
        ));
    }
    Ok(tombstone)
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
