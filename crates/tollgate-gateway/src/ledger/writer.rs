//! Writing off the hot path: [`LedgerHandle`] queues rows without blocking,
//! and one OS thread (`tollgate-ledger`) commits them in batches.
//!
//! The queue is a `std::sync::mpsc` channel bounded by a count of the rows
//! in it: `sync_channel` would allocate (and initialise) every slot of its
//! 65,536 up front, 1.5 MiB resident from the start, where this one holds
//! memory only for the rows waiting in it. The writer thread
//! follows [`BatchPolicy`], a pure function of the open batch's size and
//! age: a batch closes at `batch_max_rows` rows or `flush_interval` after its
//! first row, whichever comes first, and is committed in one transaction.
//! A batch that fails to commit stays pending and is retried, with whatever
//! arrived meanwhile, once per retry delay; pending rows are bounded by the
//! queue capacity, beyond which new rows are dropped and counted.
//!
//! Rows do not wake the writer one by one — a wake-up per row would cost
//! the request path a futex call and a context switch each. The first row
//! of a batch wakes it (it waits on the queue only when nothing is
//! pending); then it sleeps until the batch is due and takes everything
//! queued at once. A handle wakes it early every `batch_max_rows` rows, and
//! control messages (flush, shutdown) always do.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel as unbounded};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::time::Instant;

use super::LedgerError;
use super::row::LedgerRow;
use super::store;

/// The shortest wait before a failed batch is tried again, so a broken disk
/// with a zero `flush_interval` does not spin.
pub(crate) const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);

/// How often, at most, dropped rows are logged.
const DROP_LOG_EVERY: Duration = Duration::from_secs(1);

/// What the writer thread receives.
pub(crate) enum Msg {
    /// A row to write (boxed: the queue moves a pointer, not the row).
    Row(Box<LedgerRow>),
    /// Write everything pending now, then answer.
    Flush(SyncSender<Result<(), LedgerError>>),
    /// Write everything queued, then stop.
    Shutdown,
}

/// When the open batch closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchPolicy {
    /// Close at this many rows.
    pub(crate) max_rows: usize,
    /// Close this long after the first row.
    pub(crate) interval: Duration,
}

/// What the writer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Commit the pending rows now.
    Write,
    /// Wait for a message at most this long, then ask again.
    WaitFor(Duration),
    /// Nothing pending: wait for a message, however long.
    Idle,
}

impl BatchPolicy {
    /// How long after a failed commit the next try comes.
    pub(crate) fn retry_delay(&self) -> Duration {
        self.interval.max(MIN_RETRY_DELAY)
    }

    /// The next step with `pending` rows, the oldest pending since `age`
    /// (or, after a failed commit, the failure since `age`: `retrying`).
    ///
    /// While retrying, size does not close a batch (the failed rows alone
    /// may exceed it): only the retry delay does.
    pub(crate) fn step(&self, pending: usize, age: Duration, retrying: bool) -> Step {
        if pending == 0 {
            return Step::Idle;
        }
        let due = if retrying {
            self.retry_delay()
        } else if pending >= self.max_rows {
            return Step::Write;
        } else {
            self.interval
        };
        match due.checked_sub(age) {
            Some(left) if !left.is_zero() => Step::WaitFor(left),
            _ => Step::Write,
        }
    }
}

/// Counters shared by the handles, the writer and the ledger.
#[derive(Debug)]
pub(crate) struct Shared {
    closed: AtomicBool,
    dropped: AtomicU64,
    written: AtomicU64,
    batches: AtomicU64,
    write_errors: AtomicU64,
    /// Milliseconds since `epoch` of the last drop log; `u64::MAX` if none.
    last_drop_log_ms: AtomicU64,
    epoch: Instant,
    /// Signalled after each committed batch (tests wait on it).
    progress: (Mutex<()>, Condvar),
    /// Rows sent and not yet taken by the writer.
    queued: AtomicUsize,
    /// The most rows the queue holds.
    capacity: usize,
    /// A handle wakes the writer every this many rows.
    wake_every: AtomicUsize,
    /// The writer thread, to wake it.
    writer: OnceLock<std::thread::Thread>,
}

impl Shared {
    fn new(capacity: usize) -> Self {
        Shared {
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            last_drop_log_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            progress: (Mutex::new(()), Condvar::new()),
            queued: AtomicUsize::new(0),
            capacity,
            wake_every: AtomicUsize::new(usize::MAX),
            writer: OnceLock::new(),
        }
    }

    fn wake_writer(&self) {
        if let Some(thread) = self.writer.get() {
            thread.unpark();
        }
    }

    /// Counts a dropped row, and logs at most once per [`DROP_LOG_EVERY`].
    fn note_dropped(&self, reason: &'static str) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_drop_log_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= DROP_LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_drop_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                target: "tollgate::ledger",
                reason,
                dropped_total = total,
                "spend ledger dropped a cost record"
            );
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn stats(&self) -> LedgerStats {
        LedgerStats {
            rows_written: self.written.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Waits until at least `batches` batches are committed, or `limit`
    /// passes; returns whether they were.
    #[cfg(test)]
    pub(crate) fn wait_for_batches(&self, batches: u64, limit: Duration) -> bool {
        let (lock, signal) = &self.progress;
        let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (_guard, timeout) = signal
            .wait_timeout_while(guard, limit, |_| {
                self.batches.load(Ordering::Acquire) < batches
            })
            .unwrap_or_else(PoisonError::into_inner);
        !timeout.timed_out()
    }
}

/// The ledger's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LedgerStats {
    /// Rows committed.
    pub(crate) rows_written: u64,
    /// Batches committed.
    pub(crate) batches: u64,
    /// Commits that failed (their rows were kept for the next try).
    pub(crate) write_errors: u64,
    /// Rows dropped: queue full, pending rows at capacity, or recorded after
    /// shutdown.
    pub(crate) dropped: u64,
}

/// Records rows into the ledger; clone it freely (an `Arc` and a channel
/// sender).
#[derive(Clone)]
pub(crate) struct LedgerHandle {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LedgerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerHandle")
            .field("stats", &self.shared.stats())
            .finish_non_exhaustive()
    }
}

impl LedgerHandle {
    /// Queues `row` for the writer. Never blocks: when the queue is full,
    /// or the ledger is shut down, the row is dropped and counted
    /// ([`dropped`](Self::dropped)), with an error log at most once a
    /// second.
    pub(crate) fn record(&self, row: LedgerRow) {
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.note_dropped("ledger shut down");
            return;
        }
        // Counted before the send: the writer may take the row (and count
        // it out) before `send` even returns.
        let queued = self
            .shared
            .queued
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        if queued > self.shared.capacity {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.note_dropped("queue full");
            return;
        }
        match self.tx.send(Msg::Row(Box::new(row))) {
            Ok(()) => {
                if queued.is_multiple_of(self.shared.wake_every.load(Ordering::Relaxed)) {
                    self.shared.wake_writer();
                }
            }
            Err(_) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                self.shared.note_dropped("writer stopped");
            }
        }
    }

    /// Rows dropped so far.
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Sends a control message (never counted against the capacity, so a
    /// flush or a shutdown always gets through) and wakes the writer for it.
    pub(crate) fn send_blocking(&self, msg: Msg) -> Result<(), LedgerError> {
        self.tx.send(msg).map_err(|_| LedgerError::Closed)?;
        self.shared.wake_writer();
        Ok(())
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// A handle and the receiving end of its queue of at most `capacity` rows.
pub(crate) fn channel(capacity: usize) -> (LedgerHandle, Receiver<Msg>) {
    let (tx, rx) = unbounded();
    let shared = Arc::new(Shared::new(capacity));
    (LedgerHandle { tx, shared }, rx)
}

/// Starts the `tollgate-ledger` thread writing what `rx` receives to `conn`;
/// at most `max_pending` rows wait in memory.
pub(crate) fn spawn(
    conn: Connection,
    rx: Receiver<Msg>,
    policy: BatchPolicy,
    max_pending: usize,
    shared: Arc<Shared>,
) -> std::io::Result<JoinHandle<Result<(), LedgerError>>> {
    shared
        .wake_every
        .store(policy.max_rows.max(1), Ordering::Relaxed);
    let writer = Writer {
        conn,
        rx,
        policy,
        max_pending: max_pending.max(policy.max_rows),
        shared,
        pending: Vec::with_capacity(policy.max_rows),
        opened: None,
        retrying: false,
        stopping: false,
    };
    std::thread::Builder::new()
        .name("tollgate-ledger".into())
        .spawn(move || writer.run())
}

struct Writer {
    conn: Connection,
    rx: Receiver<Msg>,
    policy: BatchPolicy,
    max_pending: usize,
    shared: Arc<Shared>,
    /// Rows not yet committed, oldest first.
    pending: Vec<LedgerRow>,
    /// When the first pending row arrived, or the last commit failed.
    opened: Option<Instant>,
    /// Whether the last commit failed.
    retrying: bool,
    /// Whether shutdown was asked: drain the queue without waiting.
    stopping: bool,
}

impl Writer {
    fn run(mut self) -> Result<(), LedgerError> {
        let _ = self.shared.writer.set(std::thread::current());
        loop {
            if !self.take_queued() || self.stopping {
                return self.finish();
            }
            let age = self.opened.map_or(Duration::ZERO, |at| at.elapsed());
            match self.policy.step(self.pending.len(), age, self.retrying) {
                // A failure is logged, counted and kept for the next try.
                Step::Write => {
                    let due = age >= self.policy.interval || self.retrying;
                    drop(self.write(due));
                }
                // Rows pile up in the queue meanwhile; a handle or a control
                // message wakes the thread early.
                Step::WaitFor(wait) => std::thread::park_timeout(wait),
                Step::Idle => match self.rx.recv() {
                    Ok(msg) => self.handle(msg),
                    // Every handle is gone: nothing more can come.
                    Err(_) => return self.finish(),
                },
            }
        }
    }

    /// Takes every queued message; false once every handle is gone.
    fn take_queued(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(msg) => self.handle(msg),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Row(row) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                self.push(*row);
            }
            Msg::Flush(reply) => {
                let _ = reply.send(self.write(true));
            }
            Msg::Shutdown => self.stopping = true,
        }
    }

    fn push(&mut self, row: LedgerRow) {
        if self.pending.len() >= self.max_pending {
            self.shared.note_dropped("pending rows at capacity");
            return;
        }
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
        self.pending.push(row);
    }

    /// Commits the pending rows, `max_rows` to a transaction: every full
    /// batch, and with `all` the rest too.
    fn write(&mut self, all: bool) -> Result<(), LedgerError> {
        while self.pending.len() >= self.policy.max_rows || (all && !self.pending.is_empty()) {
            self.commit(self.pending.len().min(self.policy.max_rows))?;
        }
        Ok(())
    }

    /// Commits the oldest `rows` pending rows in one transaction.
    fn commit(&mut self, rows: usize) -> Result<(), LedgerError> {
        match store::insert_batch(&mut self.conn, &self.pending[..rows]) {
            Ok(()) => {
                self.pending.drain(..rows);
                if self.pending.is_empty() {
                    self.pending.shrink_to(self.policy.max_rows);
                    self.opened = None;
                }
                self.retrying = false;
                self.shared
                    .written
                    .fetch_add(rows as u64, Ordering::Relaxed);
                self.shared.batches.fetch_add(1, Ordering::Release);
                let _guard = self
                    .shared
                    .progress
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                self.shared.progress.1.notify_all();
                Ok(())
            }
            Err(source) => {
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                self.opened = Some(Instant::now());
                self.retrying = true;
                tracing::error!(
                    target: "tollgate::ledger",
                    rows,
                    error = %source,
                    "spend ledger write failed; the rows stay queued for the next batch"
                );
                Err(LedgerError::Write { rows, source })
            }
        }
    }

    /// The last commit before the thread ends.
    fn finish(mut self) -> Result<(), LedgerError> {
        let result = self.write(true);
        if let Err(error) = &result {
            tracing::error!(
                target: "tollgate::ledger",
                %error,
                "spend ledger stopped with rows it could not write; they are lost"
            );
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BatchPolicy = BatchPolicy {
        max_rows: 3,
        interval: Duration::from_secs(1),
    };

    #[test]
    fn nothing_pending_waits_for_a_row() {
        assert_eq!(POLICY.step(0, Duration::ZERO, false), Step::Idle);
        assert_eq!(POLICY.step(0, Duration::from_secs(9), false), Step::Idle);
    }

    #[test]
    fn batch_closes_at_max_rows() {
        assert_eq!(
            POLICY.step(2, Duration::ZERO, false),
            Step::WaitFor(Duration::from_secs(1))
        );
        assert_eq!(POLICY.step(3, Duration::ZERO, false), Step::Write);
        assert_eq!(POLICY.step(4, Duration::ZERO, false), Step::Write);
    }

    #[test]
    fn batch_closes_at_interval_after_its_first_row() {
        assert_eq!(
            POLICY.step(1, Duration::from_millis(400), false),
            Step::WaitFor(Duration::from_millis(600))
        );
        assert_eq!(POLICY.step(1, Duration::from_secs(1), false), Step::Write);
        assert_eq!(POLICY.step(1, Duration::from_secs(5), false), Step::Write);
    }

    #[test]
    fn zero_interval_writes_every_row_at_once() {
        let policy = BatchPolicy {
            max_rows: 512,
            interval: Duration::ZERO,
        };
        assert_eq!(policy.step(1, Duration::ZERO, false), Step::Write);
    }

    #[test]
    fn a_failed_batch_waits_the_retry_delay_whatever_its_size() {
        assert_eq!(
            POLICY.step(10, Duration::from_millis(250), true),
            Step::WaitFor(Duration::from_millis(750))
        );
        assert_eq!(POLICY.step(10, Duration::from_secs(1), true), Step::Write);
        let eager = BatchPolicy {
            max_rows: 1,
            interval: Duration::ZERO,
        };
        assert_eq!(eager.retry_delay(), MIN_RETRY_DELAY);
        assert_eq!(
            eager.step(5, Duration::ZERO, true),
            Step::WaitFor(MIN_RETRY_DELAY)
        );
    }
}
