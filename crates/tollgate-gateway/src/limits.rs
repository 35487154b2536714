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

use tollgate_limits::{
    Budget, DEFAULT_OP_TIMEOUT, KeyLimits, MemoryStore, RedisStore, Store, restore_spend,
};

use crate::config::Config;
use crate::keys::{Keys, VirtualKey};
use crate::ledger::Ledger;
use crate::shared::{PREFIX, SharedState};
use crate::teams::Teams;

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

/// A virtual key's limits, as the rate-limit layer reads them.
pub(crate) fn key_limits(key: &VirtualKey) -> KeyLimits {
    let mut limits = KeyLimits::new(key.name());
    if let Some(rpm) = key.rpm_limit {
        limits = limits.rpm(rpm);
    }
    if let Some(tpm) = key.tpm_limit {
        limits = limits.tpm(tpm);
    }
    if let Some(parallel) = key.max_parallel_requests {
        limits = limits.max_parallel(parallel);
    }
    if let Some(picos) = key.max_budget_picos {
        limits = limits.max_budget(match key.budget_duration {
            Some(window) => Budget::per(picos, window),
            None => Budget::lifetime(picos),
        });
    }
    limits
}

/// Brings back what each key of `keys` with a budget has spent in its
/// current window (at `now`, unix milliseconds), from `ledger` into
/// `store`.
pub(crate) async fn restore_budgets(keys: &Keys, ledger: &Ledger, store: &dyn Store, now: i64) {
    for key in keys.with_budgets() {
        let Some(budget) = key_limits(&key).max_budget else {
            continue;
        };
        let name = key.name();
        let since = budget.window_at(now).start_unix_ms();
        match ledger.billed_since(&name, since).await {
            Ok(0) => {}
            Ok(spent) => {
                let spent = u64::try_from(spent).unwrap_or(u64::MAX);
                restore_spend(store, &name, &budget, now, spent).await;
                tracing::info!(key = %name, spent_picos = spent, "budget spend restored from the ledger");
            }
            Err(error) => {
                tracing::error!(key = %name, %error, "budget spend could not be read from the ledger");
            }
        }
    }
}

/// Brings back what each team of `teams` with a budget has spent in its
/// current window (at `now`, unix ms), from `ledger` into `store`: the
/// team's budget counts under its own name (`team:<id>`), charged by
/// every member key.
pub(crate) async fn restore_team_budgets(
    teams: &Teams,
    ledger: &Ledger,
    store: &dyn Store,
    now: i64,
) {
    for team in teams.with_budgets() {
        let limits = team.limits();
        let Some(budget) = limits.max_budget else {
            continue;
        };
        // Spend before the team was made (a deleted team of the same id)
        // is not its own.
        let since = budget
            .window_at(now)
            .start_unix_ms()
            .max(team.created_at_ms);
        match ledger.team_billed_since(&team.team_id, since).await {
            Ok(0) => {}
            Ok(spent) => {
                let spent = u64::try_from(spent).unwrap_or(u64::MAX);
                restore_spend(store, &limits.name, &budget, now, spent).await;
                tracing::info!(team = %team.team_id, spent_picos = spent, "team budget spend restored from the ledger");
            }
            Err(error) => {
                tracing::error!(team = %team.team_id, %error, "team budget spend could not be read from the ledger");
            }
        }
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
