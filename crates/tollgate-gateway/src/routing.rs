//! Which model group serves the model a client names: the group of that
//! name, else the group `router_settings.model_group_alias` maps it to, else
//! the most specific wildcard group (`openai/*` before `*`) whose pattern
//! matches it — LiteLLM's order.

use std::sync::Arc;

use crate::FastMap;
use crate::config::{Config, wildcard_match};

/// The aliases and wildcard patterns of a config, for per-request lookup.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelRouting {
    aliases: FastMap<Box<str>, Arc<str>>,
    /// Wildcard group names, the longest fixed part first.
    wildcards: Vec<Arc<str>>,
}

impl ModelRouting {
    pub(crate) fn new(config: &Config) -> Self {
        let aliases = config
            .router_settings
            .model_group_alias
            .iter()
            .map(|(alias, group)| (Box::from(alias.as_str()), Arc::from(group.as_str())))
            .collect();
        let mut wildcards: Vec<Arc<str>> = config
            .groups()
            .map(|(name, _)| name)
            .filter(|name| name.contains('*'))
            .map(Arc::from)
            .collect();
        wildcards.sort_by_key(|name| std::cmp::Reverse(name.len()));
        ModelRouting { aliases, wildcards }
    }

    /// The group that serves `model`, looked up in `groups`.
    pub(crate) fn group<'g, G>(
        &self,
        groups: &'g FastMap<Arc<str>, G>,
        model: &str,
    ) -> Option<&'g G> {
        if let Some(group) = groups.get(model) {
            return Some(group);
        }
        if let Some(target) = self.aliases.get(model) {
            return groups.get(target);
        }
        self.wildcards
            .iter()
            .find(|pattern| wildcard_match(pattern, model).is_some())
            .and_then(|pattern| groups.get(pattern))
    }
}

/// The model a deployment sends upstream for the client's `requested` one:
/// its configured model, or for a wildcard deployment the part of
/// `requested` that the `*` of its group's pattern matched, put in place of
/// the `*` of its model (`*` / `openai/*`: `gpt-4o` → `gpt-4o`).
pub(crate) fn upstream_model<'a>(group: &str, upstream: &'a str, requested: &'a str) -> &'a str {
    let Some((head, tail)) = upstream.split_once('*') else {
        return upstream;
    };
    // Only `provider/*`-style models are supported (nothing around the `*`),
    // as LiteLLM's docs write them; anything else is sent as configured.
    if !head.is_empty() || !tail.is_empty() {
        return upstream;
    }
    wildcard_match(group, requested).unwrap_or(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_forward_what_their_star_matched() {
        assert_eq!(upstream_model("*", "*", "gpt-4o"), "gpt-4o");
        assert_eq!(upstream_model("groq/*", "*", "groq/llama3"), "llama3");
        assert_eq!(upstream_model("fast", "gpt-4o-mini", "fast"), "gpt-4o-mini");
    }

    #[test]
    fn exact_names_then_aliases_then_the_most_specific_wildcard() {
        let yaml = "model_list:
  - model_name: '*'
    litellm_params: { model: mock/*, mock_response: any }
  - model_name: groq/*
    litellm_params: { model: mock/*, mock_response: groq }
  - model_name: fast
    litellm_params: { model: mock/fast }
router_settings:
  model_group_alias: { quick: fast, hidden-quick: { model: fast, hidden: true } }
";
        let config = crate::config::load_str(yaml, &|_| None).unwrap().config;
        let routing = ModelRouting::new(&config);
        let groups: FastMap<Arc<str>, &str> = config
            .groups()
            .map(|(name, _)| (Arc::from(name), name))
            .collect();
        assert_eq!(routing.group(&groups, "fast"), Some(&"fast"));
        assert_eq!(routing.group(&groups, "quick"), Some(&"fast"));
        assert_eq!(routing.group(&groups, "hidden-quick"), Some(&"fast"));
        assert_eq!(routing.group(&groups, "groq/llama3"), Some(&"groq/*"));
        assert_eq!(routing.group(&groups, "anything"), Some(&"*"));
    }
}
