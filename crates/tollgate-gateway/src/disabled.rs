//! Deployments that start disabled (a key variable unset, a native provider
//! not wired yet): which ones the gateway leaves out, and how the health
//! report and the log name them.
//!
//! A disabled deployment is left out of its group when the group has another
//! one that works. When none of a group's deployments works, they stay in,
//! failing at once as unavailable, so requests for the group move on to its
//! fallbacks rather than finding no such model.

use std::sync::Arc;

use crate::config::{Config, DeploymentConfig};
use crate::providers::Listed;

/// Whether the gateway builds no service for `deployment`.
pub(crate) fn leave_out(config: &Config, deployment: &DeploymentConfig) -> bool {
    deployment.disabled.is_some()
        && config
            .group(&deployment.model_name)
            .iter()
            .any(|other| other.disabled.is_none())
}

/// Every configured deployment, disabled ones included, for
/// `/health/providers`.
pub(crate) fn listed(config: &Config) -> Vec<Listed> {
    config
        .groups()
        .flat_map(|(_, deployments)| deployments)
        .map(|d| {
            (
                Arc::from(d.id.as_str()),
                Arc::from(d.model_name.as_str()),
                d.provider.as_str(),
                d.disabled.as_deref().map(Arc::from),
            )
        })
        .collect()
}

/// Logs each disabled deployment once, at startup.
pub(crate) fn log(config: &Config) {
    for d in config.model_list.iter() {
        if let Some(reason) = &d.disabled {
            tracing::warn!(
                deployment = %d.id,
                model_group = %d.model_name,
                provider = %d.provider,
                reason = %reason,
                "deployment disabled"
            );
        }
    }
}
