//! `router_settings`, `litellm_settings` and `general_settings`.

use super::{Cx, Fallbacks};
use crate::config::error::{ConfigError, index_path, key_path};
use crate::config::keys::Section;
use crate::config::model::{
    GeneralSettings, LitellmSettings, RetryPolicy, RouterSettings, RoutingStrategy,
};
use crate::config::yaml::Node;

pub(super) fn router_settings(cx: &mut Cx<'_>, node: &Node) -> Result<RouterSettings, ConfigError> {
    const PATH: &str = "router_settings";
    let mut out = RouterSettings::default();
    for (key, value) in cx.entries(node, PATH)? {
        let path = key_path(PATH, key);
        match key {
            "routing_strategy" => {
                if let Some(text) = cx.text(value, &path)? {
                    out.routing_strategy = RoutingStrategy::from_name(text.value.trim())
                        .ok_or_else(|| {
                            ConfigError::invalid(
                                &path,
                                format!(
                                    "unknown routing strategy {}; expected one of {}",
                                    text.shown(),
                                    RoutingStrategy::ALL.map(RoutingStrategy::as_str).join(", ")
                                ),
                            )
                        })?;
                }
            }
            "num_retries" => out.num_retries = cx.u32(value, &path)?,
            "retry_policy" => out.retry_policy = retry_policy(cx, value, &path)?,
            "retry_after" => out.retry_after = cx.duration(value, &path, false)?,
            "allowed_fails" => out.allowed_fails = cx.u32(value, &path)?,
            "cooldown_time" => out.cooldown_time = cx.duration(value, &path, false)?,
            "fallbacks" => out.fallbacks = fallbacks(cx, value, &path)?,
            "context_window_fallbacks" => {
                out.context_window_fallbacks = fallbacks(cx, value, &path)?
            }
            "content_policy_fallbacks" => {
                out.content_policy_fallbacks = fallbacks(cx, value, &path)?
            }
            "default_fallbacks" => out.default_fallbacks = default_fallbacks(cx, value, &path)?,
            "timeout" => out.timeout = cx.duration(value, &path, true)?,
            "max_fallbacks" => out.max_fallbacks = cx.u32(value, &path)?,
            "model_group_alias" => out.model_group_alias = model_group_alias(cx, value, &path)?,
            "redis_host" => out.redis_host = cx.string(value, &path)?,
            "redis_port" => {
                out.redis_port = match cx.whole(value, &path, u64::from(u16::MAX))? {
                    Some(0) => {
                        return Err(ConfigError::invalid(
                            &path,
                            "must be a port from 1 to 65535",
                        ));
                    }
                    port => port.and_then(|port| u16::try_from(port).ok()),
                }
            }
            "redis_password" => out.redis_password = cx.secret(value, &path)?,
            _ => cx.warn_key(Section::RouterSettings, key, &path),
        }
    }
    Ok(out)
}

pub(super) fn litellm_settings(
    cx: &mut Cx<'_>,
    node: &Node,
) -> Result<LitellmSettings, ConfigError> {
    const PATH: &str = "litellm_settings";
    let mut out = LitellmSettings::default();
    for (key, value) in cx.entries(node, PATH)? {
        let path = key_path(PATH, key);
        match key {
            "num_retries" => out.num_retries = cx.u32(value, &path)?,
            "request_timeout" => out.request_timeout = cx.duration(value, &path, true)?,
            "fallbacks" => out.fallbacks = fallbacks(cx, value, &path)?,
            "context_window_fallbacks" => {
                out.context_window_fallbacks = fallbacks(cx, value, &path)?
            }
            "content_policy_fallbacks" => {
                out.content_policy_fallbacks = fallbacks(cx, value, &path)?
            }
            "default_fallbacks" => out.default_fallbacks = default_fallbacks(cx, value, &path)?,
            "drop_params" => out.drop_params = cx.bool(value, &path)?,
            "allowed_fails" => out.allowed_fails = cx.u32(value, &path)?,
            "cooldown_time" => out.cooldown_time = cx.duration(value, &path, false)?,
            "max_end_user_budget" => out.max_end_user_budget = cx.budget(value, &path)?,
            _ => cx.warn_key(Section::LitellmSettings, key, &path),
        }
    }
    Ok(out)
}

pub(super) fn general_settings(
    cx: &mut Cx<'_>,
    node: &Node,
) -> Result<GeneralSettings, ConfigError> {
    const PATH: &str = "general_settings";
    let mut out = GeneralSettings::default();
    for (key, value) in cx.entries(node, PATH)? {
        let path = key_path(PATH, key);
        match key {
            "master_key" => out.master_key = cx.secret(value, &path)?,
            "max_request_size_mb" => {
                let size = cx.number(value, &path, "a number of megabytes")?;
                if size.is_some_and(|size| size <= 0.0) {
                    return Err(ConfigError::invalid(&path, "must be more than 0"));
                }
                out.max_request_size_mb = size;
            }
            _ => cx.warn_key(Section::GeneralSettings, key, &path),
        }
    }
    Ok(out)
}

/// `retry_policy`: LiteLLM's per-error retry counts. Unknown names are warnings, as
/// LiteLLM grows new ones.
fn retry_policy(cx: &mut Cx<'_>, node: &Node, path: &str) -> Result<RetryPolicy, ConfigError> {
    let mut policy = RetryPolicy::default();
    for (key, value) in cx.entries(node, path)? {
        let entry_path = key_path(path, key);
        let retries = cx.u32(value, &entry_path)?;
        match policy.slot_mut(key) {
            Some(slot) => *slot = retries,
            None => cx.warn(
                &entry_path,
                format!(
                    "unknown retry policy entry, ignored; known: {}",
                    RetryPolicy::KEYS.join(", ")
                ),
            ),
        }
    }
    Ok(policy)
}

/// LiteLLM's form, a list of single-key mappings (`- gpt-4: [gpt-3.5]`); a plain
/// mapping is accepted too.
fn fallbacks(cx: &mut Cx<'_>, node: &Node, path: &str) -> Result<Fallbacks, ConfigError> {
    let mut out: Fallbacks = Vec::new();
    let mut add = |cx: &mut Cx<'_>, entry_path: &str, map: &Node| -> Result<(), ConfigError> {
        for (group, targets) in cx.entries(map, entry_path)? {
            let group_path = key_path(entry_path, group);
            cx.check_group(group, &group_path, true)?;
            if out.iter().any(|(seen, _)| seen == group) {
                return Err(ConfigError::invalid(
                    &group_path,
                    format!("fallbacks for {group:?} are given twice"),
                ));
            }
            let mut list = Vec::new();
            for (i, target) in cx.items(targets, &group_path)?.iter().enumerate() {
                let target_path = index_path(&group_path, i);
                let target = cx.group(target, &target_path, false)?;
                if target == group {
                    return Err(ConfigError::invalid(
                        &target_path,
                        format!("{group:?} cannot fall back to itself"),
                    ));
                }
                list.push(target);
            }
            out.push((group.to_owned(), list));
        }
        Ok(())
    };
    match node {
        Node::Map(_) => add(cx, path, node)?,
        _ => {
            for (i, item) in cx.items(node, path)?.iter().enumerate() {
                let item_path = index_path(path, i);
                if !matches!(item, Node::Map(_)) {
                    return Err(ConfigError::invalid(
                        &item_path,
                        format!(
                            "expected a mapping such as `model-a: [model-b, model-c]`, found {}",
                            item.kind()
                        ),
                    ));
                }
                add(cx, &item_path, item)?;
            }
        }
    }
    Ok(out)
}

fn default_fallbacks(cx: &mut Cx<'_>, node: &Node, path: &str) -> Result<Vec<String>, ConfigError> {
    cx.groups(node, path, false)
}

/// `model_group_alias`: `alias: group`, or LiteLLM's `alias: {model: group,
/// hidden: true}` (hidden aliases are served all the same; Tollgate's model
/// list shows groups only).
fn model_group_alias(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (alias, target) in cx.entries(node, path)? {
        let alias_path = key_path(path, alias);
        let target = match target {
            Node::Map(_) => {
                let mut group = None;
                for (key, value) in cx.entries(target, &alias_path)? {
                    let key_path = key_path(&alias_path, key);
                    match key {
                        "model" => group = Some(cx.group(value, &key_path, false)?),
                        "hidden" => {
                            cx.bool(value, &key_path)?;
                        }
                        _ => cx.warn(&key_path, "unknown key, ignored; known: model, hidden"),
                    }
                }
                group.ok_or_else(|| {
                    ConfigError::invalid(&key_path(&alias_path, "model"), "missing: the group")
                })?
            }
            _ => cx.group(target, &alias_path, false)?,
        };
        if cx.groups.iter().any(|group| group == alias) {
            cx.warn(
                &alias_path,
                "is also a model group's name; the group is served, not the alias",
            );
        }
        out.push((alias.to_owned(), target));
    }
    Ok(out)
}
