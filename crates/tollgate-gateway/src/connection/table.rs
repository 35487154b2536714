//! The open connections: the cap, the reserve, and what the timers of each
//! connection read.
//!
//! Each connection's [`ConnState`] is a few atomics its own tasks update —
//! requests in flight, since when it is idle, since when a head is
//! incomplete — and a waker for its [`Watched`](super::Watched) driver, woken
//! only when a deadline may have moved earlier. The [`Table`]'s lock is
//! taken when a connection opens or closes and when one is evicted, never
//! per request.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Idle connections compared to choose the one to evict: an approximate
/// least-recently-used choice (as Redis samples keys), so that eviction
/// does not scan every connection.
const EVICTION_SAMPLE: usize = 16;

/// Which slot a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Slot {
    /// One of the cap's.
    Regular = 0,
    /// One of the reserve's: health checks only, or a wait for a regular
    /// slot.
    Reserve = 1,
    /// Given up to a newer connection; no longer counted.
    Evicted = 2,
}

impl Slot {
    fn from_u8(value: u8) -> Slot {
        match value {
            0 => Slot::Regular,
            1 => Slot::Reserve,
            _ => Slot::Evicted,
        }
    }
}

/// Milliseconds since the table's epoch, on tokio's clock (so paused time
/// in tests moves it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Now, in milliseconds since the epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant `ms` milliseconds after the epoch.
    pub(crate) fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }
}

thread_local! {
    /// The address of the connection whose driver is polling its
    /// connection on this thread (0: none): a change made from inside that
    /// poll needs no wake, since the driver reads the state right after.
    static DRIVING: Cell<usize> = const { Cell::new(0) };
}

/// Restores the previous [`DRIVING`] when the poll returns or unwinds.
struct Driving(usize);

impl Drop for Driving {
    fn drop(&mut self) {
        DRIVING.set(self.0);
    }
}

/// One connection's state, shared by its driver, its I/O and its requests.
#[derive(Debug)]
pub(crate) struct ConnState {
    index: usize,
    pub(crate) clock: Clock,
    slot: AtomicU8,
    in_flight: AtomicU32,
    /// When the last request ended (or the connection opened).
    idle_since: AtomicU64,
    /// When the incomplete request head began, plus one; 0 for none.
    head_since: AtomicU64,
    /// Close the connection as soon as it has no request in flight.
    close_when_idle: AtomicBool,
    /// The server is shutting down.
    shutdown: AtomicBool,
    waker: AtomicWaker,
}

impl ConnState {
    fn new(index: usize, clock: Clock, slot: Slot) -> Self {
        ConnState {
            index,
            clock,
            slot: AtomicU8::new(slot as u8),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(clock.now_ms()),
            head_since: AtomicU64::new(0),
            close_when_idle: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// The slot the connection holds.
    pub(crate) fn slot(&self) -> Slot {
        Slot::from_u8(self.slot.load(Ordering::Acquire))
    }

    /// Requests in flight: from the service's call to the end (or drop) of
    /// the response body.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Since when the connection has had no request in flight.
    pub(crate) fn idle_since(&self) -> u64 {
        self.idle_since.load(Ordering::Acquire)
    }

    /// Since when a request head has been incomplete, if one is.
    pub(crate) fn head_since(&self) -> Option<u64> {
        self.head_since.load(Ordering::Acquire).checked_sub(1)
    }

    /// Whether the connection should close once idle.
    pub(crate) fn closes_when_idle(&self) -> bool {
        self.close_when_idle.load(Ordering::Acquire)
    }

    /// Whether the server is shutting down.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// The driver is polled now: wake it with this later.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Runs `poll` (the driver's poll of its connection) with the wakes
    /// of this connection's own changes made inside it skipped: the HTTP/1
    /// request path would otherwise poll its connection once more per
    /// request for nothing.
    pub(crate) fn driving<R>(&self, poll: impl FnOnce() -> R) -> R {
        let _restore = Driving(DRIVING.replace(self.address()));
        poll()
    }

    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Wakes the driver, unless it is the one polling here and now.
    fn wake(&self) {
        if DRIVING.get() != self.address() {
            self.waker.wake();
        }
    }

    /// A request head began (its first byte, or an HTTP/2 `HEADERS`
    /// frame). The driver's deadline may now be earlier.
    pub(crate) fn head_started(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since
                .store(self.clock.now_ms() + 1, Ordering::Release);
            self.wake();
        }
    }

    /// The request head is complete. (The driver's stale deadline, if it
    /// fires, is recomputed: no wake needed.)
    pub(crate) fn head_finished(&self) {
        self.head_since.store(0, Ordering::Release);
    }

    /// A request reached the service.
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A request's response ended or was dropped; at the last one, the
    /// idle timer starts.
    pub(crate) fn request_ended(&self, table: &Table) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since
                .store(self.clock.now_ms(), Ordering::Release);
            self.wake();
            // A request waiting in the reserve may take this connection's
            // slot now.
            if table.waiting.load(Ordering::Acquire) > 0 {
                table.freed.notify_waiters();
            }
        }
    }

    /// Closes the connection as soon as it has no request in flight.
    pub(crate) fn close_when_idle(&self) {
        self.close_when_idle.store(true, Ordering::Release);
        self.wake();
    }

    fn evict(&self) {
        self.slot.store(Slot::Evicted as u8, Ordering::Release);
        self.wake();
    }

    fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.wake();
    }
}

/// Where a new connection goes.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A slot of the cap's or of the reserve's; the guard gives it back.
    Admitted(Held),
    /// Beyond the cap and the reserve, with no idle connection to give way:
    /// close it.
    Refused,
}

/// The open connections and the cap on them. Cheap to share.
#[derive(Debug)]
pub(crate) struct Table {
    slots: Mutex<Slots>,
    max: usize,
    reserve: usize,
    clock: Clock,
    /// A regular slot may have come free (a connection closed or went idle).
    freed: Notify,
    /// Requests waiting in the reserve for a regular slot.
    waiting: AtomicUsize,
    /// The last connection closed.
    emptied: Notify,
    /// Where the count of open connections goes.
    metrics: Metrics,
}

#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Option<Arc<ConnState>>>,
    free: Vec<usize>,
    regular: usize,
    reserve: usize,
    open: usize,
    /// Where the next eviction scan starts.
    cursor: usize,
    shutting_down: bool,
}

impl Table {
    /// A table for `max` regular connections and `reserve` more, counting
    /// open connections in `metrics`.
    pub(crate) fn new(max: usize, reserve: usize, metrics: Metrics) -> Arc<Table> {
        Arc::new(Table {
            slots: Mutex::new(Slots::default()),
            max,
            reserve,
            clock: Clock::new(),
            freed: Notify::new(),
            waiting: AtomicUsize::new(0),
            emptied: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open, whatever their slot.
    pub(crate) fn open(&self) -> usize {
        self.lock().open
    }

    /// Finds a slot for a new connection: a free regular one, else the
    /// regular slot of the connection idle the longest (evicted), else the
    /// same in the reserve. `evicted` is told when a connection was evicted.
    pub(crate) fn admit(self: &Arc<Self>, mut evicted: impl FnMut()) -> Admission {
        let mut slots = self.lock();
        let slot = if slots.regular < self.max {
            Slot::Regular
        } else if let Some(victim) = slots.idle_victim(Slot::Regular, None) {
            slots.release(&victim);
            victim.evict();
            evicted();
            Slot::Regular
        } else if slots.reserve < self.reserve {
            Slot::Reserve
        } else if let Some(victim) = slots.idle_victim(Slot::Reserve, None) {
            slots.release(&victim);
            victim.evict();
            evicted();
            Slot::Reserve
        } else {
            return Admission::Refused;
        };
        let index = slots.free.pop().unwrap_or_else(|| {
            slots.entries.push(None);
            slots.entries.len() - 1
        });
        let state = Arc::new(ConnState::new(index, self.clock, slot));
        slots.entries[index] = Some(state.clone());
        slots.open += 1;
        self.metrics.connections_open(slots.open);
        match slot {
            Slot::Regular => slots.regular += 1,
            _ => slots.reserve += 1,
        }
        Admission::Admitted(Held {
            table: self.clone(),
            state,
        })
    }

    /// Moves a reserve connection to a regular slot if one is free or can
    /// be freed, waiting up to `wait` for one. `evicted` as for
    /// [`admit`](Self::admit).
    pub(crate) async fn promote(
        &self,
        state: &ConnState,
        wait: Duration,
        mut evicted: impl FnMut(),
    ) -> bool {
        let deadline = Instant::now() + wait;
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let promoted = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.try_promote(state, &mut evicted) {
                break true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break self.try_promote(state, &mut evicted);
            }
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        promoted
    }

    fn try_promote(&self, state: &ConnState, evicted: &mut impl FnMut()) -> bool {
        let mut slots = self.lock();
        if state.slot() != Slot::Reserve || slots.shutting_down {
            return false;
        }
        if slots.regular >= self.max {
            let Some(victim) = slots.idle_victim(Slot::Regular, Some(state.index)) else {
                return false;
            };
            slots.release(&victim);
            victim.evict();
            evicted();
        }
        slots.reserve -= 1;
        slots.regular += 1;
        state.slot.store(Slot::Regular as u8, Ordering::Release);
        true
    }

    /// Tells every connection the server is shutting down.
    pub(crate) fn begin_shutdown(&self) {
        let mut slots = self.lock();
        slots.shutting_down = true;
        for state in slots.entries.iter().flatten() {
            state.begin_shutdown();
        }
    }

    /// Returns once no connection is open.
    pub(crate) async fn closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            emptied.await;
        }
    }

    fn remove(&self, state: &ConnState) {
        let mut slots = self.lock();
        slots.release(state);
        slots.entries[state.index] = None;
        slots.free.push(state.index);
        slots.open -= 1;
        self.metrics.connections_open(slots.open);
        let empty = slots.open == 0;
        drop(slots);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
        if empty {
            self.emptied.notify_waiters();
        }
    }
}

impl Slots {
    /// Gives back the slot `state` holds (once: it is then `Evicted`).
    fn release(&mut self, state: &ConnState) {
        match Slot::from_u8(state.slot.swap(Slot::Evicted as u8, Ordering::AcqRel)) {
            Slot::Regular => self.regular -= 1,
            Slot::Reserve => self.reserve -= 1,
            Slot::Evicted => {}
        }
    }

    /// Of (about) the [`EVICTION_SAMPLE`] idle connections in `slot` met
    /// first from the cursor on, the one idle the longest; scans on through
    /// all of them only while it has met none.
    fn idle_victim(&mut self, slot: Slot, except: Option<usize>) -> Option<Arc<ConnState>> {
        let len = self.entries.len();
        let mut best: Option<&Arc<ConnState>> = None;
        let mut seen = 0;
        let mut scanned = 0;
        while scanned < len && seen < EVICTION_SAMPLE {
            let index = (self.cursor + scanned) % len;
            scanned += 1;
            let Some(state) = &self.entries[index] else {
                continue;
            };
            if state.slot() != slot || state.in_flight() > 0 || Some(index) == except {
                continue;
            }
            seen += 1;
            if best.is_none_or(|b| state.idle_since() < b.idle_since()) {
                best = Some(state);
            }
        }
        let best = best.cloned();
        if len > 0 {
            self.cursor = (self.cursor + scanned) % len;
        }
        best
    }
}

/// A connection's hold on its slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Held {
    table: Arc<Table>,
    state: Arc<ConnState>,
}

impl Held {
    /// The connection's state.
    pub(crate) fn state(&self) -> &Arc<ConnState> {
        &self.state
    }

    /// The table the connection is in.
    pub(crate) fn table(&self) -> &Arc<Table> {
        &self.table
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.table.remove(&self.state);
    }
}

/// The server's side of a graceful shutdown of every connection (in place
/// of hyper-util's `GracefulShutdown`, which drives hyper's connections
/// only: ours are wrapped in [`Watched`](super::Watched)).
#[derive(Debug)]
pub(crate) struct Graceful(Arc<Table>);

impl Graceful {
    /// The shutdown of `table`'s connections.
    pub(crate) fn new(table: Arc<Table>) -> Self {
        Graceful(table)
    }

    /// Asks every connection to finish its requests and close; returns
    /// once all have closed.
    pub(crate) async fn shutdown(self) {
        self.0.begin_shutdown();
        self.0.closed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(admission: Admission) -> Held {
        match admission {
            Admission::Admitted(held) => held,
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_gives_way() {
        let table = Table::new(2, 1, Metrics::new());
        let mut evictions = 0;
        let first = held(table.admit(|| evictions += 1));
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = held(table.admit(|| evictions += 1));
        tokio::time::advance(Duration::from_secs(1)).await;
        let third = held(table.admit(|| evictions += 1));
        assert_eq!(evictions, 1);
        assert_eq!(first.state().slot(), Slot::Evicted);
        assert_eq!(second.state().slot(), Slot::Regular);
        assert_eq!(third.state().slot(), Slot::Regular);
        assert_eq!(table.open(), 3, "the evicted one is open until it closes");
        drop(first);
        assert_eq!(table.open(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_are_never_evicted_the_reserve_takes_the_next() {
        let table = Table::new(1, 1, Metrics::new());
        let busy = held(table.admit(|| panic!("nothing to evict")));
        busy.state().request_started();
        let reserve = held(table.admit(|| panic!("nothing to evict")));
        assert_eq!(reserve.state().slot(), Slot::Reserve);
        // A full reserve gives up its idle connection...
        let mut evictions = 0;
        let newer = held(table.admit(|| evictions += 1));
        assert_eq!((evictions, reserve.state().slot()), (1, Slot::Evicted));
        // ...and refuses when that one is busy too.
        newer.state().request_started();
        assert!(matches!(table.admit(|| {}), Admission::Refused));
        // The busy one's request ends: a reserve connection may take its
        // slot.
        busy.state().request_ended(&table);
        let promoted = table
            .promote(newer.state(), Duration::from_secs(1), || evictions += 1)
            .await;
        assert!(promoted);
        assert_eq!(newer.state().slot(), Slot::Regular);
        assert_eq!(busy.state().slot(), Slot::Evicted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reserve_request_waits_for_a_slot_then_gives_up() {
        let table = Table::new(1, 1, Metrics::new());
        let busy = held(table.admit(|| {}));
        busy.state().request_started();
        let reserve = held(table.admit(|| {}));
        reserve.state().request_started();
        let start = Instant::now();
        let promoted = table
            .promote(reserve.state(), Duration::from_secs(1), || {})
            .await;
        assert!(!promoted);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // A slot that frees during the wait is taken at once.
        let waiting = {
            let table = table.clone();
            let state = reserve.state().clone();
            tokio::spawn(async move { table.promote(&state, Duration::from_secs(1), || {}).await })
        };
        tokio::time::advance(Duration::from_millis(300)).await;
        drop(busy);
        assert!(waiting.await.unwrap());
        assert_eq!(start.elapsed(), Duration::from_millis(1300));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_the_last_connection() {
        let table = Table::new(4, 1, Metrics::new());
        let one = held(table.admit(|| {}));
        let graceful = Graceful::new(table.clone());
        let done = tokio::spawn(graceful.shutdown());
        tokio::task::yield_now().await;
        assert!(one.state().is_shutting_down());
        assert!(!done.is_finished());
        drop(one);
        done.await.unwrap();
    }
}
