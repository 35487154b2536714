//! One deployment of the `model_list`, built: its breaker, provider,
//! headers and deadlines, and how its group's balancer sees it.

use std::sync::Arc;

use http::HeaderValue;
use http::header::HeaderName;
use tollgate_balance::{GroupMember, MemberConfig, Strategy};
use tollgate_core::DeploymentQuota;
use tollgate_core::extensions::Target;
use tollgate_cost::PriceTable;
use tollgate_openrouter::{OpenRouterConfig, OpenRouterLayer};
use tollgate_providers::ProviderConfig;
use tollgate_providers::anthropic::Anthropic;
use tollgate_providers::azure::Azure;
use tollgate_providers::bedrock::Bedrock;
use tollgate_providers::gemini::Gemini;
use tollgate_providers::vertex::Vertex;
use tower::Layer;

use super::BuildError;
use crate::config::{Config, DeploymentConfig, Provider, ProviderKind, RoutingStrategy};
use crate::deployment::{Deployment, DeploymentProvider, NativeDeployment, OpenRouterDeployment};
use crate::learned::LearnedDeadlines;
use crate::mock::MockDeployment;
use crate::resilience;
use crate::upstream::{Endpoint, UpstreamClient};

const OPENAI_API_BASE: &str = "https://api.openai.com/v1";

/// The balancer's strategy for LiteLLM's `routing_strategy`:
/// `usage-based-routing-v2` is LiteLLM's Redis-backed variant of the same
/// rule.
pub(super) fn balance_strategy(strategy: RoutingStrategy) -> Strategy {
    match strategy {
        RoutingStrategy::SimpleShuffle => Strategy::SimpleShuffle,
        RoutingStrategy::CostBased => Strategy::CostBased,
        RoutingStrategy::LeastBusy => Strategy::LeastBusy,
        RoutingStrategy::LatencyBased => Strategy::LatencyBased,
        RoutingStrategy::UsageBased | RoutingStrategy::UsageBasedV2 => Strategy::UsageBased,
    }
}

/// A deployment as its group's balancer takes it, priced by `prices` (for
/// `cost-based-routing`).
pub(super) fn group_member(
    prices: &PriceTable,
    (deployment, config): (Arc<Deployment>, &DeploymentConfig),
) -> GroupMember<Arc<Deployment>> {
    GroupMember {
        target: deployment.target.clone(),
        config: MemberConfig {
            weight: config.weight,
            order: config.order,
            quota: DeploymentQuota {
                rpm: config.rpm,
                tpm: config.tpm,
            },
            cost: Some(crate::pricing::unit_price(prices, config)),
            ..MemberConfig::new(config.id.as_str())
        },
        extension: deployment,
    }
}

/// The deployment's `extra_headers`, each value marked sensitive (they
/// often carry credentials).
fn extra_headers(
    deployment: &DeploymentConfig,
    path: &dyn Fn(&str) -> String,
) -> Result<http::HeaderMap, BuildError> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &deployment.extra_headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| BuildError {
            path: path("extra_headers"),
            message: format!("{name:?} is not a valid header name"),
        })?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| BuildError {
            path: path("extra_headers"),
            message: format!("the value of {name} cannot go in a header"),
        })?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// Builds deployment `index` of the `model_list`; its breaker's settings
/// are checked here and registered when the gateway (or a reload) commits
/// ([`apply_breakers`](super::apply_breakers)).
pub(super) fn build(
    config: &Config,
    index: usize,
    deployment: &DeploymentConfig,
    learned: &LearnedDeadlines,
    client: &UpstreamClient,
) -> Result<Deployment, BuildError> {
    let breaker =
        resilience::deployment_breaker_config(config, deployment).map_err(|e| BuildError {
            path: format!("model_list[{index}]"),
            message: e.to_string(),
        })?;
    let breaker_enabled = breaker.is_some();
    let path = |field: &str| format!("model_list[{index}].litellm_params.{field}");
    let target = Target {
        model_group: Arc::from(deployment.model_name.as_str()),
        deployment_id: Arc::from(deployment.id.as_str()),
        upstream_model: Arc::from(deployment.upstream_model.as_str()),
    };
    let (timeouts, stream_timeouts) = crate::deadlines::attempt_timeouts(config, deployment);
    let kind = match &deployment.disabled {
        Some(_) => None,
        None => Some(deployment.provider.kind()),
    };
    let provider = match kind {
        Some(ProviderKind::Native) if deployment.provider.is_wired() => DeploymentProvider::Native(
            Box::new(native_deployment(config, deployment, client, &path)?),
        ),
        None | Some(ProviderKind::Native) => DeploymentProvider::Disabled(Arc::from(
            deployment.disabled.as_deref().unwrap_or("not available"),
        )),
        Some(ProviderKind::Mock) => DeploymentProvider::Mock(MockDeployment::new(
            &deployment.upstream_model,
            deployment.mock_response.as_deref(),
            config
                .tollgate
                .mock
                .get(&deployment.id)
                .cloned()
                .unwrap_or_default(),
        )),
        Some(ProviderKind::OpenRouter) => {
            let mut or = OpenRouterConfig::new().x_title("Tollgate");
            if let Some(base) = &deployment.api_base {
                or = or.api_base(base.clone());
            }
            if let Some(key) = &deployment.api_key {
                or = or.api_key(key.expose());
            }
            // Checked here, once, at config load.
            let or = or.build().map_err(|e| BuildError {
                path: path("api_base"),
                message: e.to_string(),
            })?;
            let layer = OpenRouterLayer::new(or);
            DeploymentProvider::OpenRouter(Box::new(OpenRouterDeployment {
                service: layer.layer(client.clone()),
                headers: extra_headers(deployment, &path)?,
            }))
        }
        Some(ProviderKind::OpenAiCompatible) => {
            let base = deployment
                .provider
                .endpoint_base(deployment.api_base.as_deref())
                .unwrap_or_else(|| OPENAI_API_BASE.to_owned());
            let mut endpoint = Endpoint::new(&base).map_err(|e| BuildError {
                path: path("api_base"),
                message: e.to_string(),
            })?;
            if let Some(key) = &deployment.api_key {
                endpoint = endpoint.with_bearer(key.expose()).map_err(|_| BuildError {
                    path: path("api_key"),
                    message: "the key contains characters that cannot go in a header".into(),
                })?;
            }
            for (name, value) in &extra_headers(deployment, &path)? {
                endpoint = endpoint.with_header(name.clone(), value.clone());
            }
            DeploymentProvider::Http(Arc::new(endpoint))
        }
    };
    let openai_responses =
        matches!(provider, DeploymentProvider::Http(_)) && deployment.provider == Provider::OpenAi;
    Ok(Deployment {
        target,
        breaker_enabled,
        breaker,
        provider,
        openai_responses,
        timeouts,
        stream_timeouts,
        timings: learned.get(&deployment.id).cloned().unwrap_or_default(),
        learn_stream_deadlines: config.tollgate.learn_stream_deadlines != Some(false),
    })
}

/// The translation layer of a native provider's deployment, from its
/// `litellm_params` as LiteLLM reads them.
fn native_deployment(
    config: &Config,
    deployment: &DeploymentConfig,
    client: &UpstreamClient,
    path: &dyn Fn(&str) -> String,
) -> Result<NativeDeployment, BuildError> {
    let mut native = ProviderConfig::new();
    if let Some(base) = deployment
        .provider
        .endpoint_base(deployment.api_base.as_deref())
    {
        native = native.api_base(base);
    }
    if let Some(key) = &deployment.api_key {
        native = native.api_key(key.expose());
    } else if let Some(token) = &deployment.native.azure_ad_token {
        // LiteLLM's order: the key when there is one, else the token.
        native = native.bearer_token(token.expose());
    }
    if let Some(version) = &deployment.native.api_version {
        native = native.api_version(version.clone());
    }
    if let Some(max_tokens) = crate::pricing::max_output_tokens(config, deployment) {
        native = native.default_max_tokens(max_tokens);
    }
    for (name, value) in &extra_headers(deployment, path)? {
        let Ok(value) = value.to_str() else { continue };
        native = native.header(name.as_str(), value);
    }
    let invalid = |e: tollgate_providers::InvalidConfig| BuildError {
        path: path("api_base"),
        message: e.to_string(),
    };
    Ok(match deployment.provider {
        Provider::VertexAi => {
            let params = &deployment.native;
            if let Some(project) = &params.vertex_project {
                native = native.vertex_project(project.clone());
            }
            if let Some(location) = &params.vertex_location {
                native = native.vertex_location(location.clone());
            }
            if let Some(credentials) = &params.vertex_credentials {
                native = native.vertex_credentials(credentials.expose());
            }
            let layer = Vertex::layer(&native).map_err(|e| BuildError {
                path: path(vertex_setting(&e)),
                message: e.to_string(),
            })?;
            NativeDeployment::Vertex(layer.layer(client.clone()))
        }
        Provider::Anthropic => NativeDeployment::Anthropic(
            Anthropic::layer(&native)
                .map_err(invalid)?
                .layer(client.clone()),
        ),
        Provider::Gemini => NativeDeployment::Gemini(
            Gemini::layer(&native)
                .map_err(invalid)?
                .layer(client.clone()),
        ),
        Provider::Bedrock => NativeDeployment::Bedrock(
            Bedrock::layer(&bedrock_params(native, deployment))
                .map_err(|e| BuildError {
                    path: path(bedrock_setting(&e)),
                    message: e.to_string(),
                })?
                .layer(client.clone()),
        ),
        _ => {
            let native = native.deployment(deployment.upstream_model.clone());
            NativeDeployment::Azure(
                Azure::layer(&native)
                    .map_err(invalid)?
                    .layer(client.clone()),
            )
        }
    })
}

/// Bedrock's `litellm_params` on top of the common ones: the AWS
/// credentials and region, and `aws_bedrock_runtime_endpoint` (where
/// LiteLLM reads a Bedrock endpoint of its own) unless `api_base` is set.
fn bedrock_params(mut native: ProviderConfig, deployment: &DeploymentConfig) -> ProviderConfig {
    let params = &deployment.native;
    if let (Some(key_id), Some(secret)) = (&params.aws_access_key_id, &params.aws_secret_access_key)
    {
        native = native.aws_credentials(key_id.expose(), secret.expose());
    }
    if let Some(token) = &params.aws_session_token {
        native = native.aws_session_token(token.expose());
    }
    if let Some(region) = &params.aws_region_name {
        native = native.aws_region(region.clone());
    }
    if let Some(endpoint) = &params.aws_bedrock_runtime_endpoint
        && deployment.api_base.is_none()
    {
        native = native.api_base(endpoint.clone());
    }
    native
}

/// The `litellm_params` key a Bedrock configuration error is about.
fn bedrock_setting(error: &tollgate_providers::InvalidConfig) -> &'static str {
    let text = error.to_string();
    [
        "aws_region_name",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    ]
    .into_iter()
    .find(|key| text.starts_with(key))
    .unwrap_or("api_base")
}

/// The `litellm_params` key a Vertex AI configuration error is about.
fn vertex_setting(error: &tollgate_providers::InvalidConfig) -> &'static str {
    let message = error.to_string();
    ["vertex_credentials", "vertex_project", "vertex_location"]
        .into_iter()
        .find(|key| message.contains(key))
        .unwrap_or("api_base")
}
