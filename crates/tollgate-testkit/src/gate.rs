//! A latch the test opens to let a scripted stream continue.

use std::{fmt, sync::Arc};

use tokio::sync::watch;

/// A latch a test opens to release a scripted stream.
///
/// A [`Reply`](crate::Reply) body stops at [`Reply::wait`](crate::Reply::wait) until
/// the gate is opened, which lets a test order events across the wire: "the client
/// has seen chunk 1, now send chunk 2". Clones share one latch. Once open, a gate stays
/// open: every stream waiting on it, now or later, goes through.
#[derive(Clone)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
}

impl Gate {
    /// Creates a closed gate.
    pub fn new() -> Self {
        Self {
            open: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Opens the gate, releasing every stream waiting on it.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Returns whether the gate has been opened.
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Waits until the gate is open (returns at once if it already is).
    pub async fn opened(&self) {
        let mut open = self.open.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("open", &self.is_open())
            .finish()
    }
}
