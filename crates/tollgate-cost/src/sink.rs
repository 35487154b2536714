//! [`CostSink`]: where records go.

use std::sync::Arc;

use crate::record::CostRecord;

/// Receives the [`CostRecord`] of every call.
///
/// `record` is called on the response path — from a body's `poll_frame` or
/// `drop` — so it must return at once: never block, never wait. A sink that
/// writes somewhere slow (a database, a ledger file) pushes into a bounded
/// queue that a task drains, and counts what it has to drop when the queue
/// is full.
///
/// Closures are sinks, and so is an `Arc` of one:
///
/// ```
/// use std::sync::Arc;
/// use tollgate_cost::{CostRecord, CostSink};
///
/// let (tx, _rx) = tokio::sync::mpsc::channel::<CostRecord>(1024);
/// let sink = move |record: CostRecord| {
///     // Full: drop it (and count it, in a real sink).
///     let _ = tx.try_send(record);
/// };
/// fn takes(_: impl CostSink) {}
/// takes(Arc::new(sink));
/// ```
pub trait CostSink: Send + Sync + 'static {
    /// Takes one record. Must not block.
    fn record(&self, record: CostRecord);
}

impl<F> CostSink for F
where
    F: Fn(CostRecord) + Send + Sync + 'static,
{
    fn record(&self, record: CostRecord) {
        self(record)
    }
}

impl<S: CostSink + ?Sized> CostSink for Arc<S> {
    fn record(&self, record: CostRecord) {
        (**self).record(record)
    }
}
