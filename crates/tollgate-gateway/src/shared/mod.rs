//! State several replicas share through Redis (`router_settings.redis_host`,
//! `redis_port`, `redis_password`): rate-limit counters and spend (the
//! limits' store), generated keys (the key registry), and circuit breakers
//! (`tollgate-breaker`'s `RedisSync`, wired here).
//!
//! Every use of Redis fails open: while it is unreachable each replica goes
//! on with its local state, counts it (`tollgate_shared_state_fallbacks_total`)
//! and logs it, and shares again once Redis answers.

use std::sync::Arc;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tollgate_breaker::{Breakers, RedisSync};

pub(crate) use tollgate_core::shared_state::Fallbacks;

use crate::config::Config;
use crate::metrics::Metrics;

/// Runs `round` on what `weak` points to every `every` — the first at once,
/// a late round delaying the next rather than bunching them — until it is
/// dropped: the sync of the keys and of the teams with Redis.
pub(crate) fn spawn_every<T, F, Fut>(
    runtime: &tokio::runtime::Handle,
    weak: std::sync::Weak<T>,
    every: std::time::Duration,
    round: F,
) where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(strong) = weak.upgrade() else {
                return;
            };
            round(strong).await;
        }
    });
}

/// Shares the breakers of `deployments` with the other replicas through
/// `shared` (see [`RedisSync`]); a failed Redis command is counted and
/// logged as a fallback to local breakers.
pub(crate) fn spawn_breaker_sync(
    runtime: &tokio::runtime::Handle,
    shared: &SharedState,
    breakers: &Breakers,
    deployments: Vec<Arc<str>>,
) {
    shared.watch_breakers(deployments);
    let fallbacks = Fallbacks::new("the circuit breakers", "they are local until Redis answers")
        .on_fallback(Some(shared.on_fallback.clone()));
    RedisSync::new(shared.connection.clone())
        .prefix(PREFIX)
        .on_fallback(Arc::new(move |why| fallbacks.fell_back(why)))
        .spawn(runtime, breakers, shared.breakers_shared.clone());
}

/// Every Tollgate key in Redis starts with this.
pub(crate) const PREFIX: &str = "tollgate:";

/// The connection to the shared Redis, when the config names one.
#[derive(Clone)]
pub(crate) struct SharedState {
    pub(crate) client: redis::Client,
    /// Connects lazily and reconnects on the next call after a failure.
    pub(crate) connection: ConnectionManager,
    /// Counts every fall back to local state.
    pub(crate) on_fallback: Arc<dyn Fn() + Send + Sync>,
    /// The deployments whose breakers are shared: a reloaded config
    /// replaces the list, read by the sync at its next poll.
    pub(crate) breakers_shared: Arc<arc_swap::ArcSwap<Vec<Arc<str>>>>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info holds the password.
        f.debug_struct("SharedState").finish_non_exhaustive()
    }
}

impl SharedState {
    /// Shares the breakers of `deployments` from now on (a reloaded
    /// config's), instead of the ones before.
    pub(crate) fn watch_breakers(&self, deployments: Vec<Arc<str>>) {
        self.breakers_shared.store(Arc::new(deployments));
    }

    /// Connects (lazily) to the Redis the config names; `None` without
    /// `redis_host`. Needs a tokio runtime.
    pub(crate) fn from_config(
        config: &Config,
        metrics: &Metrics,
    ) -> Result<Option<SharedState>, redis::RedisError> {
        let router = &config.router_settings;
        let Some(host) = &router.redis_host else {
            return Ok(None);
        };
        let addr = redis::ConnectionAddr::Tcp(host.clone(), router.redis_port.unwrap_or(6379));
        let mut info = addr.into_connection_info()?;
        if let Some(password) = &router.redis_password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)?;
        // One attempt per call while Redis is away: requests are never kept
        // waiting on a reconnect backoff.
        let connection = ConnectionManager::new_lazy_with_config(
            client.clone(),
            ConnectionManagerConfig::new().set_number_of_retries(0),
        )?;
        let metrics = metrics.clone();
        Ok(Some(SharedState {
            client,
            connection,
            on_fallback: Arc::new(move || metrics.shared_state_fallback()),
            breakers_shared: Arc::default(),
        }))
    }
}
