//! OpenRouter slugs that do not exist: the gateway lists OpenRouter's models
//! (`GET {api_base}/models`, with the deployment's key) at start and every
//! [`CHECK_INTERVAL`] after, and reports each configured slug OpenRouter does
//! not list — in the log, in `/health/providers` (`"upstream_model_unknown":
//! true`) and in `tollgate check-config --online` — rather than failing on
//! the slug's first request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Limited};
use tollgate_core::RequestBody;
use tower::ServiceExt;

use crate::config::{Config, DeploymentConfig, Provider};
use crate::deadlines::Timeouts;
use crate::upstream::{Endpoint, UpstreamClient};

/// How often the list is fetched again.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The largest model list read (OpenRouter's is a few hundred KiB).
const MAX_LIST_BYTES: usize = 16 << 20;

/// The slug a deployment asks OpenRouter for, and where its list comes from.
#[derive(Debug, Clone)]
struct Checked {
    deployment: Arc<str>,
    slug: String,
    api_base: String,
    key: Option<String>,
}

/// Deployments whose slug OpenRouter's list lacks, by id, as last checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct UnknownSlugs(Arc<Mutex<HashSet<Arc<str>>>>);

impl UnknownSlugs {
    /// Whether the last check did not find `deployment`'s slug.
    pub(crate) fn contains(&self, deployment: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(deployment)
    }

    fn set(&self, deployment: &Arc<str>, unknown: bool) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if unknown {
            set.insert(deployment.clone());
        } else {
            set.remove(deployment);
        }
    }
}

fn checked(config: &Config) -> Vec<Checked> {
    config
        .model_list
        .iter()
        .filter(|d| d.provider == Provider::OpenRouter && d.disabled.is_none() && !d.is_wildcard())
        .map(|d: &DeploymentConfig| Checked {
            deployment: Arc::from(d.id.as_str()),
            slug: d.upstream_model.clone(),
            api_base: d
                .provider
                .endpoint_base(d.api_base.as_deref())
                .unwrap_or_default(),
            key: d.api_key.as_ref().map(|k| k.expose().to_owned()),
        })
        .collect()
}

/// Whether OpenRouter's list names `slug`: its id, or its id without a
/// routing variant (`:nitro`, `:floor`); `:free` models are listed as such.
fn listed(ids: &HashSet<String>, slug: &str) -> bool {
    if ids.contains(slug) {
        return true;
    }
    match slug.rsplit_once(':') {
        Some((base, variant)) if variant != "free" => ids.contains(base),
        _ => false,
    }
}

/// The model ids of `GET {api_base}/models`.
async fn model_ids(
    client: &UpstreamClient,
    api_base: &str,
    key: Option<&str>,
) -> Result<HashSet<String>, String> {
    let mut endpoint = Endpoint::new(api_base).map_err(|e| e.to_string())?;
    if let Some(key) = key {
        endpoint = endpoint
            .with_bearer(key)
            .map_err(|_| "the key cannot go in a header".to_owned())?;
    }
    let mut request = Request::get(Uri::from_static("/models"))
        .body(RequestBody::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    request.extensions_mut().insert(Arc::new(endpoint));
    request.extensions_mut().insert(Timeouts {
        total: Some(Duration::from_secs(30)),
        ..Timeouts::default()
    });
    let response = client
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| format!("the model list could not be fetched: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("the model list answered {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_LIST_BYTES)
        .collect()
        .await
        .map_err(|e| format!("the model list could not be read: {e}"))?
        .to_bytes();
    let list: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("the model list is not JSON: {e}"))?;
    let data = list["data"]
        .as_array()
        .ok_or("the model list has no data array")?;
    Ok(data
        .iter()
        .filter_map(|model| model["id"].as_str().map(str::to_owned))
        .collect())
}

/// Checks every OpenRouter deployment of `config` once: `(deployment id,
/// slug)` for each slug OpenRouter does not list. A list that cannot be
/// fetched is an error naming why (never the key).
pub async fn unknown_slugs(
    config: &Config,
    client: &UpstreamClient,
) -> Result<Vec<(String, String)>, String> {
    let mut unknown = Vec::new();
    for (checked, listed_now) in check_all(&checked(config), client).await? {
        if !listed_now {
            unknown.push((checked.deployment.to_string(), checked.slug));
        }
    }
    Ok(unknown)
}

/// Where a model list comes from: the base URL and the key.
type ListSource = (String, Option<String>);

/// Each deployment with whether its slug is listed; one fetch per base and key.
async fn check_all(
    deployments: &[Checked],
    client: &UpstreamClient,
) -> Result<Vec<(Checked, bool)>, String> {
    let mut lists: Vec<(ListSource, HashSet<String>)> = Vec::new();
    let mut out = Vec::with_capacity(deployments.len());
    for checked in deployments {
        let source = (checked.api_base.clone(), checked.key.clone());
        let ids = match lists.iter().find(|(s, _)| *s == source) {
            Some((_, ids)) => ids,
            None => {
                let ids = model_ids(client, &checked.api_base, checked.key.as_deref()).await?;
                lists.push((source, ids));
                &lists[lists.len() - 1].1
            }
        };
        out.push((checked.clone(), listed(ids, &checked.slug)));
    }
    Ok(out)
}

/// Checks now and every [`CHECK_INTERVAL`], updating `unknown` and logging
/// each unknown slug; the task ends with the runtime.
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    config: &Config,
    client: UpstreamClient,
    unknown: UnknownSlugs,
) {
    let deployments = checked(config);
    if deployments.is_empty() {
        return;
    }
    runtime.spawn(async move {
        let mut every = tokio::time::interval(CHECK_INTERVAL);
        loop {
            every.tick().await;
            match check_all(&deployments, &client).await {
                Ok(results) => {
                    for (checked, listed_now) in results {
                        unknown.set(&checked.deployment, !listed_now);
                        if !listed_now {
                            tracing::warn!(
                                deployment = %checked.deployment,
                                model = %checked.slug,
                                "OpenRouter does not list this model: requests for it will fail"
                            );
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "OpenRouter's model list: check skipped"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_other_than_free_match_their_base_model() {
        let ids: HashSet<String> = ["deepseek/deepseek-chat", "deepseek/deepseek-chat:free"]
            .map(String::from)
            .into();
        assert!(listed(&ids, "deepseek/deepseek-chat:free"));
        assert!(listed(&ids, "deepseek/deepseek-chat:nitro"));
        assert!(!listed(&ids, "deepseek/deepseek-chatt"));
        assert!(!listed(&ids, "meta-llama/llama-3.2-3b-instruct:free"));
    }
}
