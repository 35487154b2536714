//! `os.environ/VAR` and `env/VAR` references.
//!
//! LiteLLM lets any string value be `os.environ/VAR`; Tollgate also accepts the
//! shorter `env/VAR`. References are resolved as the schema walk reads each value, so
//! a number can come from the environment (`redis_port: os.environ/REDIS_PORT`) and a
//! key Tollgate ignores never demands a variable it would not use.

use std::collections::BTreeMap;

use super::error::ConfigError;

/// The spellings of an environment reference, LiteLLM's first.
const PREFIXES: [&str; 2] = ["os.environ/", "env/"];

/// Where the walk looks variables up.
pub(crate) struct Env<'a> {
    process: &'a dyn Fn(&str) -> Option<String>,
    /// The config's own `environment_variables` section, which LiteLLM copies into the
    /// process environment before reading the rest of the file, so it wins.
    overrides: BTreeMap<String, String>,
}

/// A scalar after resolution: its text and, if it came from the environment, the
/// variable's name (so messages can name the variable instead of printing the value).
pub(crate) struct Text {
    pub(crate) value: String,
    pub(crate) var: Option<String>,
}

impl Text {
    /// How an error message may refer to this value: short literals are quoted, values
    /// from the environment are named by their variable and never shown.
    pub(crate) fn shown(&self) -> String {
        match &self.var {
            Some(var) => format!("the value of {var}"),
            // Keys are long; a long value in the wrong field is likely one, so it is
            // described rather than shown. Typos in short values stay readable.
            None if self.value.chars().count() <= 16 => format!("{:?}", self.value),
            None => format!("a {}-character value", self.value.chars().count()),
        }
    }
}

impl<'a> Env<'a> {
    pub(crate) fn new(process: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env {
            process,
            overrides: BTreeMap::new(),
        }
    }

    pub(crate) fn set_overrides(&mut self, overrides: BTreeMap<String, String>) {
        self.overrides = overrides;
    }

    /// The value of a variable.
    pub(crate) fn get(&self, var: &str) -> Option<String> {
        self.overrides
            .get(var)
            .cloned()
            .or_else(|| (self.process)(var))
    }

    /// Resolves `text` if it is a reference; `path` names the key for errors.
    pub(crate) fn resolve(&self, text: &str, path: &str) -> Result<Text, ConfigError> {
        let Some(var) = reference(text) else {
            return Ok(Text {
                value: text.to_owned(),
                var: None,
            });
        };
        if var.is_empty() {
            return Err(ConfigError::invalid(
                path,
                "environment reference without a variable name",
            ));
        }
        match self.get(var) {
            Some(value) => Ok(Text {
                value,
                var: Some(var.to_owned()),
            }),
            None => Err(ConfigError::MissingEnv {
                var: var.to_owned(),
                path: path.to_owned(),
            }),
        }
    }
}

/// The variable named by `os.environ/VAR` or `env/VAR`, if `text` is such a reference.
pub(crate) fn reference(text: &str) -> Option<&str> {
    let text = text.trim();
    PREFIXES
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .map(str::trim)
}
