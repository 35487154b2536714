//! The decisions of the sync between a replica's copy and Redis, with no
//! I/O: what one hash is when this replica and Redis disagree, and what
//! each must write; and what a replica does when it finds Redis's epoch.
//!
//! The keys form a grow-only set of records and a grow-only set of
//! tombstones, a key being live when it has a record and no tombstone.
//! Merging two such copies is a union, so every replica and Redis reach
//! the same state whatever order they hear things in: a tombstone wins over
//! a record wherever either is found, and a copy that lacks something
//! (Redis after a restart) is given it, never taken as the truth about it.

use std::sync::Arc;

use crate::keys::key::VirtualKey;
use crate::keys::store::redis::Remote;
use crate::keys::store::{Change, Tombstone};

/// What this replica knows about one hash.
#[derive(Debug, Clone)]
pub(crate) enum Local {
    /// A live key.
    Live(Arc<VirtualKey>),
    /// A deleted key.
    Deleted(Tombstone),
    /// Nothing.
    Unknown,
}

/// What a key is, every copy considered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Live: authenticate with it (if it has not expired).
    Live(Arc<VirtualKey>),
    /// Deleted, for good.
    Deleted,
    /// No copy knows it.
    Unknown,
}

impl Verdict {
    /// The key, when live.
    pub(crate) fn live(self) -> Option<Arc<VirtualKey>> {
        match self {
            Verdict::Live(key) => Some(key),
            Verdict::Deleted | Verdict::Unknown => None,
        }
    }
}

/// What to do about one hash.
#[derive(Debug)]
pub(crate) struct Plan {
    /// What the key is.
    pub(crate) verdict: Verdict,
    /// What this replica writes to its map and store.
    pub(crate) local: Option<Change>,
    /// What Redis is given back: a key it lost ([`Change::Put`], which
    /// Redis refuses if it has the key's tombstone) or a deletion it lost.
    pub(crate) redis: Option<Change>,
}

/// Merges this replica's knowledge of a hash with Redis's.
pub(crate) fn reconcile(local: Local, remote: Remote) -> Plan {
    let Remote { record, tombstone } = remote;
    match (local, tombstone, record) {
        // A tombstone on either side wins; each side gets what it lacks.
        (Local::Deleted(mine), Some(theirs), _) => {
            let merged = mine.clone().merge(&theirs);
            Plan {
                verdict: Verdict::Deleted,
                local: (merged != mine).then_some(Change::Bury(merged)),
                redis: None,
            }
        }
        (Local::Deleted(mine), None, _) => Plan {
            verdict: Verdict::Deleted,
            local: None,
            redis: Some(Change::Bury(mine)),
        },
        (Local::Live(_) | Local::Unknown, Some(theirs), _) => Plan {
            verdict: Verdict::Deleted,
            local: Some(Change::Bury(theirs)),
            redis: None,
        },
        // No tombstone anywhere.
        (Local::Live(mine), None, Some(record)) if *mine == record => Plan {
            verdict: Verdict::Live(mine),
            local: None,
            redis: None,
        },
        (Local::Live(_) | Local::Unknown, None, Some(record)) => {
            let key = Arc::new(record);
            Plan {
                verdict: Verdict::Live(key.clone()),
                local: Some(Change::Put(key)),
                redis: None,
            }
        }
        // Redis lost the key (restarted empty, flushed, evicted): absence
        // is not a deletion. Put it back.
        (Local::Live(mine), None, None) => Plan {
            verdict: Verdict::Live(mine.clone()),
            local: None,
            redis: Some(Change::Put(mine)),
        },
        (Local::Unknown, None, None) => Plan {
            verdict: Verdict::Unknown,
            local: None,
            redis: None,
        },
    }
}

/// What a replica does on reading Redis's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Redis has no epoch: it lost its data (or is new). Write a new epoch,
    /// then put this replica's copy back in and read every change.
    Seed,
    /// Redis has an epoch this replica has not put its copy into (its first
    /// sync, or another replica seeded Redis after it lost its data): put
    /// the copy in, then read every change.
    Rejoin,
    /// The epoch this replica joined: read the changes since last time.
    Follow,
}

/// The step for `joined` (the epoch this replica last put its copy into)
/// and `redis` (the epoch Redis has now).
pub(crate) fn step(joined: Option<&str>, redis: Option<&str>) -> Step {
    match (joined, redis) {
        (_, None) => Step::Seed,
        (Some(joined), Some(redis)) if joined == redis => Step::Follow,
        (_, Some(_)) => Step::Rejoin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_format::sha256;
    use crate::keys::key::KeySource;

    const T0: i64 = 1_767_225_600_000;

    fn key(name: &str) -> VirtualKey {
        VirtualKey::new(
            sha256(name.as_bytes()),
            Some(name.to_owned()),
            KeySource::Generated,
            T0,
        )
    }

    fn tombstone(name: &str, at: i64) -> Tombstone {
        Tombstone::of(&key(name), at)
    }

    fn remote(record: Option<VirtualKey>, tombstone: Option<Tombstone>) -> Remote {
        Remote { record, tombstone }
    }

    #[test]
    fn a_key_redis_lost_is_put_back_not_deleted() {
        let mine = Arc::new(key("a"));
        let plan = reconcile(Local::Live(mine.clone()), remote(None, None));
        assert_eq!(plan.verdict, Verdict::Live(mine.clone()));
        assert!(plan.local.is_none(), "the local copy stays as it is");
        assert!(matches!(plan.redis, Some(Change::Put(key)) if key == mine));
    }

    #[test]
    fn an_expired_key_is_put_back_as_it_was_and_stays_expired() {
        let mut expired = key("old");
        expired.expires_at_ms = Some(T0 + 1);
        let mine = Arc::new(expired);
        let plan = reconcile(Local::Live(mine.clone()), remote(None, None));
        let Some(Change::Put(restored)) = plan.redis else {
            panic!("not restored: {plan:?}");
        };
        assert_eq!(restored.expires_at_ms, Some(T0 + 1));
        assert!(plan.verdict.live().unwrap().is_expired(T0 + 1));
    }

    #[test]
    fn a_tombstone_wins_over_a_record_on_either_side() {
        let record = key("a");
        // Redis deleted it; this replica had it live: learn the deletion.
        let plan = reconcile(
            Local::Live(Arc::new(record.clone())),
            remote(None, Some(tombstone("a", T0))),
        );
        assert_eq!(plan.verdict, Verdict::Deleted);
        assert!(matches!(plan.local, Some(Change::Bury(ref t)) if t.deleted_at_ms == T0));
        assert!(plan.redis.is_none());
        // This replica deleted it; Redis lost the deletion and has the
        // record again (another replica put it back): tell Redis.
        let plan = reconcile(
            Local::Deleted(tombstone("a", T0)),
            remote(Some(record.clone()), None),
        );
        assert_eq!(plan.verdict, Verdict::Deleted);
        assert!(plan.local.is_none());
        assert!(matches!(plan.redis, Some(Change::Bury(ref t)) if t.hash == record.hash));
        // Redis holds both (a record written back over a deletion by hand).
        let plan = reconcile(
            Local::Unknown,
            remote(Some(record), Some(tombstone("a", T0))),
        );
        assert_eq!(plan.verdict, Verdict::Deleted);
        assert!(matches!(plan.local, Some(Change::Bury(_))));
    }

    #[test]
    fn a_deletion_redis_lost_is_put_back() {
        let plan = reconcile(Local::Deleted(tombstone("a", T0)), remote(None, None));
        assert_eq!(plan.verdict, Verdict::Deleted);
        assert!(plan.local.is_none());
        assert!(matches!(plan.redis, Some(Change::Bury(_))));
    }

    #[test]
    fn two_tombstones_keep_the_earliest_time() {
        let plan = reconcile(
            Local::Deleted(tombstone("a", T0 + 5)),
            remote(None, Some(tombstone("a", T0))),
        );
        assert!(matches!(plan.local, Some(Change::Bury(ref t)) if t.deleted_at_ms == T0));
        let plan = reconcile(
            Local::Deleted(tombstone("a", T0)),
            remote(None, Some(tombstone("a", T0 + 5))),
        );
        assert!(plan.local.is_none() && plan.redis.is_none(), "{plan:?}");
    }

    #[test]
    fn a_key_only_redis_has_is_learned() {
        let plan = reconcile(Local::Unknown, remote(Some(key("new")), None));
        let Verdict::Live(learned) = &plan.verdict else {
            panic!("{plan:?}");
        };
        assert!(matches!(&plan.local, Some(Change::Put(key)) if key == learned));
        assert!(plan.redis.is_none());
        // Known on both sides and the same: nothing to write.
        let mine = Arc::new(key("same"));
        let plan = reconcile(Local::Live(mine.clone()), remote(Some(key("same")), None));
        assert_eq!(plan.verdict, Verdict::Live(mine));
        assert!(plan.local.is_none() && plan.redis.is_none());
    }

    #[test]
    fn nothing_anywhere_is_unknown() {
        let plan = reconcile(Local::Unknown, remote(None, None));
        assert_eq!(plan.verdict, Verdict::Unknown);
        assert!(plan.local.is_none() && plan.redis.is_none());
    }

    /// Whatever order a replica hears a record and its tombstone in (from
    /// Redis, or from its own copy), the key ends deleted.
    #[test]
    fn record_and_tombstone_in_any_order_end_deleted() {
        let record = key("k");
        let buried = tombstone("k", T0);
        // Record first, then the tombstone.
        let first = reconcile(Local::Unknown, remote(Some(record.clone()), None));
        let Some(Change::Put(live)) = first.local else {
            panic!()
        };
        let second = reconcile(Local::Live(live), remote(None, Some(buried.clone())));
        assert_eq!(second.verdict, Verdict::Deleted);
        // Tombstone first, then the record (a replica that never heard of
        // the deletion put it back).
        let first = reconcile(Local::Unknown, remote(None, Some(buried)));
        let Some(Change::Bury(kept)) = first.local else {
            panic!()
        };
        let second = reconcile(Local::Deleted(kept), remote(Some(record), None));
        assert_eq!(second.verdict, Verdict::Deleted);
        assert!(matches!(second.redis, Some(Change::Bury(_))));
    }

    #[test]
    fn epoch_steps() {
        assert_eq!(step(None, None), Step::Seed);
        assert_eq!(step(Some("e1"), None), Step::Seed, "Redis lost its data");
        assert_eq!(step(None, Some("e1")), Step::Rejoin, "first sync");
        assert_eq!(
            step(Some("e1"), Some("e2")),
            Step::Rejoin,
            "seeded by another"
        );
        assert_eq!(step(Some("e1"), Some("e1")), Step::Follow);
    }
}
