//! [`LedgerError`]: what can go wrong opening, writing or reading the ledger.

use std::path::PathBuf;

/// An error from the spend ledger. Messages name the file and SQLite's
/// reason; they never hold row contents.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LedgerError {
    /// A [`LedgerConfig`](super::LedgerConfig) value is unusable.
    #[error("invalid ledger config: {0}")]
    Config(&'static str),
    /// The directory for the ledger file could not be created.
    #[error("cannot create the ledger directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The ledger file could not be opened or set up.
    #[error("cannot open the ledger {path}: {source}")]
    Open {
        /// The ledger file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// SQLite would not put the file in WAL mode (a filesystem without
    /// shared memory, for one).
    #[error("the ledger {path} cannot use WAL mode (journal_mode is {mode})")]
    NotWal {
        /// The ledger file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The file was written by a newer gateway, with a schema this one does
    /// not know.
    #[error(
        "the ledger {path} has schema version {found}, newer than this gateway's ({supported})"
    )]
    SchemaTooNew {
        /// The ledger file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this gateway knows.
        supported: i64,
    },
    /// The writer thread could not be started.
    #[error("cannot start the ledger writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A batch could not be committed; its rows stay queued for the next
    /// batch (or, at shutdown, are lost).
    #[error("writing {rows} ledger rows failed: {source}")]
    Write {
        /// The rows in the failed batch.
        rows: usize,
        /// Why.
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("ledger query failed: {0}")]
    Query(#[source] rusqlite::Error),
    /// A blocking query task panicked or was cancelled.
    #[error("ledger query task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The ledger is shut down (or its writer thread is gone).
    #[error("the ledger is shut down")]
    Closed,
    /// The writer thread panicked.
    #[error("the ledger writer thread panicked")]
    WriterPanicked,
}
