//! Secrets in the config, and where each came from: kept apart from the
//! model so every part of the config can hold one without depending on it.

use std::fmt;

/// A value that must never reach a log, an error message or a report: API keys, the
/// master key, passwords, header values.
#[derive(Clone)]
pub struct Secret {
    value: String,
    source: KeySource,
}

impl Secret {
    /// A secret given inline.
    pub fn new(value: impl Into<String>) -> Self {
        Secret {
            value: value.into(),
            source: KeySource::Inline,
        }
    }

    /// A secret read from the config. The config walk makes every one
    /// through its `keep_secret`, which also adds it to
    /// [`Config::secrets`].
    pub(crate) fn with_source(value: String, source: KeySource) -> Self {
        Secret { value, source }
    }

    /// The secret itself, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where it came from (never [`KeySource::None`]).
    pub fn source(&self) -> &KeySource {
        &self.source
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a key came from: what a report may say instead of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Read from this environment variable.
    Env(String),
    /// Written in the config file itself.
    Inline,
    /// No key.
    None,
}

impl fmt::Display for KeySource {
    /// `env OPENROUTER_API_KEY`, `config` or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(var) => write!(f, "env {var}"),
            KeySource::Inline => f.write_str("config"),
            KeySource::None => f.write_str("none"),
        }
    }
}
