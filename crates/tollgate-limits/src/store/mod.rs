//! [`Store`]: where the limits keep their state.
//!
//! The layer asks the store a handful of atomic questions; the store
//! decides where the answers live:
//!
//! - [`MemoryStore`]: one process, sharded maps, bounded memory;
//! - [`RedisStore`]: shared by every replica through Redis, one Lua script
//!   per operation, failing open to a local [`MemoryStore`] when Redis is
//!   away.

use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;

use crate::gcra::{Decision, Quota};
use crate::limits::BudgetWindow;

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::{DEFAULT_CAPACITY, DEFAULT_LEASE_TTL, MemoryStore};
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_OP_TIMEOUT, DEFAULT_PREFIX, RedisStore};

/// A boxed, sendable future: what every [`Store`] operation returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A parallel-request permit handed out by [`Store::acquire`], given back
/// with [`Store::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease(u64);

impl Lease {
    /// The lease with id `id` (unique among a store's live leases).
    pub fn new(id: u64) -> Self {
        Lease(id)
    }

    /// The lease's id.
    pub fn id(&self) -> u64 {
        self.0
    }
}

/// One limit of an all-or-nothing check ([`Store::gcra_all`]): `need`
/// cells of `quota` on `key` must fit, and `take` of them (at most `need`)
/// are taken when every claim of the check fits.
///
/// `need` above `take` looks without taking: a deployment's request cell
/// is taken (`need = take = 1`) only while its tokens per minute have room
/// for the request's estimate (`need = estimate, take = 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The store key.
    pub key: &'a str,
    /// Its rate.
    pub quota: Quota,
    /// Cells that must fit (callers cap it at the quota's limit: more
    /// never fits).
    pub need: u64,
    /// Cells taken when every claim fits.
    pub take: u64,
}

/// The atomic operations the limits need, each on one key (or, for
/// [`gcra_all`](Self::gcra_all), on a few keys at once).
///
/// Keys are strings the layer builds (`rpm:{name}`, `tpm:{name}`,
/// `parallel:{name}`, `budget:{name}`, `deployment-rpm:{id}`...); a store
/// may hash them (the Redis store does).
///
/// **A store never fails**: it answers every question, from local state if
/// its backend is away (fail-open; see [`RedisStore`]). A rate limiter
/// whose backend is down should not take the gateway down with it.
///
/// # Why boxed futures
///
/// The layer holds an `Arc<dyn Store>`, so the trait must be
/// dyn-compatible, and `async fn` in traits is not (on Rust 1.95) without
/// an extra wrapper trait. Boxing costs one allocation per operation —
/// noise next to a Redis round trip, and a few tens of nanoseconds for the
/// memory store, whose futures are ready on their first poll (the layer
/// relies on that: settling a [`MemoryStore`] at the end of a body happens
/// at once, without a task).
pub trait Store: Send + Sync + 'static {
    /// GCRA: takes `cost` cells of `quota` from `key` if they fit (see
    /// [`gcra::check`](crate::gcra::check)); a cost of 0 only looks.
    /// `now` is the caller's clock; a shared store may use its own (the
    /// Redis store uses the server's `TIME`, so replicas agree).
    fn gcra<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        cost: u64,
        now: Instant,
    ) -> BoxFuture<'a, Decision>;

    /// GCRA on a few distinct keys at once, all or nothing: every claim's
    /// `need` must fit, and only then is each claim's `take` taken (see
    /// [`Claim`]). One decision per claim, in order: whether its `need`
    /// fit, and what is left after what was taken. Atomic — two replicas
    /// asking for the last cell cannot both get it — and, on a shared
    /// store, one round trip.
    fn gcra_all<'a>(
        &'a self,
        claims: &'a [Claim<'a>],
        now: Instant,
    ) -> BoxFuture<'a, Vec<Decision>>;

    /// Moves `key`'s GCRA state by `delta` cells, whatever the limit says
    /// (see [`gcra::adjust`](crate::gcra::adjust)): reconciles a tpm
    /// reservation with the real usage. Never moves it before now.
    fn adjust<'a>(
        &'a self,
        key: &'a str,
        quota: Quota,
        delta: i64,
        now: Instant,
    ) -> BoxFuture<'a, ()>;

    /// Takes one of `max` parallel permits of `key`, or `None` when all are
    /// taken. A permit that is never released (its holder died) expires
    /// after the store's lease TTL.
    fn acquire<'a>(&'a self, key: &'a str, max: u32, now: Instant) -> BoxFuture<'a, Option<Lease>>;

    /// Gives a permit back. Releasing a lease twice, or one that expired,
    /// does nothing.
    fn release<'a>(&'a self, key: &'a str, lease: Lease) -> BoxFuture<'a, ()>;

    /// What `key` has spent in `window`, in picodollars.
    fn spend<'a>(&'a self, key: &'a str, window: BudgetWindow) -> BoxFuture<'a, u64>;

    /// Adds `picos` to what `key` has spent in `window`.
    fn add_spend<'a>(&'a self, key: &'a str, window: BudgetWindow, picos: u64)
    -> BoxFuture<'a, ()>;
}
