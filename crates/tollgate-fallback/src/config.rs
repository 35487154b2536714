//! [`FallbackConfig`]: the cascade's rules, as serde config with defaults,
//! validation and a builder.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use tollgate_core::{Valid, Validate};

use crate::error::ConfigError;

/// A model group and the groups to try after it, in order: one entry of
/// LiteLLM's `fallbacks` (`[{"gpt-4o": ["claude-sonnet", "gpt-4o-mini"]}]`).
pub type GroupFallbacks = (String, Vec<String>);

/// The cascade's rules: which model groups to try after which, per kind of
/// failure, and what the cascade knows about each group.
///
/// The lists are LiteLLM's router settings, with LiteLLM's meaning (see the
/// [crate documentation](crate) for how a failure picks its list):
///
/// ```
/// let config: tollgate_fallback::FallbackConfig = serde_json::from_str(r#"{
///     "fallbacks": [{"gpt-4o": ["claude-sonnet", "gpt-4o-mini"]}],
///     "context_window_fallbacks": [{"gpt-4o-mini": ["gpt-4o"]}],
///     "default_fallbacks": ["gpt-4o-mini"],
///     "targets": {
///         "deepseek-free": {"pool": "openrouter-free"},
///         "glm-free": {"pool": "openrouter-free", "supports_assistant_prefill": false}
///     }
/// }"#).unwrap();
/// config.validate().unwrap();
/// assert_eq!(config.max_fallbacks, 5); // LiteLLM's default
/// assert_eq!(config.fallbacks[0].1, ["claude-sonnet", "gpt-4o-mini"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    /// The groups to try when a group fails in a way another model may fix
    /// (rate limit, timeout, unavailable, auth, credits, unknown model):
    /// LiteLLM's `fallbacks`, a list of single-key maps.
    #[serde(with = "group_lists")]
    pub fallbacks: Vec<GroupFallbacks>,
    /// The groups to try when the prompt does not fit a group's context
    /// window. A group without an entry uses its `fallbacks` (LiteLLM's rule).
    #[serde(with = "group_lists")]
    pub context_window_fallbacks: Vec<GroupFallbacks>,
    /// The groups to try when a group refuses the content. A group without
    /// an entry returns the refusal and its reason to the client — unlike
    /// LiteLLM, whose regular `fallbacks` would hide it behind another
    /// model's answer.
    #[serde(with = "group_lists")]
    pub content_policy_fallbacks: Vec<GroupFallbacks>,
    /// The groups to try after any group that has no `fallbacks` entry
    /// (LiteLLM's `default_fallbacks`).
    pub default_fallbacks: Vec<String>,
    /// The most fallback groups one request tries, the one that answers
    /// included (LiteLLM's `max_fallbacks`). Default 5.
    pub max_fallbacks: u32,
    /// The most continuation requests one stream makes after it broke
    /// mid-answer (each asks a group to go on from the text already sent).
    /// 0 turns continuation off: a break ends the stream with an error
    /// event. Default 2.
    pub max_continuations: u32,
    /// The most bytes of a stream held back before its first content: past
    /// this, the cascade commits to the target anyway and a later failure is
    /// handled as a break. Default 1 MiB.
    pub max_commit_bytes: usize,
    /// What the cascade knows about each group: its rate-limit pool and
    /// whether it takes an assistant prefill. Groups not listed have no pool
    /// and take a prefill.
    pub targets: BTreeMap<String, TargetInfo>,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            fallbacks: Vec::new(),
            context_window_fallbacks: Vec::new(),
            content_policy_fallbacks: Vec::new(),
            default_fallbacks: Vec::new(),
            max_fallbacks: 5,
            max_continuations: 2,
            max_commit_bytes: 1024 * 1024,
            targets: BTreeMap::new(),
        }
    }
}

impl Validate for FallbackConfig {
    type Error = ConfigError;

    fn validate(&self) -> Result<(), ConfigError> {
        FallbackConfig::validate(self)
    }
}

/// What the cascade knows about one model group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetInfo {
    /// The account-wide rate-limit pool the group draws from, if it shares
    /// one with other groups (OpenRouter's `:free` models of one key share a
    /// per-minute and a per-day limit). When such a pool is exhausted — a
    /// failure with [`Scope::AccountFreePool`](tollgate_core::Scope) — the
    /// cascade skips every group of that pool, and still tries the others.
    pub pool: Option<String>,
    /// Whether the group continues an answer from an assistant message at
    /// the end of the conversation (LiteLLM's
    /// `model_info.supports_assistant_prefill`). A group that does not is
    /// never asked to continue a broken stream. Default true: a group that
    /// answers a prefill with a 400 is skipped for the rest of the request.
    pub supports_assistant_prefill: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo {
            pool: None,
            supports_assistant_prefill: true,
        }
    }
}

impl FallbackConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> FallbackConfigBuilder {
        FallbackConfigBuilder {
            config: FallbackConfig::default(),
        }
    }

    /// Checks the settings, naming the first field that is wrong: empty
    /// group names, a group listed twice, a group that falls back to itself,
    /// an empty pool name, a zero `max_commit_bytes`.
    ///
    /// Whether the groups exist is for the caller to check: the cascade does
    /// not know which groups its inner service serves.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, lists) in [
            ("fallbacks", &self.fallbacks),
            ("context_window_fallbacks", &self.context_window_fallbacks),
            ("content_policy_fallbacks", &self.content_policy_fallbacks),
        ] {
            let mut keys = HashSet::new();
            for (group, list) in lists {
                if group.is_empty() {
                    return Err(ConfigError::new(field, "names an empty model group"));
                }
                if !keys.insert(group.as_str()) {
                    return Err(ConfigError::new(
                        format!("{field}[{group}]"),
                        "is listed twice",
                    ));
                }
                let at = format!("{field}[{group}]");
                check_list(&at, list)?;
                if list.iter().any(|g| g == group) {
                    return Err(ConfigError::new(at, "lists the group itself"));
                }
            }
        }
        check_list("default_fallbacks", &self.default_fallbacks)?;
        if self.max_commit_bytes == 0 {
            return Err(ConfigError::new("max_commit_bytes", "must be at least 1"));
        }
        for (group, info) in &self.targets {
            if group.is_empty() {
                return Err(ConfigError::new("targets", "names an empty model group"));
            }
            if info.pool.as_deref() == Some("") {
                return Err(ConfigError::new(
                    format!("targets[{group}].pool"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

fn check_list(field: &str, list: &[String]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for group in list {
        if group.is_empty() {
            return Err(ConfigError::new(field, "names an empty model group"));
        }
        if !seen.insert(group.as_str()) {
            return Err(ConfigError::new(field, format!("lists `{group}` twice")));
        }
    }
    Ok(())
}

/// Builds a [`FallbackConfig`] from the defaults; [`build`](Self::build)
/// validates it.
#[derive(Debug, Clone)]
pub struct FallbackConfigBuilder {
    config: FallbackConfig,
}

fn strings<I, T>(groups: I) -> Vec<String>
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    groups.into_iter().map(Into::into).collect()
}

impl FallbackConfigBuilder {
    /// Adds `group`'s entry to [`FallbackConfig::fallbacks`].
    pub fn fallbacks<I, T>(mut self, group: impl Into<String>, to: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.config.fallbacks.push((group.into(), strings(to)));
        self
    }

    /// Adds `group`'s entry to [`FallbackConfig::context_window_fallbacks`].
    pub fn context_window_fallbacks<I, T>(mut self, group: impl Into<String>, to: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.config
            .context_window_fallbacks
            .push((group.into(), strings(to)));
        self
    }

    /// Adds `group`'s entry to [`FallbackConfig::content_policy_fallbacks`].
    pub fn content_policy_fallbacks<I, T>(mut self, group: impl Into<String>, to: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.config
            .content_policy_fallbacks
            .push((group.into(), strings(to)));
        self
    }

    /// Sets [`FallbackConfig::default_fallbacks`].
    pub fn default_fallbacks<I, T>(mut self, to: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.config.default_fallbacks = strings(to);
        self
    }

    /// Sets [`FallbackConfig::max_fallbacks`].
    pub fn max_fallbacks(mut self, max: u32) -> Self {
        self.config.max_fallbacks = max;
        self
    }

    /// Sets [`FallbackConfig::max_continuations`].
    pub fn max_continuations(mut self, max: u32) -> Self {
        self.config.max_continuations = max;
        self
    }

    /// Sets [`FallbackConfig::max_commit_bytes`].
    pub fn max_commit_bytes(mut self, max: usize) -> Self {
        self.config.max_commit_bytes = max;
        self
    }

    /// Sets `group`'s [`TargetInfo::pool`].
    pub fn pool(mut self, group: impl Into<String>, pool: impl Into<String>) -> Self {
        self.config.targets.entry(group.into()).or_default().pool = Some(pool.into());
        self
    }

    /// Sets `group`'s [`TargetInfo::supports_assistant_prefill`].
    pub fn supports_assistant_prefill(mut self, group: impl Into<String>, supports: bool) -> Self {
        self.config
            .targets
            .entry(group.into())
            .or_default()
            .supports_assistant_prefill = supports;
        self
    }

    /// The validated config, ready for [`FallbackLayer::new`](crate::FallbackLayer::new).
    pub fn build(self) -> Result<Valid<FallbackConfig>, ConfigError> {
        Valid::new(self.config)
    }
}

/// LiteLLM's fallback lists: a sequence of maps from a group to its list,
/// usually one key each (`[{"a": ["b"]}, {"c": ["d"]}]`). Several keys in one
/// map are read in order too.
mod group_lists {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        lists: &[GroupFallbacks],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        struct One<'a>(&'a GroupFallbacks);
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(&self.0.0, &self.0.1)?;
                map.end()
            }
        }
        let mut seq = serializer.serialize_seq(Some(lists.len()))?;
        for entry in lists {
            seq.serialize_element(&One(entry))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<GroupFallbacks>, D::Error> {
        struct Entries<'a>(&'a mut Vec<GroupFallbacks>);
        impl<'de> serde::de::DeserializeSeed<'de> for Entries<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
                deserializer.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for Entries<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from a model group to its list of fallback groups")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some((group, list)) = map.next_entry::<String, Vec<String>>()? {
                    self.0.push((group, list));
                }
                Ok(())
            }
        }

        struct Lists;
        impl<'de> Visitor<'de> for Lists {
            type Value = Vec<GroupFallbacks>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of single-key maps from a model group to its fallback groups \
                     (`[{\"gpt-4o\": [\"gpt-4o-mini\"]}]`)",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut lists = Vec::new();
                while seq.next_element_seed(Entries(&mut lists))?.is_some() {}
                Ok(lists)
            }
            // A single map, as some configs write it, means the same.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let mut lists = Vec::new();
                Entries(&mut lists).visit_map(map)?;
                Ok(lists)
            }
        }

        deserializer.deserialize_any(Lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_docs() {
        let config = FallbackConfig::default();
        config.validate().unwrap();
        assert_eq!(config.max_fallbacks, 5);
        assert_eq!(config.max_continuations, 2);
        assert_eq!(config.max_commit_bytes, 1024 * 1024);
        assert!(TargetInfo::default().supports_assistant_prefill);
    }

    #[test]
    fn reads_litellm_lists_and_writes_them_back() {
        let config: FallbackConfig = serde_json::from_str(
            r#"{"fallbacks": [{"a": ["b", "c"]}, {"b": ["c"]}],
                "context_window_fallbacks": {"a": ["long"]},
                "default_fallbacks": ["c"], "max_fallbacks": 2,
                "targets": {"b": {"pool": "free"}}}"#,
        )
        .unwrap();
        assert_eq!(
            config.fallbacks,
            [
                ("a".to_owned(), vec!["b".to_owned(), "c".to_owned()]),
                ("b".to_owned(), vec!["c".to_owned()])
            ]
        );
        assert_eq!(config.context_window_fallbacks[0].1, ["long"]);
        assert_eq!(config.targets["b"].pool.as_deref(), Some("free"));
        assert!(config.targets["b"].supports_assistant_prefill);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["fallbacks"][0]["a"][1], "c");
        let back: FallbackConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = serde_json::from_str::<FallbackConfig>(r#"{"fallback": []}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fallback"), "{err}");
        let err = serde_json::from_str::<FallbackConfig>(r#"{"targets": {"a": {"prefill": 1}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("prefill"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let field =
            |builder: FallbackConfigBuilder| builder.build().unwrap_err().field().to_owned();
        assert_eq!(
            field(FallbackConfig::builder().fallbacks("a", ["a"])),
            "fallbacks[a]"
        );
        assert_eq!(
            field(FallbackConfig::builder().fallbacks("a", ["b", "b"])),
            "fallbacks[a]"
        );
        assert_eq!(
            field(
                FallbackConfig::builder()
                    .context_window_fallbacks("a", ["b"])
                    .context_window_fallbacks("a", ["c"])
            ),
            "context_window_fallbacks[a]"
        );
        assert_eq!(
            field(FallbackConfig::builder().default_fallbacks([""])),
            "default_fallbacks"
        );
        assert_eq!(
            field(FallbackConfig::builder().pool("a", "")),
            "targets[a].pool"
        );
        assert_eq!(
            field(FallbackConfig::builder().max_commit_bytes(0)),
            "max_commit_bytes"
        );
    }
}
