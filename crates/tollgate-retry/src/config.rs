//! [`RetryConfig`]: the retry layer's settings, as serde config with
//! defaults, validation and a builder.

use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tollgate_core::{ErrorClass, Valid, Validate};

use crate::error::ConfigError;

/// The retry layer's settings.
///
/// Every field has a default ([`RetryConfig::default`]), so a config file
/// names only what it changes. Durations are in seconds (fractions allowed),
/// like LiteLLM's settings:
///
/// ```
/// let config: tollgate_retry::RetryConfig = serde_json::from_str(r#"{
///     "num_retries": 2,
///     "retry_policy": { "RateLimitErrorRetries": 4, "bad_request": 0 },
///     "min_backoff": 0.25,
///     "budget": { "ratio": 0.1 }
/// }"#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.budget.min_per_sec, 10); // a default
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries per request for a failure whose class has no entry in
    /// `retry_policy`, when the failure is retryable (LiteLLM's
    /// `num_retries`). Default 3.
    pub num_retries: u32,
    /// Retries per error class, overriding `num_retries` (LiteLLM's
    /// `retry_policy`; see [`RetryPolicy`]).
    pub retry_policy: RetryPolicy,
    /// The backoff ceiling before the first retry. Default 0.5 s.
    #[serde(with = "secs")]
    pub base_backoff: Duration,
    /// How much the ceiling grows per retry. Default 2.
    pub backoff_factor: f64,
    /// The largest backoff ceiling. Default 8 s.
    #[serde(with = "secs")]
    pub max_backoff: Duration,
    /// The least time to wait before a retry, whatever the jitter drew
    /// (LiteLLM's `retry_after`). Default 0.
    #[serde(with = "secs")]
    pub min_backoff: Duration,
    /// The longest `Retry-After` the layer waits for. An upstream that asks
    /// for more is not retried: the failure goes up at once, for a fallback
    /// to act on. Default 60 s.
    #[serde(with = "secs")]
    pub max_retry_after: Duration,
    /// The retry budget shared by every service the layer makes.
    pub budget: BudgetConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            num_retries: 3,
            retry_policy: RetryPolicy::new(),
            // The OpenAI SDKs' schedule: 0.5 s doubling up to 8 s.
            base_backoff: Duration::from_millis(500),
            backoff_factor: 2.0,
            max_backoff: Duration::from_secs(8),
            min_backoff: Duration::ZERO,
            max_retry_after: Duration::from_secs(60),
            budget: BudgetConfig::default(),
        }
    }
}

impl RetryConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder {
            config: RetryConfig::default(),
        }
    }

    /// Checks the settings, naming the first field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.backoff_factor.is_finite() && self.backoff_factor >= 1.0) {
            return Err(ConfigError::new(
                "backoff_factor",
                format!("must be a number ≥ 1, got {}", self.backoff_factor),
            ));
        }
        if self.min_backoff > self.max_backoff {
            return Err(ConfigError::new(
                "min_backoff",
                format!(
                    "must not exceed max_backoff ({}s), got {}s",
                    self.max_backoff.as_secs_f64(),
                    self.min_backoff.as_secs_f64()
                ),
            ));
        }
        self.budget.validate()
    }
}

impl Validate for RetryConfig {
    type Error = ConfigError;

    fn validate(&self) -> Result<(), ConfigError> {
        RetryConfig::validate(self)
    }
}

/// The retry budget: how many retries the layer may make, as a fraction of
/// the requests it sees plus a small reserve, over a sliding window — the
/// scheme of tower's `TpsBudget`, Finagle's and linkerd's. It keeps an outage
/// from multiplying the load on an upstream that is already failing.
///
/// Within any window of `ttl`, retries stay under
/// `ratio × requests + min_per_sec × ttl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Retries allowed per request (0.2: one retry per five requests).
    /// Between 0 and [`BudgetConfig::MAX_RATIO`]. Default 0.2.
    pub ratio: f64,
    /// Retries allowed per second whatever the traffic, so that a quiet
    /// client can still retry. Default 10.
    pub min_per_sec: u32,
    /// How long a request's deposit, and a retry's withdrawal, count.
    /// Between 1 and 60 s. Default 10 s.
    #[serde(with = "secs")]
    pub ttl: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            ratio: 0.2,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl BudgetConfig {
    /// The largest `ratio`: ten retries per request is already no budget.
    pub const MAX_RATIO: f64 = 10.0;

    /// Checks the settings, naming the first field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.ratio.is_finite() && (0.0..=Self::MAX_RATIO).contains(&self.ratio)) {
            return Err(ConfigError::new(
                "budget.ratio",
                format!(
                    "must be between 0 and {}, got {}",
                    Self::MAX_RATIO,
                    self.ratio
                ),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            return Err(ConfigError::new(
                "budget.ttl",
                format!(
                    "must be between 1 and 60 seconds, got {}s",
                    self.ttl.as_secs_f64()
                ),
            ));
        }
        Ok(())
    }
}

/// Builds a [`RetryConfig`] from the defaults; [`build`](Self::build)
/// validates it.
#[derive(Debug, Clone)]
pub struct RetryConfigBuilder {
    config: RetryConfig,
}

impl RetryConfigBuilder {
    /// Sets [`RetryConfig::num_retries`].
    pub fn num_retries(mut self, retries: u32) -> Self {
        self.config.num_retries = retries;
        self
    }

    /// Sets the whole [`RetryConfig::retry_policy`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.config.retry_policy = policy;
        self
    }

    /// Sets the retries for one class in [`RetryConfig::retry_policy`].
    pub fn retries_for(mut self, class: ErrorClass, retries: u32) -> Self {
        self.config.retry_policy.set(class, retries);
        self
    }

    /// Sets [`RetryConfig::base_backoff`].
    pub fn base_backoff(mut self, base: Duration) -> Self {
        self.config.base_backoff = base;
        self
    }

    /// Sets [`RetryConfig::backoff_factor`].
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.config.backoff_factor = factor;
        self
    }

    /// Sets [`RetryConfig::max_backoff`].
    pub fn max_backoff(mut self, cap: Duration) -> Self {
        self.config.max_backoff = cap;
        self
    }

    /// Sets [`RetryConfig::min_backoff`].
    pub fn min_backoff(mut self, min: Duration) -> Self {
        self.config.min_backoff = min;
        self
    }

    /// Sets [`RetryConfig::max_retry_after`].
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// Sets [`BudgetConfig::ratio`].
    pub fn budget_ratio(mut self, ratio: f64) -> Self {
        self.config.budget.ratio = ratio;
        self
    }

    /// Sets [`BudgetConfig::min_per_sec`].
    pub fn budget_min_per_sec(mut self, min_per_sec: u32) -> Self {
        self.config.budget.min_per_sec = min_per_sec;
        self
    }

    /// Sets [`BudgetConfig::ttl`].
    pub fn budget_ttl(mut self, ttl: Duration) -> Self {
        self.config.budget.ttl = ttl;
        self
    }

    /// The validated config, ready for [`RetryLayer::new`](crate::RetryLayer::new).
    pub fn build(self) -> Result<Valid<RetryConfig>, ConfigError> {
        Valid::new(self.config)
    }
}

impl Validate for BudgetConfig {
    type Error = ConfigError;

    fn validate(&self) -> Result<(), ConfigError> {
        BudgetConfig::validate(self)
    }
}

/// Retries per error class, overriding [`RetryConfig::num_retries`] for the
/// classes it names.
///
/// In a config it is a map from a class name (`rate_limited`, `timeout`...)
/// or one of LiteLLM's `retry_policy` keys to a number of retries:
///
/// | LiteLLM key | class |
/// |---|---|
/// | `AuthenticationErrorRetries` | `auth` |
/// | `TimeoutErrorRetries` | `timeout` |
/// | `RateLimitErrorRetries` | `rate_limited` |
/// | `ContentPolicyViolationErrorRetries` | `content_policy` |
/// | `InternalServerErrorRetries` | `upstream_unavailable` |
/// | `BadRequestErrorRetries` | `bad_request` |
///
/// A class it names is retried that many times, even one that is not
/// retryable by default (the user asked for it, as in LiteLLM) — except a
/// failure of a retryable class that says it is not retryable
/// ([`Failure::is_retryable`](tollgate_core::Failure::is_retryable) `false`,
/// an upstream's explicit "do not retry"), which never is. A class it does
/// not name gets `num_retries` when the failure is retryable, none
/// otherwise.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    retries: [Option<u32>; ErrorClass::ALL.len()],
}

impl RetryPolicy {
    /// LiteLLM's `retry_policy` keys and the classes they map onto.
    pub const LITELLM_KEYS: [(&'static str, ErrorClass); 6] = [
        ("AuthenticationErrorRetries", ErrorClass::Auth),
        ("TimeoutErrorRetries", ErrorClass::Timeout),
        ("RateLimitErrorRetries", ErrorClass::RateLimited),
        (
            "ContentPolicyViolationErrorRetries",
            ErrorClass::ContentPolicy,
        ),
        (
            "InternalServerErrorRetries",
            ErrorClass::UpstreamUnavailable,
        ),
        ("BadRequestErrorRetries", ErrorClass::BadRequest),
    ];

    /// A policy that names no class.
    pub const fn new() -> Self {
        RetryPolicy {
            retries: [None; ErrorClass::ALL.len()],
        }
    }

    /// The class a LiteLLM `retry_policy` key or a class name stands for.
    pub fn class_for_key(key: &str) -> Option<ErrorClass> {
        Self::LITELLM_KEYS
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, class)| *class)
            .or_else(|| ErrorClass::from_name(key))
    }

    /// The policy with `class` retried `retries` times.
    pub fn with(mut self, class: ErrorClass, retries: u32) -> Self {
        self.set(class, retries);
        self
    }

    /// Sets the retries of `class`.
    pub fn set(&mut self, class: ErrorClass, retries: u32) {
        if let Some(slot) = index(class).map(|i| &mut self.retries[i]) {
            *slot = Some(retries);
        }
    }

    /// The retries of `class`, if the policy names it.
    pub fn get(&self, class: ErrorClass) -> Option<u32> {
        index(class).and_then(|i| self.retries[i])
    }

    /// The classes the policy names, with their retries.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorClass, u32)> + '_ {
        ErrorClass::ALL
            .iter()
            .zip(self.retries)
            .filter_map(|(class, retries)| Some((*class, retries?)))
    }
}

fn index(class: ErrorClass) -> Option<usize> {
    ErrorClass::ALL.iter().position(|c| *c == class)
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(class, n)| (class.as_str(), n)))
            .finish()
    }
}

impl Serialize for RetryPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (class, retries) in self.iter() {
            map.serialize_entry(class.as_str(), &retries)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RetryPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;

        impl<'de> Visitor<'de> for PolicyVisitor {
            type Value = RetryPolicy;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from error class (or LiteLLM retry_policy key) to retries")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RetryPolicy, A::Error> {
                let mut policy = RetryPolicy::new();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let class = RetryPolicy::class_for_key(&key).ok_or_else(|| {
                        de::Error::custom(format_args!(
                            "unknown retry_policy key `{key}`: expected an error class \
                             (rate_limited, timeout, ...) or one of LiteLLM's keys \
                             (RateLimitErrorRetries, ...)"
                        ))
                    })?;
                    policy.set(class, map.next_value()?);
                }
                Ok(policy)
            }
        }

        deserializer.deserialize_map(PolicyVisitor)
    }
}

/// Durations as (fractional) seconds, LiteLLM's unit.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            de::Error::custom(format_args!(
                "expected a non-negative number of seconds, got {secs}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_docs() {
        let config = RetryConfig::default();
        config.validate().unwrap();
        assert_eq!(config.num_retries, 3);
        assert_eq!(config.max_retry_after, Duration::from_secs(60));
        assert_eq!(config.budget.ratio, 0.2);
        assert_eq!(config.budget.min_per_sec, 10);
        assert_eq!(config.budget.ttl, Duration::from_secs(10));
    }

    #[test]
    fn deserializes_litellm_keys_class_names_and_seconds() {
        let config: RetryConfig = serde_json::from_str(
            r#"{"num_retries": 1,
                "retry_policy": {"RateLimitErrorRetries": 5, "InternalServerErrorRetries": 2,
                                 "BadRequestErrorRetries": 1, "timeout": 0},
                "base_backoff": 1, "min_backoff": 0.25, "budget": {"ttl": 30}}"#,
        )
        .unwrap();
        assert_eq!(config.num_retries, 1);
        let policy = config.retry_policy;
        assert_eq!(policy.get(ErrorClass::RateLimited), Some(5));
        assert_eq!(policy.get(ErrorClass::UpstreamUnavailable), Some(2));
        assert_eq!(policy.get(ErrorClass::BadRequest), Some(1));
        assert_eq!(policy.get(ErrorClass::Timeout), Some(0));
        assert_eq!(policy.get(ErrorClass::Auth), None);
        assert_eq!(config.base_backoff, Duration::from_secs(1));
        assert_eq!(config.min_backoff, Duration::from_millis(250));
        assert_eq!(config.budget.ttl, Duration::from_secs(30));
        assert_eq!(config.budget.ratio, 0.2);
    }

    #[test]
    fn serializes_back_to_what_it_reads() {
        let config = RetryConfig::builder()
            .retries_for(ErrorClass::Auth, 1)
            .min_backoff(Duration::from_millis(500))
            .build()
            .unwrap()
            .into_inner();
        let json = serde_json::to_string(&config).unwrap();
        let back: RetryConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = serde_json::from_str::<RetryConfig>(r#"{"retry_policy": {"Oops": 1}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`Oops`"), "{err}");
        let err = serde_json::from_str::<RetryConfig>(r#"{"num_retires": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("num_retires"), "{err}");
        let err = serde_json::from_str::<RetryConfig>(r#"{"max_backoff": -1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-negative"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let field = |builder: RetryConfigBuilder| builder.build().unwrap_err().field();
        assert_eq!(
            field(RetryConfig::builder().backoff_factor(0.5)),
            "backoff_factor"
        );
        assert_eq!(
            field(RetryConfig::builder().backoff_factor(f64::NAN)),
            "backoff_factor"
        );
        assert_eq!(
            field(RetryConfig::builder().min_backoff(Duration::from_secs(9))),
            "min_backoff"
        );
        assert_eq!(
            field(RetryConfig::builder().budget_ratio(-0.1)),
            "budget.ratio"
        );
        assert_eq!(
            field(RetryConfig::builder().budget_ttl(Duration::from_millis(10))),
            "budget.ttl"
        );
    }

    #[test]
    fn every_litellm_key_maps_to_a_class() {
        for (key, class) in RetryPolicy::LITELLM_KEYS {
            assert_eq!(RetryPolicy::class_for_key(key), Some(class));
        }
        for class in ErrorClass::ALL {
            assert_eq!(RetryPolicy::class_for_key(class.as_str()), Some(class));
        }
    }
}
