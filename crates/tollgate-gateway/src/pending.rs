//! Settings the config accepts but the gateway does not act on yet.

use crate::config::{Config, Warning};

/// The settings of `config` that are parsed and validated but not yet
/// applied, because the layer that acts on them is not in the gateway yet.
///
/// Saying so at startup (and in `check-config`) beats a user believing that
/// their fallbacks or limits protect them.
pub fn unapplied_settings(config: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut note = |present: bool, path: &str, what: &str| {
        if present {
            out.push(Warning {
                path: path.to_owned(),
                message: format!("accepted but not applied yet: the gateway has no {what} yet"),
            });
        }
    };
    for deployment in &config.model_list {
        let base = format!("model_list[{}].litellm_params", deployment.index);
        note(
            deployment.rpm.is_some(),
            &format!("{base}.rpm"),
            "per-deployment limit (it weighs the deployment in balancing, counted by each replica)",
        );
        note(
            deployment.tpm.is_some(),
            &format!("{base}.tpm"),
            "per-deployment limit (it weighs the deployment in balancing, counted by each replica)",
        );
    }
    out
}
