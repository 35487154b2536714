//! LiteLLM's retry and cooldown settings, mapped onto the retry and circuit
//! breaker layers.
//!
//! | LiteLLM setting | layer setting |
//! |---|---|
//! | `router_settings.num_retries` (else `litellm_settings.num_retries`) | retry `num_retries` (default 3) |
//! | `router_settings.retry_policy` | retry per-class policy, by LiteLLM's names |
//! | `router_settings.retry_after` | retry `min_backoff` |
//! | `router_settings.allowed_fails` | breaker opens after `allowed_fails + 1` failures in a row |
//! | `router_settings.cooldown_time` | breaker open time, `2 ×` it at most after failed probes (0: no breaker) |
//! | `model_list[].litellm_params.cooldown_time` | the same, for one deployment |
//! | `fallbacks`, `context_window_fallbacks`, `content_policy_fallbacks`, `default_fallbacks` (router, else litellm settings) | the fallback cascade's lists |
//! | `router_settings.max_fallbacks` | the cascade's bound (default 5) |
//! | `model_info.supports_assistant_prefill: false` on any deployment of a group | the group never continues a broken stream |
//!
//! A timed-out attempt is not retried on the same group unless
//! `retry_policy.TimeoutErrorRetries` says so: the cascade moves on to the
//! next target instead of waiting on a silent one again. OpenRouter `:free`
//! deployments that share a key share one rate-limit pool: a free-pool 429
//! skips the other groups of that pool.
//!
//! Unlike LiteLLM's cooldown, the breaker lets probes through once the open
//! time is over (one probe per open period), and backs off when they fail:
//! the open time after a failed probe is `2 × cooldown_time`, never more, so
//! a deployment that recovers serves again within about one cooldown of
//! recovering. It cools down a group with a single deployment too.

use std::time::Duration;

use tollgate_breaker::BreakerConfig;
use tollgate_core::{ErrorClass, Valid};
use tollgate_fallback::FallbackConfig;
use tollgate_retry::{RetryConfig, RetryPolicy};

use crate::config::{Config, DeploymentConfig, KeySource, Provider};

/// Why LiteLLM's settings could not become layer settings.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ResilienceError {
    path: String,
    message: String,
}

/// The retry layer's settings.
pub fn retry_config(config: &Config) -> Result<Valid<RetryConfig>, ResilienceError> {
    let router = &config.router_settings;
    let mut builder = RetryConfig::builder();
    if let Some(retries) = config.num_retries() {
        builder = builder.num_retries(retries);
    }
    // A silent upstream is not asked again: the cascade moves on.
    let mut policy = RetryPolicy::new().with(ErrorClass::Timeout, 0);
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
pub fn breaker_config(config: &Config) -> Result<Option<Valid<BreakerConfig>>, ResilienceError> {
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
) -> Result<Option<Valid<BreakerConfig>>, ResilienceError> {
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

/// The longest open time after failed probes, as a multiple of
/// `cooldown_time`.
pub const MAX_COOLDOWN_FACTOR: u32 = 2;

fn breaker_config_with(
    allowed_fails: Option<u32>,
    cooldown: Option<Duration>,
    path: &str,
) -> Result<Option<Valid<BreakerConfig>>, ResilienceError> {
    if cooldown.is_some_and(|c| c.is_zero()) {
        return Ok(None);
    }
    let mut builder = BreakerConfig::builder();
    if let Some(allowed) = allowed_fails {
        builder = builder.consecutive_failures(allowed.saturating_add(1));
    }
    // `cooldown_time` is the open time LiteLLM users expect to hold. A failed
    // probe doubles it once at most: a deployment that recovers is probed
    // again within two cooldowns, so it serves again about one cooldown
    // after it is back, while a dead one is still asked only once per open
    // period.
    let cooldown = cooldown.unwrap_or(BreakerConfig::default().cooldown);
    builder = builder
        .cooldown(cooldown)
        .max_cooldown(cooldown.saturating_mul(MAX_COOLDOWN_FACTOR));
    builder.build().map(Some).map_err(|error| ResilienceError {
        path: path.to_owned(),
        message: error.to_string(),
    })
}

/// The fallback cascade's settings: LiteLLM's lists (router settings win over
/// litellm settings, as in LiteLLM) and what each group can do.
pub fn fallback_config(config: &Config) -> Result<Valid<FallbackConfig>, ResilienceError> {
    let mut builder = FallbackConfig::builder();
    for (group, to) in config.fallbacks() {
        builder = builder.fallbacks(group.clone(), to.iter().cloned());
    }
    for (group, to) in config.context_window_fallbacks() {
        builder = builder.context_window_fallbacks(group.clone(), to.iter().cloned());
    }
    for (group, to) in config.content_policy_fallbacks() {
        builder = builder.content_policy_fallbacks(group.clone(), to.iter().cloned());
    }
    builder = builder.default_fallbacks(config.default_fallbacks().iter().cloned());
    if let Some(max) = config.router_settings.max_fallbacks {
        builder = builder.max_fallbacks(max);
    }
    for (group, deployments) in config.groups() {
        if deployments
            .iter()
            .any(|d| d.supports_assistant_prefill == Some(false))
        {
            builder = builder.supports_assistant_prefill(group, false);
        }
        if let Some(pool) = free_pool(&deployments) {
            builder = builder.pool(group, pool);
        }
    }
    builder.build().map_err(|error| ResilienceError {
        path: format!("router_settings.{}", error.field()),
        message: error.to_string(),
    })
}

/// OpenRouter's `:free` models share one rate-limit pool per account: a
/// group made only of free OpenRouter deployments with one key is in that
/// key's pool.
fn free_pool(deployments: &[&DeploymentConfig]) -> Option<String> {
    let first = deployments.first()?;
    let key = match &first.api_key_source {
        KeySource::Env(var) => format!("env:{var}"),
        KeySource::Inline => String::from("inline"),
        KeySource::None => String::from("default"),
    };
    deployments
        .iter()
        .all(|d| {
            d.provider == Provider::OpenRouter
                && d.upstream_model.ends_with(":free")
                && d.api_key_source == first.api_key_source
                && d.api_base == first.api_base
        })
        .then(|| format!("openrouter-free/{key}"))
}
