//! The rate limits' side of the gateway: the store they count in, and the
//! startup note on deployment limits.
//!
//! The rate-limit layer (outermost) reserves tokens and checks the budget
//! when a request arrives, and settles both when its response ends, from
//! core's `Arc<UsageReport>` request extension, which the cost layer (per
//! upstream attempt, far below) fills: nothing in the gateway carries usage
//! between them.

use std::sync::Arc;
use std::time::Duration;

use tollgate_limits::{DEFAULT_OP_TIMEOUT, MemoryStore, RedisStore, Store};

use crate::config::Config;
use crate::shared::{PREFIX, SharedState};

/// The store the limits count in: Redis when the config names one (every
/// replica counts together), waiting at most `timeout` for it per call, else
/// this process's memory.
pub(crate) fn store(shared: Option<&SharedState>, timeout: Option<Duration>) -> Arc<dyn Store> {
    match shared {
        Some(shared) => match RedisStore::new(shared.client.clone()) {
            Ok(store) => Arc::new(
                store
                    .prefix(PREFIX)
                    .op_timeout(timeout.unwrap_or(DEFAULT_OP_TIMEOUT))
                    .on_fallback(shared.on_fallback.clone()),
            ),
            Err(error) => {
                tracing::error!(%error, "rate limits cannot use Redis; counting in memory");
                Arc::new(MemoryStore::new())
            }
        },
        None => Arc::new(MemoryStore::new()),
    }
}

/// Says at startup how the deployments' `rpm` and `tpm` are enforced, when
/// any has one.
pub(crate) fn log_deployment_limits(config: &Config, shared: bool) {
    let limited: Vec<&str> = config
        .model_list
        .iter()
        .filter(|d| d.rpm.is_some() || d.tpm.is_some())
        .map(|d| d.id.as_str())
        .collect();
    if limited.is_empty() {
        return;
    }
    if shared {
        tracing::info!(
            deployments = ?limited,
            "deployment rpm/tpm limits enforced, counted in Redis: one limit for every replica"
        );
    } else {
        tracing::info!(
            deployments = ?limited,
            "deployment rpm/tpm limits enforced, counted in this process (no redis_host: \
             each replica counts on its own)"
        );
    }
}
