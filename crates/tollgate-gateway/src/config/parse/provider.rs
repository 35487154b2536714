//! Which provider serves a deployment, and with what key and base URL — as
//! LiteLLM decides it: the model's prefix, else `custom_llm_provider`, else
//! the bare name looked up in LiteLLM's model list; the key from
//! `api_key`, else the provider's variables.

use super::Cx;
use crate::config::env::Text;
use crate::config::error::{ConfigError, key_path};
use crate::config::model::{DeploymentConfig, KeySource};
use crate::config::native::NativeParams;
use crate::config::provider::{Provider, ProviderKind};
use crate::config::yaml::Node;
use crate::model_prices::ModelPrices;

/// Splits `openrouter/deepseek/deepseek-chat:free` into the provider and the
/// model the provider knows; a bare name (`gpt-4o`, `claude-3-opus-20240229`)
/// gets the provider LiteLLM's model list gives it.
pub(super) fn resolve(
    params_path: &str,
    model: Option<&Text>,
    custom_provider: Option<&Text>,
    prices: &ModelPrices,
) -> Result<(Provider, String), ConfigError> {
    let path = key_path(params_path, "model");
    let Some(model) = model else {
        return Err(ConfigError::invalid(
            &path,
            format!(
                "missing: the upstream model, with a provider prefix ({})",
                Provider::supported_prefixes()
            ),
        ));
    };
    // A model read from the environment is named by its variable in an
    // error, never shown: the variable may hold anything, a key included.
    let from_env = model.var.as_deref();
    let model = model.value.trim();
    if let Some(custom) = custom_provider {
        let name = custom.value.trim();
        // LiteLLM's `custom_llm_provider: openai` with a model written
        // without prefix is the usual way to reach an OpenAI-compatible server.
        let provider = Provider::from_name(name).ok_or_else(|| {
            ConfigError::invalid(
                &key_path(params_path, "custom_llm_provider"),
                format!(
                    "unsupported provider {}; supported: {}",
                    custom.shown(),
                    Provider::ALL
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let upstream = model
            .strip_prefix(provider.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(model);
        return non_empty_model(provider, upstream, &path);
    }
    if let Some((prefix, upstream)) = model.split_once('/') {
        if let Some(provider) = Provider::from_name(prefix) {
            return non_empty_model(provider, upstream, &path);
        }
        // A name LiteLLM lists whole (`meta-llama/…` is not one) still resolves.
        if let Some(provider) = bare_provider(model, prices) {
            return Ok((provider, model.to_owned()));
        }
        // A prefix written in the file is a provider name, never a secret,
        // so naming it helps.
        let prefix = match from_env {
            Some(var) => format!("in the value of {var}"),
            None => format!("{prefix:?}/"),
        };
        return Err(ConfigError::invalid(
            &path,
            format!(
                "unsupported provider prefix {prefix}; supported: {}",
                Provider::supported_prefixes()
            ),
        ));
    }
    match bare_provider(model, prices) {
        Some(provider) => non_empty_model(provider, model, &path),
        None => {
            let model = match from_env {
                Some(var) => format!("the value of {var}"),
                None => format!("{model:?}"),
            };
            Err(ConfigError::invalid(
                &path,
                format!(
                    "no provider prefix, and LiteLLM's model list does not know {model}; \
                     write it as <provider>/<model> with one of {}",
                    Provider::supported_prefixes()
                ),
            ))
        }
    }
}

/// The provider of a model written without prefix, as LiteLLM infers it: by
/// its model list (the price snapshot's `litellm_provider`), else by the name's
/// family, for models newer than the snapshot.
pub(crate) fn bare_provider(model: &str, prices: &ModelPrices) -> Option<Provider> {
    if model == "*" {
        // LiteLLM: `model: "*"` is OpenAI's, forwarding whatever is asked for.
        return Some(Provider::OpenAi);
    }
    if let Some(provider) = prices
        .get(model)
        .and_then(|facts| Provider::from_litellm_provider(&facts.litellm_provider))
    {
        return Some(provider);
    }
    let openai = ["gpt-", "chatgpt-", "ft:gpt-", "o1", "o3", "o4"];
    if openai.iter().any(|prefix| model.starts_with(prefix)) {
        Some(Provider::OpenAi)
    } else if model.starts_with("claude-") {
        Some(Provider::Anthropic)
    } else if model.starts_with("command-") {
        Some(Provider::Cohere)
    } else {
        None
    }
}

fn non_empty_model(
    provider: Provider,
    upstream: &str,
    path: &str,
) -> Result<(Provider, String), ConfigError> {
    if upstream.trim().is_empty() {
        return Err(ConfigError::invalid(
            path,
            format!("no model after the {provider}/ prefix"),
        ));
    }
    Ok((provider, upstream.to_owned()))
}

/// Reads one native parameter (`api_version`, `aws_*`, `vertex_*`). An
/// `os.environ/VAR` that is not set leaves it unset (the deployment is then
/// disabled, naming it), as LiteLLM only fails on the first call.
pub(super) fn native_param(
    cx: &mut Cx<'_>,
    deployment: &mut DeploymentConfig,
    key: &str,
    value: &Node,
    path: &str,
) -> Result<(), ConfigError> {
    if key == "vertex_credentials" {
        // A file's path is fine inline; the service account's JSON text is
        // a secret written inline, which `secret` warns about.
        match cx.text(value, path) {
            Ok(Some(text)) if text.var.is_none() && !text.value.trim_start().starts_with('{') => {
                let secret = cx.keep_secret(text.value, KeySource::Inline);
                deployment.native.set_secret(key, secret);
                return Ok(());
            }
            Ok(_) => {}
            Err(ConfigError::MissingEnv { var, .. }) => {
                unset_variable(deployment, key, &var);
                return Ok(());
            }
            Err(error) => return Err(error),
        }
    }
    if NativeParams::is_secret(key) {
        match cx.secret(value, path) {
            Ok(Some(secret)) => deployment.native.set_secret(key, secret),
            Ok(None) => {}
            Err(ConfigError::MissingEnv { var, .. }) => unset_variable(deployment, key, &var),
            Err(error) => return Err(error),
        }
    } else {
        match cx.string(value, path) {
            Ok(Some(text)) => deployment.native.set_text(key, text),
            Ok(None) => {}
            Err(ConfigError::MissingEnv { var, .. }) => unset_variable(deployment, key, &var),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Notes that `key`'s variable is unset: the first such reason disables.
pub(super) fn unset_variable(deployment: &mut DeploymentConfig, key: &str, var: &str) {
    deployment
        .disabled
        .get_or_insert_with(|| format!("{key}: environment variable {var} is not set"));
}

/// Fills what the config left to the environment (the key, the base URL, a
/// native provider's parameters), and decides whether the deployment can
/// take traffic.
pub(super) fn complete(cx: &mut Cx<'_>, deployment: &mut DeploymentConfig) {
    let provider = deployment.provider;
    if deployment.api_base.is_none()
        && let Some(var) = provider.base_env()
        && let Some(base) = cx.env.get(var)
    {
        deployment.api_base = Some(base);
    }
    if provider.kind() == ProviderKind::Native {
        for key in NativeParams::KEYS {
            if deployment.native.is_set(key) {
                continue;
            }
            let Some((var, value)) = NativeParams::env_fallbacks(key)
                .iter()
                .find_map(|var| cx.env.get(var).map(|value| (*var, value)))
            else {
                continue;
            };
            if NativeParams::is_secret(key) {
                let secret = cx.keep_secret(value, KeySource::Env(var.to_owned()));
                deployment.native.set_secret(key, secret);
            } else {
                deployment.native.set_text(key, value);
            }
        }
    }
    // After the native parameters: an Azure token stands in for the key.
    key(cx, deployment);
    if deployment.disabled.is_some() {
        return;
    }
    let has_base = deployment.api_base.is_some() || provider.default_api_base().is_some();
    deployment.disabled = if provider.kind() == ProviderKind::OpenAiCompatible && !has_base {
        Some(match provider.base_env() {
            Some(var) => format!("no api_base: set litellm_params.api_base or {var}"),
            None => "no api_base: set litellm_params.api_base".to_owned(),
        })
    } else if provider.kind() == ProviderKind::Native {
        let missing = deployment.native.missing(provider, has_base);
        if provider.is_wired() {
            if missing.is_empty() {
                deployment.native.unusable(provider)
            } else {
                Some(format!("missing {}", missing.join(", ")))
            }
        } else if missing.is_empty() {
            Some(format!(
                "the native {provider} translation is not wired into the gateway yet"
            ))
        } else {
            Some(format!(
                "missing {} (and the native {provider} translation is not wired into the \
                 gateway yet)",
                missing.join(", ")
            ))
        }
    } else {
        None
    };
}

/// The key: `api_key`, else the first of the provider's variables that is
/// set, as LiteLLM reads them. Without one, a provider that needs a key
/// disables the deployment.
fn key(cx: &mut Cx<'_>, deployment: &mut DeploymentConfig) {
    if let Some(key) = &deployment.api_key {
        deployment.api_key_source = key.source().clone();
        return;
    }
    let provider = deployment.provider;
    for var in provider.key_envs() {
        if let Some(value) = cx.env.get(var) {
            let source = KeySource::Env((*var).to_owned());
            deployment.api_key = Some(cx.keep_secret(value, source.clone()));
            deployment.api_key_source = source;
            return;
        }
    }
    // With its own api_base an `openai/` deployment is likely a local
    // OpenAI-compatible server that needs no key.
    let local = provider == Provider::OpenAi && deployment.api_base.is_some();
    // An Azure deployment may authenticate with an Entra ID token instead
    // (LiteLLM's `azure_ad_token`).
    let token = provider == Provider::Azure && deployment.native.azure_ad_token.is_some();
    if provider.key_required() && !local && !token && deployment.disabled.is_none() {
        deployment.disabled = Some(format!(
            "no key: litellm_params.api_key is not set and {} is not in the environment",
            provider.key_envs().join(" / ")
        ));
    }
}
