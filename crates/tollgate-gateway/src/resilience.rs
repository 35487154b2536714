//! LiteLLM's retry and cooldown settings, mapped onto the retry and circuit
//! breaker layers.
//!
//! | LiteLLM setting | layer setting |
//! |---|---|
//! | `router_settings.num_retries` (else `litellm_settings.num_retries`) | retry `num_retries` (default 3) |
//! | `router_settings.retry_policy` | retry per-class policy, by LiteLLM's names |
//! | `router_settings.retry_after` | retry `min_backoff` |
//! | `router_settings.allowed_fails` | breaker opens after `allowed_fails + 1` failures in a row |
//! | `router_settings.cooldown_time` | breaker open time (0: no breaker) |
//! | `model_list[].litellm_params.cooldown_time` | the same, for one deployment |
//!
//! Unlike LiteLLM's cooldown, the breaker lets probes through once the open
//! time is over, and backs off (doubling, capped) when they fail; it cools
//! down a group with a single deployment too.

use std::time::Duration;

use tollgate_breaker::BreakerConfig;
use tollgate_retry::{RetryConfig, RetryPolicy};

use crate::config::{Config, DeploymentConfig};

/// Why LiteLLM's settings could not become layer settings.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ResilienceError {
    path: String,
    message: String,
}

/// The retry layer's settings.
pub fn retry_config(config: &Config) -> Result<RetryConfig, ResilienceError> {
    let router = &config.router_settings;
    let mut builder = RetryConfig::builder();
    if let Some(retries) = config.num_retries() {
        builder = builder.num_retries(retries);
    }
    let mut policy = RetryPolicy::new();
    for (key, class) in RetryPolicy::LITELLM_KEYS {
        if let Some(retries) = router.retry_policy.get(key) {
            policy.set(class, retries);
        }
    }
    builder = builder.retry_policy(policy);
    if let Some(min) = router.retry_after {
        builder = builder.min_backoff(min);
    }
    builder.build().map_err(|error| ResilienceError {
        path: format!("router_settings.{}", error.field()),
        message: error.to_string(),
    })
}

/// The default breaker settings of every deployment, or `None` when
/// `cooldown_time` is 0 (LiteLLM's way to turn cooldowns off).
pub fn breaker_config(config: &Config) -> Result<Option<BreakerConfig>, ResilienceError> {
    let router = &config.router_settings;
    breaker_config_with(
        router.allowed_fails,
        router.cooldown_time,
        "router_settings.cooldown_time",
    )
}

/// One deployment's breaker settings, with its own `cooldown_time` when it
/// has one.
pub fn deployment_breaker_config(
    config: &Config,
    deployment: &DeploymentConfig,
) -> Result<Option<BreakerConfig>, ResilienceError> {
    let router = &config.router_settings;
    breaker_config_with(
        router.allowed_fails,
        deployment.cooldown_time.or(router.cooldown_time),
        &format!(
            "model_list[{}].litellm_params.cooldown_time",
            deployment.index
        ),
    )
}

fn breaker_config_with(
    allowed_fails: Option<u32>,
    cooldown: Option<Duration>,
    path: &str,
) -> Result<Option<BreakerConfig>, ResilienceError> {
    if cooldown.is_some_and(|c| c.is_zero()) {
        return Ok(None);
    }
    let defaults = BreakerConfig::default();
    let mut builder = BreakerConfig::builder();
    if let Some(allowed) = allowed_fails {
        builder = builder.consecutive_failures(allowed.saturating_add(1));
    }
    if let Some(cooldown) = cooldown {
        // A fixed LiteLLM cooldown is the first open time; failed probes
        // double it up to the larger of it and the default cap.
        builder = builder
            .cooldown(cooldown)
            .max_cooldown(cooldown.max(defaults.max_cooldown));
    }
    builder.build().map(Some).map_err(|error| ResilienceError {
        path: path.to_owned(),
        message: error.to_string(),
    })
}
