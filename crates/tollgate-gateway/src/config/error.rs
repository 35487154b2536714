//! What can go wrong while loading a config, and what is merely worth a warning.

use std::fmt;
use std::path::PathBuf;

/// Why a config could not be loaded.
///
/// Every message names the key path (`model_list[2].litellm_params.timeout`) so the
/// operator can find the line, and none of them ever contains the value of a secret or
/// of an environment variable: values read from the environment are referred to by the
/// variable's name only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid YAML (or uses YAML Tollgate does not accept, such as
    /// several documents in one file).
    #[error("invalid YAML at line {line}, column {column}: {message}")]
    Yaml {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the YAML parser objected to.
        message: String,
    },
    /// `os.environ/VAR` (or `env/VAR`) names a variable that is not set.
    #[error("{path}: environment variable {var} is not set")]
    MissingEnv {
        /// The variable's name.
        var: String,
        /// The key whose value refers to it.
        path: String,
    },
    /// A value is missing, has the wrong type, or is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The key at fault, e.g. `router_settings.routing_strategy`.
        path: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// More than one of the above, in file order: one run reports them all.
    #[error("{} errors:\n{}", .0.len(), list(.0))]
    Several(Vec<ConfigError>),
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|error| format!("  - {error}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: display_path(path),
            message: message.into(),
        }
    }

    /// One error as itself, several as [`ConfigError::Several`]; `errors`
    /// is not empty.
    pub(crate) fn several(mut errors: Vec<ConfigError>) -> Self {
        if errors.len() == 1 {
            return errors.remove(0);
        }
        ConfigError::Several(errors)
    }

    /// The errors this one stands for: itself, or each of several.
    pub fn errors(&self) -> &[ConfigError] {
        match self {
            ConfigError::Several(errors) => errors,
            other => std::slice::from_ref(other),
        }
    }

    /// The key path the error is about, when it is about one key.
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::MissingEnv { path, .. } | ConfigError::Invalid { path, .. } => Some(path),
            ConfigError::Io { .. } | ConfigError::Yaml { .. } | ConfigError::Several(_) => None,
        }
    }
}

/// Something in the config that Tollgate accepted but that the operator should know
/// about: an unknown or misplaced key, a LiteLLM setting Tollgate ignores, a secret
/// written inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The key the warning is about, e.g. `general_settings.database_url`.
    pub path: String,
    /// What Tollgate did about it.
    pub message: String,
}

impl Warning {
    pub(crate) fn new(path: &str, message: impl Into<String>) -> Self {
        Warning {
            path: display_path(path),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The root has no key of its own; name it so messages never start with ": ".
fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(top level)".to_owned()
    } else {
        path.to_owned()
    }
}

/// `parent.key`, or `parent["odd key"]` when the key would make the path ambiguous
/// (model group names such as `llama-3.2` contain dots).
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'));
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// `parent[index]`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}
