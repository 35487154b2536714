//! [`BreakerConfig`]: when a breaker opens, for how long, and how it probes.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tollgate_core::{ErrorClass, Valid, Validate};

/// How a circuit breaker decides, with serde support for config files.
///
/// Durations are written in seconds (`cooldown: 5`, `window: 0.5`), like the
/// LiteLLM settings they come from. Every field has a default, so a config
/// file names only what it changes; [`validate`](Self::validate) (or the
/// [builder](Self::builder)) checks the values.
///
/// A breaker opens when, while CLOSED, either
/// - `consecutive_failures` counted failures arrive in a row (LiteLLM's
///   `allowed_fails` maps here), or
/// - at least `min_calls` calls finished within the sliding `window` and
///   the share of counted failures among them reached
///   `failure_rate_threshold`, or
/// - `open_on_rate_limit` is on and a rate-limit failure says how long to
///   wait (`Retry-After`): then it opens for that long, up to
///   `max_rate_limit_open`.
///
/// It stays OPEN for `cooldown` (LiteLLM's `cooldown_time`), then lets up to
/// `half_open_max_probes` probes through at once; `success_threshold`
/// successful probes close it, a failed probe reopens it for twice as long
/// as the time before, up to `max_cooldown`. Each open time is shortened by
/// up to `jitter` (a fraction) at random, so that breakers opened together
/// do not all probe at the same instant.
///
/// ```
/// use std::time::Duration;
/// use tollgate_breaker::BreakerConfig;
///
/// let config: BreakerConfig = serde_json::from_str(
///     r#"{"consecutive_failures": 3, "cooldown": 30, "counted_classes": ["timeout", "upstream_unavailable"]}"#,
/// ).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.cooldown, Duration::from_secs(30));
/// assert_eq!(config.min_calls, BreakerConfig::default().min_calls);
///
/// let built = BreakerConfig::builder().consecutive_failures(3).cooldown(Duration::from_secs(30)).build();
/// assert!(built.is_ok());
/// assert!(BreakerConfig::builder().failure_rate_threshold(1.5).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The length of the sliding window the failure rate is computed over
    /// (seconds in config files). Default: 10 s.
    #[serde(deserialize_with = "seconds")]
    pub window: Duration,
    /// How many buckets the window is cut into; the window slides by one
    /// bucket at a time. Default: 10.
    pub buckets: u32,
    /// The fewest calls in the window before the failure rate may open the
    /// breaker. Default: 10.
    pub min_calls: u32,
    /// The share of counted failures among the calls in the window that
    /// opens the breaker, in `(0, 1]`. Default: 0.5.
    pub failure_rate_threshold: f64,
    /// Counted failures in a row that open the breaker; 0 turns this rule
    /// off. Default: 5.
    pub consecutive_failures: u32,
    /// How long the breaker stays open the first time (seconds in config
    /// files). Default: 5 s.
    #[serde(deserialize_with = "seconds")]
    pub cooldown: Duration,
    /// The longest the open time grows to as failed probes double it
    /// (seconds in config files). Default: 60 s.
    #[serde(deserialize_with = "seconds")]
    pub max_cooldown: Duration,
    /// The largest fraction, in `[0, 1]`, by which an open time is shortened
    /// at random. Default: 0.1.
    pub jitter: f64,
    /// How many probes may be in flight at once while HALF_OPEN. Default: 1.
    pub half_open_max_probes: u32,
    /// Successful probes needed to close the breaker. Default: 1.
    pub success_threshold: u32,
    /// Whether a rate-limit failure that says how long to wait opens the
    /// breaker for that long. Default: true.
    pub open_on_rate_limit: bool,
    /// The longest a rate-limit wait may keep the breaker open (seconds in
    /// config files); the breaker probes after this even if the upstream
    /// asked for longer. Default: 60 s.
    #[serde(deserialize_with = "seconds")]
    pub max_rate_limit_open: Duration,
    /// The error classes that count as failures, by name
    /// (`"rate_limited"`, `"timeout"`...). `None` (the default) uses each
    /// class's own default, [`ErrorClass::counts_against_breaker`], which
    /// never counts `bad_request` or `context_window_exceeded`.
    #[serde(deserialize_with = "class_names")]
    pub counted_classes: Option<Vec<ErrorClass>>,
    /// The most keys the registry keeps breakers for; calls for further keys
    /// pass through unguarded (and a warning is logged once). It bounds the
    /// memory a key extractor fed with untrusted input could use.
    /// Default: 10 000.
    pub max_keys: usize,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(10),
            buckets: 10,
            min_calls: 10,
            failure_rate_threshold: 0.5,
            consecutive_failures: 5,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
            jitter: 0.1,
            half_open_max_probes: 1,
            success_threshold: 1,
            open_on_rate_limit: true,
            max_rate_limit_open: Duration::from_secs(60),
            counted_classes: None,
            max_keys: 10_000,
        }
    }
}

/// The smallest bucket the window may be cut into. Finer buckets buy
/// nothing for a breaker and would wear out the bucket epoch counter sooner.
const MIN_BUCKET: Duration = Duration::from_millis(1);

/// The most buckets a window may have: the window is scanned on every
/// counted failure.
const MAX_BUCKETS: u32 = 1000;

impl BreakerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder {
            config: BreakerConfig::default(),
        }
    }

    /// Checks the values; the error names the first field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &'static str, reason: &'static str| Err(ConfigError { field, reason });
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return fail("buckets", "must be between 1 and 1000");
        }
        if self.window.is_zero() || self.window / self.buckets < MIN_BUCKET {
            return fail("window", "must be at least 1 ms per bucket");
        }
        if self.min_calls == 0 {
            return fail("min_calls", "must be at least 1");
        }
        if !(self.failure_rate_threshold > 0.0 && self.failure_rate_threshold <= 1.0) {
            return fail("failure_rate_threshold", "must be in (0, 1]");
        }
        if self.cooldown.is_zero() {
            return fail("cooldown", "must be more than zero");
        }
        if self.max_cooldown < self.cooldown {
            return fail("max_cooldown", "must be at least the cooldown");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return fail("jitter", "must be in [0, 1]");
        }
        if self.half_open_max_probes == 0 {
            return fail("half_open_max_probes", "must be at least 1");
        }
        if self.success_threshold == 0 {
            return fail("success_threshold", "must be at least 1");
        }
        if self.max_keys == 0 {
            return fail("max_keys", "must be at least 1");
        }
        Ok(())
    }

    /// Whether a failure of `class` counts against the breaker.
    pub fn counts(&self, class: ErrorClass) -> bool {
        match &self.counted_classes {
            Some(classes) => classes.contains(&class),
            None => class.counts_against_breaker(),
        }
    }
}

/// A config value that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker setting `{field}`: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: &'static str,
}

impl ConfigError {
    /// The field at fault, as named in config files.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl Validate for BreakerConfig {
    type Error = ConfigError;

    fn validate(&self) -> Result<(), ConfigError> {
        BreakerConfig::validate(self)
    }
}

/// Builds a validated [`BreakerConfig`]; see its fields for the meaning and
/// defaults of each setting.
#[derive(Debug, Clone)]
pub struct BreakerConfigBuilder {
    config: BreakerConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl BreakerConfigBuilder {
    setters! {
        /// Sets [`BreakerConfig::window`].
        window: Duration,
        /// Sets [`BreakerConfig::buckets`].
        buckets: u32,
        /// Sets [`BreakerConfig::min_calls`].
        min_calls: u32,
        /// Sets [`BreakerConfig::failure_rate_threshold`].
        failure_rate_threshold: f64,
        /// Sets [`BreakerConfig::consecutive_failures`] (0 turns the rule off).
        consecutive_failures: u32,
        /// Sets [`BreakerConfig::cooldown`].
        cooldown: Duration,
        /// Sets [`BreakerConfig::max_cooldown`].
        max_cooldown: Duration,
        /// Sets [`BreakerConfig::jitter`].
        jitter: f64,
        /// Sets [`BreakerConfig::half_open_max_probes`].
        half_open_max_probes: u32,
        /// Sets [`BreakerConfig::success_threshold`].
        success_threshold: u32,
        /// Sets [`BreakerConfig::open_on_rate_limit`].
        open_on_rate_limit: bool,
        /// Sets [`BreakerConfig::max_rate_limit_open`].
        max_rate_limit_open: Duration,
        /// Sets [`BreakerConfig::max_keys`].
        max_keys: usize,
    }

    /// Sets [`BreakerConfig::counted_classes`]: only these classes count.
    pub fn counted_classes(mut self, classes: impl IntoIterator<Item = ErrorClass>) -> Self {
        self.config.counted_classes = Some(classes.into_iter().collect());
        self
    }

    /// The validated config, ready for
    /// [`CircuitBreakerLayer::new`](crate::CircuitBreakerLayer::new).
    pub fn build(self) -> Result<Valid<BreakerConfig>, ConfigError> {
        Valid::new(self.config)
    }
}

/// Reads a duration written as a number of seconds (integer or fraction).
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(secs).map_err(|_| {
        serde::de::Error::invalid_value(
            serde::de::Unexpected::Float(secs),
            &"a non-negative number of seconds",
        )
    })
}

/// Reads a list of error class names.
fn class_names<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<ErrorClass>>, D::Error> {
    struct Names;
    impl fmt::Display for Names {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
            write!(f, "one of {}", names.join(", "))
        }
    }
    let Some(names) = Option::<Vec<String>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    names
        .iter()
        .map(|name| {
            ErrorClass::from_name(name).ok_or_else(|| {
                serde::de::Error::invalid_value(
                    serde::de::Unexpected::Str(name),
                    &Names.to_string().as_str(),
                )
            })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_never_count_request_faults() {
        let config = BreakerConfig::default();
        config.validate().unwrap();
        assert!(!config.counts(ErrorClass::BadRequest));
        assert!(!config.counts(ErrorClass::ContextWindowExceeded));
        assert!(config.counts(ErrorClass::Timeout));
    }

    #[test]
    fn an_empty_document_is_the_default() {
        let config: BreakerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, BreakerConfig::default());
    }

    #[test]
    fn seconds_and_class_names_parse() {
        let config: BreakerConfig = serde_json::from_str(
            r#"{"window": 0.5, "cooldown": 2, "counted_classes": ["timeout"]}"#,
        )
        .unwrap();
        assert_eq!(config.window, Duration::from_millis(500));
        assert_eq!(config.cooldown, Duration::from_secs(2));
        assert!(config.counts(ErrorClass::Timeout));
        assert!(!config.counts(ErrorClass::RateLimited));
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = serde_json::from_str::<BreakerConfig>(r#"{"counted_classes": ["nope"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope") && err.contains("rate_limited"),
            "{err}"
        );
        assert!(serde_json::from_str::<BreakerConfig>(r#"{"cooldown": -1}"#).is_err());
        assert!(serde_json::from_str::<BreakerConfig>(r#"{"cooldwn": 1}"#).is_err());

        let cases = [
            (BreakerConfig::builder().buckets(0), "buckets"),
            (
                BreakerConfig::builder()
                    .window(Duration::from_millis(5))
                    .buckets(10),
                "window",
            ),
            (BreakerConfig::builder().min_calls(0), "min_calls"),
            (
                BreakerConfig::builder().failure_rate_threshold(0.0),
                "failure_rate_threshold",
            ),
            (
                BreakerConfig::builder().cooldown(Duration::ZERO),
                "cooldown",
            ),
            (
                BreakerConfig::builder().max_cooldown(Duration::from_secs(1)),
                "max_cooldown",
            ),
            (BreakerConfig::builder().jitter(1.5), "jitter"),
            (
                BreakerConfig::builder().half_open_max_probes(0),
                "half_open_max_probes",
            ),
            (
                BreakerConfig::builder().success_threshold(0),
                "success_threshold",
            ),
            (BreakerConfig::builder().max_keys(0), "max_keys"),
        ];
        for (builder, field) in cases {
            assert_eq!(builder.build().unwrap_err().field(), field);
        }
    }
}
