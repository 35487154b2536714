//! Settings the config accepts but the gateway does not act on yet.

use crate::config::{Config, RoutingStrategy, Warning};

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
    let router = &config.router_settings;
    let litellm = &config.litellm_settings;
    let fallback_lists = [
        (
            "fallbacks",
            router.fallbacks.is_empty(),
            litellm.fallbacks.is_empty(),
        ),
        (
            "context_window_fallbacks",
            router.context_window_fallbacks.is_empty(),
            litellm.context_window_fallbacks.is_empty(),
        ),
        (
            "content_policy_fallbacks",
            router.content_policy_fallbacks.is_empty(),
            litellm.content_policy_fallbacks.is_empty(),
        ),
        (
            "default_fallbacks",
            router.default_fallbacks.is_empty(),
            litellm.default_fallbacks.is_empty(),
        ),
    ];
    for (key, router_empty, litellm_empty) in fallback_lists {
        note(
            !router_empty,
            &format!("router_settings.{key}"),
            "fallback cascade",
        );
        note(
            !litellm_empty,
            &format!("litellm_settings.{key}"),
            "fallback cascade",
        );
    }
    note(
        router.max_fallbacks.is_some(),
        "router_settings.max_fallbacks",
        "fallback cascade",
    );
    note(
        router.routing_strategy != RoutingStrategy::SimpleShuffle,
        "router_settings.routing_strategy",
        "balancer (deployments of a group take turns)",
    );
    note(
        router.redis_host.is_some(),
        "router_settings.redis_host",
        "shared state on Redis",
    );
    for deployment in &config.model_list {
        let base = format!("model_list[{}].litellm_params", deployment.index);
        note(
            deployment.rpm.is_some(),
            &format!("{base}.rpm"),
            "rate limits",
        );
        note(
            deployment.tpm.is_some(),
            &format!("{base}.tpm"),
            "rate limits",
        );
        note(
            !deployment.costs.is_empty(),
            &format!("model_list[{}].model_info costs", deployment.index),
            "cost accounting",
        );
        note(
            deployment.weight.is_some() || deployment.order.is_some(),
            &format!("{base}.weight/order"),
            "balancer (deployments of a group take turns)",
        );
    }
    out
}
