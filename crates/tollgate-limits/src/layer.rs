//! [`RateLimitLayer`]: the layer.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::service::RateLimit;
use crate::store::Store;
use tollgate_core::time::{Clock, SystemClock};

/// Applies per-key rate limits and budgets to a service.
///
/// The store (and so all the limits' state) is given to the layer when it
/// is built; every service the layer makes shares it, so applying the
/// layer to many routes never forks a limit. `layer()` creates no state.
#[derive(Clone)]
pub struct RateLimitLayer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl RateLimitLayer {
    /// Limits kept in `store` ([`MemoryStore`](crate::MemoryStore) for one
    /// process, [`RedisStore`](crate::RedisStore) for several replicas);
    /// budget windows on the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        RateLimitLayer {
            store,
            clock: Arc::new(SystemClock),
        }
    }

    /// Computes budget windows on `clock` instead (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.store.clone(), self.clock.clone())
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}
