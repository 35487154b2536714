//! `model_list`: deployments, their provider, key, limits and prices.

use super::Cx;
use super::provider::{complete, native_param, resolve, unset_variable};
use crate::config::error::{ConfigError, index_path, key_path};
use crate::config::keys::Section;
use crate::config::model::{DeploymentConfig, KeySource, ModelCosts, Secret};
use crate::config::native::NativeParams;
use crate::config::provider::Provider;
use crate::config::yaml::Node;

/// The deployments, and the errors of the entries that could not be read
/// (each entry is read even when an earlier one fails, so one run reports
/// them all). `Err` when the list itself is missing or malformed.
pub(super) fn model_list(
    cx: &mut Cx<'_>,
    node: Option<&Node>,
) -> Result<(Vec<DeploymentConfig>, Vec<ConfigError>), ConfigError> {
    const PATH: &str = "model_list";
    let items = match node {
        None => {
            return Err(ConfigError::invalid(
                PATH,
                "missing: a config needs at least one model",
            ));
        }
        Some(node) => cx.items(node, PATH)?,
    };
    if items.is_empty() {
        return Err(ConfigError::invalid(
            PATH,
            "is empty: a config needs at least one model",
        ));
    }
    let mut deployments: Vec<DeploymentConfig> = Vec::with_capacity(items.len());
    let mut explicit_ids: Vec<bool> = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let (mut deployment, explicit) = match self::deployment(cx, item, index) {
            Ok(read) => read,
            Err(error) => {
                // Its group still exists, so fallbacks naming it are not
                // reported as a second, misleading error.
                if let Some(name) = group_name(item)
                    && !cx.groups.iter().any(|group| group == name)
                {
                    cx.groups.push(name.to_owned());
                }
                errors.push(error);
                continue;
            }
        };
        if !explicit {
            let k = deployments
                .iter()
                .filter(|other| other.model_name == deployment.model_name)
                .count();
            deployment.id = format!("{}/{k}", deployment.model_name);
        }
        if !cx.groups.contains(&deployment.model_name) {
            cx.groups.push(deployment.model_name.clone());
        }
        deployments.push(deployment);
        explicit_ids.push(explicit);
    }
    // Checked once all ids exist: an explicit id may collide with a generated one
    // that comes later in the file.
    for (index, deployment) in deployments.iter().enumerate() {
        if let Some(first) = deployments[..index]
            .iter()
            .position(|other| other.id == deployment.id)
        {
            let path = index_path(PATH, index);
            let path = if explicit_ids[index] {
                key_path(&key_path(&path, "model_info"), "id")
            } else {
                path
            };
            errors.push(ConfigError::invalid(
                &path,
                format!(
                    "duplicate deployment id {:?}; model_list[{first}] has it too \
                     (set model_info.id to tell them apart)",
                    deployment.id
                ),
            ));
        }
    }
    Ok((deployments, errors))
}

/// The `model_name` of an entry, as written, when it is a plain string.
fn group_name(item: &Node) -> Option<&str> {
    let Node::Map(entries) = item else {
        return None;
    };
    entries
        .iter()
        .find_map(|(key, value)| match (key.as_str(), value) {
            ("model_name", Node::Scalar(name)) if !name.trim().is_empty() => Some(name.as_str()),
            _ => None,
        })
}

/// One `model_list` entry; the id is left empty unless `model_info.id` gives one
/// (the flag says which), since a generated id depends on the entries before it.
fn deployment(
    cx: &mut Cx<'_>,
    node: &Node,
    index: usize,
) -> Result<(DeploymentConfig, bool), ConfigError> {
    let path = index_path("model_list", index);
    if !matches!(node, Node::Map(_)) {
        return Err(ConfigError::invalid(
            &path,
            format!(
                "expected a mapping with model_name and litellm_params, found {}",
                node.kind()
            ),
        ));
    }
    let empty = Node::Null;
    let (mut model_name, mut params, mut info) = (None, &empty, &empty);
    for (key, value) in cx.entries(node, &path)? {
        let key_path = key_path(&path, key);
        match key {
            "model_name" => model_name = cx.string(value, &key_path)?,
            "litellm_params" => params = value,
            "model_info" => info = value,
            _ => cx.warn_key(Section::Deployment, key, &key_path),
        }
    }
    let model_name = model_name
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| {
            ConfigError::invalid(
                &key_path(&path, "model_name"),
                "missing: the model group name clients ask for",
            )
        })?;

    let params_path = key_path(&path, "litellm_params");
    let info_path = key_path(&path, "model_info");
    let mut deployment = DeploymentConfig {
        id: String::new(),
        model_name,
        index,
        provider: Provider::Mock,
        upstream_model: String::new(),
        api_base: None,
        api_key: None,
        api_key_source: KeySource::None,
        timeout: None,
        stream_timeout: None,
        cooldown_time: None,
        rpm: None,
        tpm: None,
        weight: None,
        order: None,
        mode: None,
        base_model: None,
        max_tokens: None,
        supports_assistant_prefill: None,
        supports_reasoning: None,
        mock_response: None,
        extra_headers: Vec::new(),
        costs: ModelCosts::default(),
        native: NativeParams::default(),
        disabled: None,
    };
    let (mut model, mut custom_provider) = (None, None);
    let mut param_costs = ModelCosts::default();
    for (key, value) in cx.entries(params, &params_path)? {
        let path = key_path(&params_path, key);
        match key {
            "model" => model = cx.text(value, &path)?,
            "custom_llm_provider" => custom_provider = cx.text(value, &path)?,
            "api_base" => deployment.api_base = api_base(cx, value, &path)?,
            "api_key" => match cx.secret(value, &path) {
                Ok(key) => deployment.api_key = key,
                // LiteLLM starts, and fails on the first call: Tollgate
                // starts the deployment disabled, and says why.
                Err(ConfigError::MissingEnv { var, .. }) => {
                    unset_variable(&mut deployment, "api_key", &var);
                }
                Err(error) => return Err(error),
            },
            "timeout" => deployment.timeout = cx.duration(value, &path, true)?,
            "stream_timeout" => deployment.stream_timeout = cx.duration(value, &path, true)?,
            "cooldown_time" => deployment.cooldown_time = cx.duration(value, &path, false)?,
            "rpm" => deployment.rpm = cx.u64(value, &path)?,
            "tpm" => deployment.tpm = cx.u64(value, &path)?,
            "weight" => deployment.weight = weight(cx, value, &path)?,
            "order" => deployment.order = cx.u32(value, &path)?,
            "mock_response" => deployment.mock_response = cx.string(value, &path)?,
            "extra_headers" => deployment.extra_headers = extra_headers(cx, value, &path)?,
            _ if NativeParams::KEYS.contains(&key) => {
                native_param(cx, &mut deployment, key, value, &path)?;
            }
            // LiteLLM's other spellings (its Vertex code reads either).
            "vertex_ai_project" | "vertex_ai_location" => {
                let key = key.replace("vertex_ai_", "vertex_");
                native_param(cx, &mut deployment, &key, value, &path)?;
            }
            _ => match param_costs.slot_mut(key) {
                Some(slot) => *slot = cx.decimal(value, &path)?,
                None => cx.warn_key(Section::LitellmParams, key, &path),
            },
        }
    }
    let (provider, upstream_model) = resolve(
        &params_path,
        model.as_ref(),
        custom_provider.as_ref(),
        &cx.prices,
    )?;
    deployment.provider = provider;
    deployment.upstream_model = upstream_model;
    // `bedrock/converse/<model>` names LiteLLM's Converse route, the only one
    // Tollgate speaks to Bedrock: the model (priced, sent) is what follows.
    if provider == Provider::Bedrock
        && let Some(model) = deployment.upstream_model.strip_prefix("converse/")
    {
        deployment.upstream_model = model.to_owned();
    }

    let mut explicit_id = false;
    for (key, value) in cx.entries(info, &info_path)? {
        let path = key_path(&info_path, key);
        match key {
            "id" => {
                if let Some(id) = cx.string(value, &path)? {
                    if id.trim().is_empty() {
                        return Err(ConfigError::invalid(&path, "must not be empty"));
                    }
                    deployment.id = id;
                    explicit_id = true;
                }
            }
            "mode" => deployment.mode = cx.string(value, &path)?,
            "base_model" => deployment.base_model = cx.string(value, &path)?,
            "max_tokens" => deployment.max_tokens = cx.u64(value, &path)?,
            "supports_assistant_prefill" => {
                deployment.supports_assistant_prefill = cx.bool(value, &path)?;
            }
            "supports_reasoning" => deployment.supports_reasoning = cx.bool(value, &path)?,
            _ => match deployment.costs.slot_mut(key) {
                Some(slot) => *slot = cx.decimal(value, &path)?,
                None => cx.warn_key(Section::ModelInfo, key, &path),
            },
        }
    }
    for key in ModelCosts::KEYS {
        let Some(price) = param_costs.get(key) else {
            continue;
        };
        match deployment.costs.slot_mut(key) {
            Some(slot @ None) => *slot = Some(price.clone()),
            Some(Some(_)) => cx.warn(
                &key_path(&params_path, key),
                "also set in model_info; the model_info price is used",
            ),
            None => {}
        }
    }

    complete(cx, &mut deployment);
    if let Some(reason) = &deployment.disabled {
        cx.warn(&path, format!("deployment disabled: {reason}"));
    }
    Ok((deployment, explicit_id))
}

fn api_base(cx: &Cx<'_>, node: &Node, path: &str) -> Result<Option<String>, ConfigError> {
    let Some(base) = cx.string(node, path)? else {
        return Ok(None);
    };
    // Not echoed: a base URL may carry credentials.
    let valid = base.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
    });
    if !valid {
        return Err(ConfigError::invalid(
            path,
            "expected an absolute http:// or https:// URL",
        ));
    }
    Ok(Some(base))
}

fn weight(cx: &Cx<'_>, node: &Node, path: &str) -> Result<Option<f64>, ConfigError> {
    let weight = cx.number(node, path, "a number")?;
    if weight.is_some_and(|weight| weight < 0.0) {
        return Err(ConfigError::invalid(path, "must not be negative"));
    }
    Ok(weight)
}

fn extra_headers(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
) -> Result<Vec<(String, Secret)>, ConfigError> {
    let mut headers = Vec::new();
    for (name, value) in cx.entries(node, path)? {
        let header_path = key_path(path, name);
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                &header_path,
                "not a valid header name",
            ));
        }
        let Some(text) = cx.text(value, &header_path)? else {
            continue;
        };
        if http::HeaderValue::from_str(&text.value).is_err() {
            return Err(ConfigError::invalid(
                &header_path,
                "not a valid header value",
            ));
        }
        // Header values such as HTTP-Referer are fine inline, so no warning here.
        let source = text.var.map_or(KeySource::Inline, KeySource::Env);
        headers.push((name.to_owned(), cx.keep_secret(text.value, source)));
    }
    Ok(headers)
}
