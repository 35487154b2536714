//! [`TempDir`]: a directory of its own for a unit test's files.

use std::path::PathBuf;

/// A unique directory under the system temp dir, removed on drop
/// (`tempfile` makes and removes it), with the ledger's file layout.
pub(crate) struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A fresh directory named after `test`.
    pub(crate) fn new(test: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tollgate-{test}-"))
            .tempdir()
            .expect("a temporary directory");
        TempDir(dir)
    }

    /// A SQLite file, in a subdirectory whoever opens it must create.
    pub(crate) fn file(&self) -> PathBuf {
        self.0.path().join("data").join("ledger.sqlite3")
    }
}
