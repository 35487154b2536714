//! This replica's copy of the teams: in memory, or in two tables of a
//! SQLite file (the spend ledger's, by default) beside the virtual keys'.
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS teams (
//!     team_id       TEXT PRIMARY KEY,
//!     record        TEXT NOT NULL           -- the team's JSON (see Team)
//! );
//! CREATE TABLE IF NOT EXISTS team_tombstones (
//!     team_id       TEXT PRIMARY KEY,
//!     deleted_at_ms INTEGER NOT NULL        -- unix ms, the latest deletion
//! );
//! ```
//!
//! A team is one JSON column rather than a column per field: a field added
//! later needs no migration (a record without it reads with its default).
//! The connection is this store's own, in WAL mode; every call blocks, so
//! async code runs it on tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, params};

use super::team::{Team, Tombstone};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS teams (
    team_id       TEXT PRIMARY KEY,
    record        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS team_tombstones (
    team_id       TEXT PRIMARY KEY,
    deleted_at_ms INTEGER NOT NULL
);";

/// One write to a copy of the teams, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Keep this version of the team.
    Put(Arc<Team>),
    /// The team was deleted: drop its record, keep the tombstone (the
    /// latest of two).
    Bury(Tombstone),
}

/// Everything a store holds.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) teams: Vec<Team>,
    pub(crate) tombstones: Vec<Tombstone>,
}

/// What the store could not do. Messages name files, never a secret
/// (teams hold none).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("team store {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("a stored team is unreadable: {0}")]
    Corrupt(String),
    #[error("the team store task did not finish")]
    Lost,
}

/// What the memory store holds for one team id: its live record, its
/// latest deletion.
type Entry = (Option<Arc<Team>>, Option<Tombstone>);

/// The local copy.
#[derive(Debug)]
pub(crate) enum LocalStore {
    Memory(Mutex<HashMap<String, Entry>>),
    Sqlite(Arc<SqliteStore>),
}

impl LocalStore {
    /// Everything stored (blocking, for start-up).
    pub(crate) fn load(&self) -> Result<Loaded, StoreError> {
        match self {
            LocalStore::Memory(map) => {
                let map = map.lock().unwrap_or_else(PoisonError::into_inner);
                let mut loaded = Loaded::default();
                for (team, tombstone) in map.values() {
                    loaded.teams.extend(team.as_deref().cloned());
                    loaded.tombstones.extend(tombstone.clone());
                }
                Ok(loaded)
            }
            LocalStore::Sqlite(store) => store.load(),
        }
    }

    /// Applies `changes` in order, all or none.
    pub(crate) async fn apply(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        match self {
            LocalStore::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                for change in changes {
                    match change {
                        Change::Put(team) => {
                            let id = team.team_id.clone();
                            map.entry(id).or_default().0 = Some(team);
                        }
                        Change::Bury(tombstone) => {
                            let entry = map.entry(tombstone.team_id.clone()).or_default();
                            entry.0 = None;
                            entry.1 = Some(tombstone.later(entry.1.as_ref()));
                        }
                    }
                }
                Ok(())
            }
            LocalStore::Sqlite(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.apply(&changes))
                    .await
                    .map_err(|_| StoreError::Lost)?
            }
        }
    }
}

/// Teams in a SQLite file.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the file at `path` in WAL mode, with the tables.
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let fail = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = crate::keys::store::sqlite::open_wal(path).map_err(fail)?;
        conn.execute_batch(CREATE).map_err(fail)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    fn fail(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut select = conn
            .prepare("SELECT record FROM teams")
            .map_err(|e| self.fail(e))?;
        let records = select
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| self.fail(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))?;
        let teams = records
            .iter()
            .map(|json| Team::from_json(json).map_err(StoreError::Corrupt))
            .collect::<Result<_, _>>()?;
        let mut select = conn
            .prepare("SELECT team_id, deleted_at_ms FROM team_tombstones")
            .map_err(|e| self.fail(e))?;
        let tombstones = select
            .query_map([], |row| {
                Ok(Tombstone {
                    team_id: row.get(0)?,
                    deleted_at_ms: row.get(1)?,
                })
            })
            .map_err(|e| self.fail(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(e))?;
        Ok(Loaded { teams, tombstones })
    }

    fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction().map_err(|e| self.fail(e))?;
        for change in changes {
            match change {
                Change::Put(team) => tx
                    .execute(
                        "INSERT OR REPLACE INTO teams (team_id, record) VALUES (?1, ?2)",
                        params![team.team_id, team.to_json()],
                    )
                    .map(drop),
                Change::Bury(tombstone) => tx
                    .execute("DELETE FROM teams WHERE team_id = ?1", [&tombstone.team_id])
                    .and_then(|_| {
                        tx.execute(
                            "INSERT INTO team_tombstones (team_id, deleted_at_ms) VALUES (?1, ?2) \
                             ON CONFLICT (team_id) DO UPDATE SET \
                             deleted_at_ms = max(deleted_at_ms, excluded.deleted_at_ms)",
                            params![tombstone.team_id, tombstone.deleted_at_ms],
                        )
                    })
                    .map(drop),
            }
            .map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_keeps_teams_and_deletions_across_a_reopen() {
        let dir = crate::temp_dir::TempDir::new("team-store");
        let path = dir.file();
        let store = LocalStore::Sqlite(Arc::new(SqliteStore::open(&path).unwrap()));
        let kept = Arc::new(Team::new("kept".into(), 1));
        let gone = Arc::new(Team::new("gone".into(), 1));
        store
            .apply(vec![
                Change::Put(kept.clone()),
                Change::Put(gone),
                Change::Bury(Tombstone {
                    team_id: "gone".into(),
                    deleted_at_ms: 5,
                }),
                Change::Bury(Tombstone {
                    team_id: "gone".into(),
                    deleted_at_ms: 3,
                }),
            ])
            .await
            .unwrap();
        drop(store);
        let loaded = SqliteStore::open(&path).unwrap().load().unwrap();
        assert_eq!(loaded.teams, vec![(*kept).clone()]);
        assert_eq!(
            loaded.tombstones,
            vec![Tombstone {
                team_id: "gone".into(),
                deleted_at_ms: 5
            }]
        );
    }
}
