// Wired into the gateway by the lead; remove when it is.
//! The spend ledger: an embedded SQLite store of cost records that survives
//! restarts.
//!
//! Every upstream attempt through the gateway becomes one [`LedgerRow`]:
//! request id, attempt, time, key name (never the key), model group,
//! deployment, tokens, outcome, and its cost in integer pico-dollars
//! (1e-12 $). Money is never a float here: the store holds integers, sums
//! are `i128`, and responses render exact decimal text
//! ([`picos_to_decimal`]).
//!
//! # Writing
//!
//! [`LedgerHandle::record`] never blocks the request path: it queues the row
//! in a bounded channel, and drops and counts it when the channel is full.
//! A dedicated OS thread, `tollgate-ledger`, commits rows in batches of one
//! transaction each: a batch closes at `batch_max_rows` rows or
//! `flush_interval` after its first row, whichever comes first. A failed
//! commit is logged and its rows are retried with the next batch.
//! [`Ledger::flush`] waits until everything recorded before it is on disk;
//! [`Ledger::shutdown`] writes everything queued and stops the thread.
//!
//! # Durability
//!
//! The file is in WAL mode with `synchronous=NORMAL`. A commit survives a
//! crash of the gateway process (`kill -9` included), so a process crash
//! loses only the rows not yet committed: those queued or in the open batch,
//! at most `flush_interval` or `batch_max_rows` worth, whichever comes
//! first. An OS crash or power loss may also lose the last commits not yet
//! checkpointed from the WAL.
//!
//! # Where it lives
//!
//! One SQLite file at [`LedgerConfig::path`] (its directory is created if
//! missing), with its `-wal` and `-shm` companions beside it; back up all
//! three, or run `sqlite3 FILE .backup` while the gateway runs.
//!
//! # Schema (version 3, in `PRAGMA user_version`; older files are migrated)
//!
//! ```sql
//! CREATE TABLE spend (
//!     id                   INTEGER PRIMARY KEY,
//!     request_id           TEXT    NOT NULL,
//!     attempt              INTEGER NOT NULL,
//!     ts_ms                INTEGER NOT NULL,  -- unix ms, wall clock
//!     day                  TEXT    NOT NULL,  -- UTC YYYY-MM-DD of ts_ms
//!     key_name             TEXT,              -- key alias, never a key
//!     model_group          TEXT,
//!     deployment           TEXT,
//!     upstream_model       TEXT,
//!     stream               INTEGER NOT NULL,  -- 0 or 1
//!     outcome              TEXT    NOT NULL,  -- success | failure | cancelled | shutdown
//!     error_class          TEXT,
//!     prompt_tokens        INTEGER NOT NULL,
//!     completion_tokens    INTEGER NOT NULL,
//!     cached_prompt_tokens INTEGER NOT NULL,
//!     reasoning_tokens     INTEGER NOT NULL,
//!     usage_estimated      INTEGER NOT NULL,  -- 0 or 1
//!     cost_picos           INTEGER,           -- 1e-12 $; NULL = price unknown
//!     cost_source          TEXT    NOT NULL,  -- provider | price_table | free | unknown | not_billed
//!     team_id              TEXT               -- the key's team (v2)
//!     end_user             TEXT               -- the request's `user` (v3)
//! );
//! CREATE INDEX spend_day_key ON spend (day, key_name);
//! CREATE INDEX spend_day_model ON spend (day, model_group);
//! -- Partial: a row without a team or end user costs its insert no seek.
//! CREATE INDEX spend_day_team ON spend (day, team_id)
//!     WHERE team_id IS NOT NULL;                                  -- v2
//! CREATE INDEX spend_end_user_day ON spend (end_user, day)
//!     WHERE end_user IS NOT NULL;                                 -- v3
//! ```
//!
//! Counts and costs are `u64` stored bit for bit in SQLite's `i64` (the same
//! number below 2^63), and summed without overflow (see `store.rs`).
//!
//! # Reading
//!
//! Queries run on a separate read-only connection (WAL lets it read beside
//! the writer) on tokio's blocking pool: [`Ledger::logs`],
//! [`Ledger::summary`], [`Ledger::totals`]. [`http`] serves them as JSON.

pub(crate) mod day;
mod error;
pub(crate) mod http;
mod money;
mod query;
mod row;
mod store;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

pub(crate) use error::LedgerError;
pub(crate) use money::{picos_to_decimal, picos_to_decimal_i128};
pub(crate) use query::{GroupBy, LogFilter, QueryError, RowFilter, SummaryFilter};
pub(crate) use row::{CostSource, LedgerRow, Outcome};
pub(crate) use store::SummaryRow;
pub(crate) use writer::{LedgerHandle, LedgerStats};

/// The ledger file name the gateway proposes, in its working directory.
pub const DEFAULT_LEDGER_FILE: &str = "tollgate-ledger.sqlite3";
/// Rows per batch, at most.
pub(crate) const DEFAULT_BATCH_MAX_ROWS: usize = 512;
/// How long a batch stays open after its first row, at most.
pub(crate) const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Rows waiting for the writer, at most, before new ones are dropped.
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

/// Where the ledger lives and how it batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerConfig {
    /// The SQLite file; its directory is created if missing.
    pub(crate) path: PathBuf,
    /// A batch closes at this many rows (at least 1).
    pub(crate) batch_max_rows: usize,
    /// A batch closes this long after its first row: the most a process
    /// crash can lose.
    pub(crate) flush_interval: Duration,
    /// Rows queued for the writer (and, after a failed commit, kept for the
    /// retry), at most; beyond it rows are dropped and counted (at least 1).
    pub(crate) queue_capacity: usize,
}

impl LedgerConfig {
    /// The defaults, with the file at `path`.
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        LedgerConfig {
            path: path.into(),
            batch_max_rows: DEFAULT_BATCH_MAX_ROWS,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    fn validate(&self) -> Result<(), LedgerError> {
        if self.batch_max_rows == 0 {
            return Err(LedgerError::Config("batch_max_rows must be at least 1"));
        }
        if self.queue_capacity == 0 {
            return Err(LedgerError::Config("queue_capacity must be at least 1"));
        }
        if self.path.as_os_str().is_empty() {
            return Err(LedgerError::Config("the ledger path is empty"));
        }
        Ok(())
    }
}

/// The spend ledger: the writer thread, a handle to record rows, and a
/// read-only connection for queries.
///
/// Shut it down with [`shutdown`](Self::shutdown) so queued rows reach the
/// disk; dropping it does the same, blocking the dropping thread.
pub(crate) struct Ledger {
    path: PathBuf,
    handle: LedgerHandle,
    reader: Arc<Mutex<Connection>>,
    writer: Mutex<Option<JoinHandle<Result<(), LedgerError>>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (or creates) the ledger file, migrates its schema and starts
    /// the writer thread. Blocking (file I/O): call it at startup or from
    /// `spawn_blocking`.
    pub(crate) fn open(config: LedgerConfig) -> Result<Ledger, LedgerError> {
        config.validate()?;
        let conn = store::open_writer(&config.path)?;
        let reader = store::open_reader(&config.path)?;
        let (handle, rx) = writer::channel(config.queue_capacity);
        let policy = writer::BatchPolicy {
            max_rows: config.batch_max_rows,
            interval: config.flush_interval,
        };
        let thread = writer::spawn(
            conn,
            rx,
            policy,
            config.queue_capacity,
            Arc::clone(handle.shared()),
        )
        .map_err(LedgerError::Spawn)?;
        tracing::info!(
            target: "tollgate::ledger",
            path = %config.path.display(),
            "spend ledger open"
        );
        Ok(Ledger {
            path: config.path,
            handle,
            reader: Arc::new(Mutex::new(reader)),
            writer: Mutex::new(Some(thread)),
        })
    }

    /// A handle to record rows with; cheap to clone.
    pub(crate) fn handle(&self) -> LedgerHandle {
        self.handle.clone()
    }

    /// The counters: rows written, batches, write errors, rows dropped.
    pub(crate) fn stats(&self) -> LedgerStats {
        self.handle.shared().stats()
    }

    /// Returns once every row recorded before the call is committed, or the
    /// commit failed (the rows then stay queued for a retry).
    ///
    /// Blocking: from async code, call it in `spawn_blocking`.
    pub(crate) fn flush(&self) -> Result<(), LedgerError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.handle.send_blocking(writer::Msg::Flush(reply))?;
        answer.recv().map_err(|_| LedgerError::Closed)?
    }

    /// Stops taking rows (later ones are dropped and counted), commits
    /// everything queued, and joins the writer thread. Idempotent; queries
    /// keep working afterwards. Stop the traffic first: a row recorded in
    /// the instant the writer takes its last look at the queue is lost
    /// without being counted.
    ///
    /// Blocking: from async code, call it in `spawn_blocking` (the ledger
    /// behind an `Arc` is fine, as this takes `&self`). An error means the
    /// last rows could not be written and are lost.
    pub(crate) fn shutdown(&self) -> Result<(), LedgerError> {
        let thread = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(thread) = thread else {
            return Ok(());
        };
        self.handle.shared().close();
        // If the thread is already gone, joining tells why.
        let _ = self.handle.send_blocking(writer::Msg::Shutdown);
        let result = thread.join().unwrap_or(Err(LedgerError::WriterPanicked));
        tracing::info!(
            target: "tollgate::ledger",
            stats = ?self.stats(),
            "spend ledger shut down"
        );
        result
    }

    /// What the key named `key` was billed since `since_ms` (unix ms), in
    /// picos.
    pub(crate) async fn billed_since(&self, key: &str, since_ms: i64) -> Result<u128, LedgerError> {
        let key = key.to_owned();
        self.read(move |conn| store::billed_since(conn, store::Payer::Key, &key, since_ms))
            .await
    }

    /// What the team `team` was billed since `since_ms` (unix ms), in
    /// picos.
    pub(crate) async fn team_billed_since(
        &self,
        team: &str,
        since_ms: i64,
    ) -> Result<u128, LedgerError> {
        let team = team.to_owned();
        self.read(move |conn| store::billed_since(conn, store::Payer::Team, &team, since_ms))
            .await
    }

    /// What the end user `user` was billed since `since_ms` (unix ms), in
    /// picos.
    pub(crate) async fn billed_to_end_user_since(
        &self,
        user: &str,
        since_ms: i64,
    ) -> Result<u128, LedgerError> {
        let user = user.to_owned();
        self.read(move |conn| store::billed_since(conn, store::Payer::EndUser, &user, since_ms))
            .await
    }

    /// The rows matching `filter`, newest first.
    pub(crate) async fn logs(&self, filter: &LogFilter) -> Result<Vec<LedgerRow>, LedgerError> {
        let filter = filter.clone();
        self.read(move |conn| store::logs(conn, &filter)).await
    }

    /// Sums per group of the rows matching `filter`.
    pub(crate) async fn summary(
        &self,
        filter: &SummaryFilter,
    ) -> Result<Vec<SummaryRow>, LedgerError> {
        let filter = filter.clone();
        self.read(move |conn| store::summary(conn, &filter)).await
    }

    /// The number of committed rows and the sum of their known costs, in
    /// picos.
    #[cfg(test)]
    pub(crate) async fn totals(&self) -> Result<(u64, i128), LedgerError> {
        self.read(store::totals).await
    }

    /// Runs `query` on the read-only connection, on the blocking pool.
    async fn read<T, F>(&self, query: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(PoisonError::into_inner);
            query(&conn).map_err(LedgerError::Query)
        })
        .await
        .map_err(LedgerError::Task)?
    }

    #[cfg(test)]
    fn shared(&self) -> &Arc<writer::Shared> {
        self.handle.shared()
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(target: "tollgate::ledger", %error, "spend ledger shutdown failed");
        }
    }
}
