//! The schema walk: YAML tree → typed [`Config`], with warnings for keys it does not
//! read and a path-naming error for every value it cannot accept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

mod deployment;
mod provider;
mod settings;
mod tollgate;

use super::decimal::Decimal;
use super::env::{Env, Text};
use super::error::{ConfigError, Warning, index_path, key_path};
use super::keys::{self, Section};
use super::model::{Config, KeySource, Secret};
use super::yaml::Node;
use crate::model_prices::ModelPrices;
use deployment::model_list;
use settings::{general_settings, litellm_settings, router_settings};
use tollgate::tollgate;
use tollgate_core::Secrets;

/// Fallback lists as the model stores them: group → groups to try next.
type Fallbacks = Vec<(String, Vec<String>)>;

/// Walks the whole tree. `env` is the process environment (injected for tests).
pub(crate) fn config(
    root: &Node,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<Warning>), ConfigError> {
    let mut cx = Cx {
        env: Env::new(env),
        warnings: Vec::new(),
        groups: Vec::new(),
        secrets: Secrets::new(),
        prices: ModelPrices::snapshot(),
    };
    let sections = match root {
        Node::Map(_) => cx.entries(root, "")?,
        Node::Null => {
            return Err(ConfigError::invalid(
                "model_list",
                "missing: the file is empty, and a config needs at least one model",
            ));
        }
        other => {
            return Err(ConfigError::invalid(
                "",
                format!("expected a mapping of sections, found {}", other.kind()),
            ));
        }
    };
    let section = |name: &str| {
        sections
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, node)| *node)
    };
    for (key, _) in &sections {
        if !Section::Root.used().contains(key) {
            cx.warn_key(Section::Root, key, &key_path("", key));
        }
    }

    // Variables first, since any later value may refer to them; then the models, since
    // fallbacks and mock settings must name groups and deployments that exist.
    if let Some(node) = section("environment_variables") {
        let overrides = environment_variables(&mut cx, node)?;
        cx.env.set_overrides(overrides);
    }
    // The model facts next: bare model names resolve through them.
    if let Some(node) = section("tollgate") {
        model_prices(&mut cx, node)?;
    }
    // Every section is checked even when one fails, so one run reports every
    // error (an error inside a section still ends that section's walk).
    let mut errors = Vec::new();
    let (model_list, mut list_errors) = model_list(&mut cx, section("model_list"))?;
    errors.append(&mut list_errors);
    let empty = Node::Null;
    let router = router_settings(&mut cx, section("router_settings").unwrap_or(&empty));
    let router = keep(&mut errors, router);
    let litellm = litellm_settings(&mut cx, section("litellm_settings").unwrap_or(&empty));
    let litellm = keep(&mut errors, litellm);
    let general = general_settings(&mut cx, section("general_settings").unwrap_or(&empty));
    let general = keep(&mut errors, general);
    let tollgate = tollgate(&mut cx, section("tollgate").unwrap_or(&empty), &model_list);
    let tollgate = keep(&mut errors, tollgate);
    let (Some(mut router), Some(litellm), Some(general), Some(tollgate)) =
        (router, litellm, general, tollgate)
    else {
        return Err(ConfigError::several(errors));
    };
    if !errors.is_empty() {
        return Err(ConfigError::several(errors));
    }
    // LiteLLM reads these in either section; the router's win.
    router.allowed_fails = router.allowed_fails.or(litellm.allowed_fails);
    router.cooldown_time = router.cooldown_time.or(litellm.cooldown_time);
    let config = Config {
        router_settings: router,
        litellm_settings: litellm,
        general_settings: general,
        tollgate,
        model_list,
        secrets: std::mem::take(&mut cx.secrets),
        model_prices: cx.prices.clone(),
    };
    Ok((config, cx.warnings))
}

/// The value, or `None` with the error kept for the report.
fn keep<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

/// State of the walk.
struct Cx<'a> {
    env: Env<'a>,
    warnings: Vec<Warning>,
    /// Model group names, once `model_list` is read.
    groups: Vec<String>,
    /// Every secret read so far: what the gateway redacts from upstream
    /// text.
    secrets: Secrets,
    /// LiteLLM's model facts, with `tollgate.model_prices_path` over them.
    prices: Arc<ModelPrices>,
}

impl Cx<'_> {
    /// A [`Secret`], remembered in the config's [`Secrets`] so that no
    /// upstream text shows it to a client. Every secret the walk reads is
    /// made here.
    fn keep_secret(&mut self, value: String, source: KeySource) -> Secret {
        self.secrets.insert(&value);
        Secret::with_source(value, source)
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Warning::new(path, message));
    }

    fn warn_key(&mut self, section: Section, key: &str, path: &str) {
        self.warnings.push(keys::warning(section, key, path));
    }

    /// The entries of a mapping (nothing for `key:` with no value). A repeated key
    /// keeps its last value, as PyYAML (and so LiteLLM) does, with a warning.
    fn entries<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
    ) -> Result<Vec<(&'n str, &'n Node)>, ConfigError> {
        let entries = match node {
            Node::Map(entries) => entries,
            Node::Null => return Ok(Vec::new()),
            other => {
                return Err(ConfigError::invalid(
                    path,
                    format!("expected a mapping, found {}", other.kind()),
                ));
            }
        };
        let mut out: Vec<(&str, &Node)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if let Some(slot) = out.iter_mut().find(|(seen, _)| *seen == key.as_str()) {
                slot.1 = value;
                self.warn(
                    &key_path(path, key),
                    "duplicate key; the last value wins, as in LiteLLM",
                );
            } else {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// The items of a list (nothing for `key:` with no value).
    fn items<'n>(&self, node: &'n Node, path: &str) -> Result<&'n [Node], ConfigError> {
        match node {
            Node::Seq(items) => Ok(items),
            Node::Null => Ok(&[]),
            other => Err(ConfigError::invalid(
                path,
                format!("expected a list, found {}", other.kind()),
            )),
        }
    }

    /// A scalar with environment references resolved; `None` for null.
    fn text(&self, node: &Node, path: &str) -> Result<Option<Text>, ConfigError> {
        match node {
            Node::Null => Ok(None),
            Node::Scalar(text) => self.env.resolve(text, path).map(Some),
            other => Err(ConfigError::invalid(
                path,
                format!("expected a single value, found {}", other.kind()),
            )),
        }
    }

    fn string(&self, node: &Node, path: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.text(node, path)?.map(|text| text.value))
    }

    /// A secret; written inline it still loads, with a nudge towards the environment.
    fn secret(&mut self, node: &Node, path: &str) -> Result<Option<Secret>, ConfigError> {
        let Some(text) = self.text(node, path)? else {
            return Ok(None);
        };
        let source = match text.var {
            Some(var) => KeySource::Env(var),
            None => {
                self.warn(
                    path,
                    "secret written inline in the config; prefer os.environ/VAR",
                );
                KeySource::Inline
            }
        };
        Ok(Some(self.keep_secret(text.value, source)))
    }

    /// A whole number from 0 to `max`.
    fn whole(&self, node: &Node, path: &str, max: u64) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.text(node, path)? else {
            return Ok(None);
        };
        let digits = without_underscores(text.value.trim());
        let digits = digits.strip_prefix('+').unwrap_or(&digits);
        let negative = digits
            .strip_prefix('-')
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
        if negative {
            return Err(ConfigError::invalid(path, "must not be negative"));
        }
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::invalid(
                path,
                format!("expected a whole number, found {}", text.shown()),
            ));
        }
        match digits.parse::<u64>() {
            Ok(value) if value <= max => Ok(Some(value)),
            _ => Err(ConfigError::invalid(path, format!("must be at most {max}"))),
        }
    }

    fn u64(&self, node: &Node, path: &str) -> Result<Option<u64>, ConfigError> {
        self.whole(node, path, u64::MAX)
    }

    fn u32(&self, node: &Node, path: &str) -> Result<Option<u32>, ConfigError> {
        // `whole` caps the value at u32::MAX, so the conversion cannot fail.
        Ok(self
            .whole(node, path, u64::from(u32::MAX))?
            .and_then(|value| u32::try_from(value).ok()))
    }

    /// A finite number (for durations, weights, sizes: not for money).
    fn number(&self, node: &Node, path: &str, what: &str) -> Result<Option<f64>, ConfigError> {
        let Some(text) = self.text(node, path)? else {
            return Ok(None);
        };
        match without_underscores(text.value.trim()).parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Some(value)),
            _ => Err(ConfigError::invalid(
                path,
                format!("expected {what}, found {}", text.shown()),
            )),
        }
    }

    /// Seconds, as an int or a float. `positive` rejects zero, for timeouts, where zero
    /// would fail every request rather than mean "no timeout".
    fn duration(
        &self,
        node: &Node,
        path: &str,
        positive: bool,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(seconds) = self.number(node, path, "a number of seconds")? else {
            return Ok(None);
        };
        if seconds < 0.0 {
            return Err(ConfigError::invalid(path, "must not be negative"));
        }
        if positive && seconds == 0.0 {
            return Err(ConfigError::invalid(path, "must be more than 0 seconds"));
        }
        Duration::try_from_secs_f64(seconds)
            .map(Some)
            .map_err(|_| ConfigError::invalid(path, "is too long a duration"))
    }

    fn bool(&self, node: &Node, path: &str) -> Result<Option<bool>, ConfigError> {
        let Some(text) = self.text(node, path)? else {
            return Ok(None);
        };
        // YAML 1.1 spellings too, since LiteLLM reads its file with PyYAML.
        match text.value.trim() {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(Some(true)),
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                Ok(Some(false))
            }
            _ => Err(ConfigError::invalid(
                path,
                format!("expected true or false, found {}", text.shown()),
            )),
        }
    }

    fn decimal(&self, node: &Node, path: &str) -> Result<Option<Decimal>, ConfigError> {
        let Some(text) = self.text(node, path)? else {
            return Ok(None);
        };
        Decimal::parse(&text.value)
            .map(Some)
            .map_err(|error| ConfigError::invalid(path, format!("{error}, found {}", text.shown())))
    }

    /// An amount of dollars that fits a `u64` of pico-dollars (a budget).
    fn budget(&self, node: &Node, path: &str) -> Result<Option<Decimal>, ConfigError> {
        let budget = self.decimal(node, path)?;
        let fits = budget.as_ref().is_none_or(|budget| {
            budget
                .to_units(12)
                .is_some_and(|picos| u64::try_from(picos).is_ok())
        });
        if !fits {
            return Err(ConfigError::invalid(
                path,
                "must be at most 18446744 dollars, with at most 12 decimals",
            ));
        }
        Ok(budget)
    }

    /// A model group name that must exist (`*` too where LiteLLM allows it).
    fn group(&self, node: &Node, path: &str, wildcard: bool) -> Result<String, ConfigError> {
        let name = self
            .string(node, path)?
            .ok_or_else(|| ConfigError::invalid(path, "expected a model group name"))?;
        self.check_group(&name, path, wildcard)?;
        Ok(name)
    }

    /// A list of model group names that must exist.
    fn groups(&self, node: &Node, path: &str, wildcard: bool) -> Result<Vec<String>, ConfigError> {
        self.items(node, path)?
            .iter()
            .enumerate()
            .map(|(i, item)| self.group(item, &index_path(path, i), wildcard))
            .collect()
    }

    fn check_group(&self, name: &str, path: &str, wildcard: bool) -> Result<(), ConfigError> {
        if (wildcard && name == "*") || self.groups.iter().any(|group| group == name) {
            return Ok(());
        }
        Err(ConfigError::invalid(
            path,
            format!(
                "no model group named {name:?}; the model_list has {}",
                self.groups.join(", ")
            ),
        ))
    }
}

/// A number as YAML 1.1 (PyYAML, so LiteLLM) reads it: `20_000` is 20000.
/// Only underscores between digits go, so `_1` and `1_` stay invalid.
fn without_underscores(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let between_digits = |i: usize| {
        i > 0
            && i + 1 < bytes.len()
            && bytes[i - 1].is_ascii_digit()
            && (bytes[i + 1].is_ascii_digit() || bytes[i + 1] == b'_')
    };
    if !text.contains('_') || !(0..bytes.len()).all(|i| bytes[i] != b'_' || between_digits(i)) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.replace('_', ""))
}

/// `tollgate.model_prices_path`: a local model price file over the snapshot.
fn model_prices(cx: &mut Cx<'_>, tollgate: &Node) -> Result<(), ConfigError> {
    const PATH: &str = "tollgate.model_prices_path";
    let Node::Map(entries) = tollgate else {
        return Ok(());
    };
    let Some((_, node)) = entries
        .iter()
        .rev()
        .find(|(key, _)| key == "model_prices_path")
    else {
        return Ok(());
    };
    let Some(file) = cx.string(node, PATH)? else {
        return Ok(());
    };
    let merged = cx
        .prices
        .with_file(std::path::Path::new(&file))
        .map_err(|error| ConfigError::invalid(PATH, error.to_string()))?;
    cx.prices = Arc::new(merged);
    Ok(())
}

fn environment_variables(
    cx: &mut Cx<'_>,
    node: &Node,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut vars = BTreeMap::new();
    for (key, value) in cx.entries(node, "environment_variables")? {
        let path = key_path("environment_variables", key);
        // Taken literally: LiteLLM does not resolve references inside this section.
        match value {
            Node::Scalar(text) => {
                vars.insert(key.to_owned(), text.clone());
            }
            Node::Null => {}
            other => {
                return Err(ConfigError::invalid(
                    &path,
                    format!("expected a single value, found {}", other.kind()),
                ));
            }
        }
    }
    Ok(vars)
}
