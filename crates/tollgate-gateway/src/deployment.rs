//! A deployment as the gateway serves it: its target, its provider and
//! its deadlines; [`Groups`]: every model group's deployments, balanced.

use std::sync::Arc;

use tollgate_breaker::BreakerConfig;
use tollgate_core::Valid;
use tollgate_core::extensions::Target;
use tollgate_openrouter::OpenRouter;

use crate::deadlines::Timeouts;
use crate::learned::StreamTimings;
use crate::mock::MockDeployment;
use crate::upstream::{Endpoint, UpstreamClient};

/// Every model group, by name; shared by the HTTP edge (unknown models) and
/// the balancer. A pick puts the chosen [`Deployment`] in the request.
pub(crate) type Groups = tollgate_balance::Groups<Arc<Deployment>>;

/// One deployment of the `model_list`, built.
pub(crate) struct Deployment {
    pub(crate) target: Target,
    /// Whether a circuit breaker guards it (`cooldown_time: 0` turns it off).
    pub(crate) breaker_enabled: bool,
    /// Its breaker's settings, registered when the gateway is built (or
    /// reloaded: see [`apply_breakers`](crate::build::apply_breakers)).
    pub(crate) breaker: Option<Valid<BreakerConfig>>,
    pub(crate) provider: DeploymentProvider,
    /// An `openai/` deployment: OpenAI's own API, which serves
    /// `/v1/responses` (sent as the client wrote it, see
    /// `native_responses`).
    pub(crate) openai_responses: bool,
    /// Deadlines of a non-streaming request.
    pub(crate) timeouts: Timeouts,
    /// Deadlines of a streaming request, before any is learned.
    pub(crate) stream_timeouts: Timeouts,
    /// How its streams have gone: their learned deadlines.
    pub(crate) timings: Arc<StreamTimings>,
    /// Whether its streams get the learned deadlines
    /// (`tollgate.learn_stream_deadlines`) or only the cold ones.
    pub(crate) learn_stream_deadlines: bool,
}

/// An OpenRouter deployment: the normalizer over the pooled client.
pub(crate) struct OpenRouterDeployment {
    pub(crate) service: OpenRouter<UpstreamClient>,
    /// The deployment's `extra_headers`.
    pub(crate) headers: http::HeaderMap,
}

/// A deployment of a provider with its own API, through its translation
/// layer (`tollgate-providers`) over the pooled client.
pub(crate) enum NativeDeployment {
    /// Anthropic's Messages API.
    Anthropic(
        tollgate_providers::Provider<UpstreamClient, tollgate_providers::anthropic::Anthropic>,
    ),
    /// Azure OpenAI's deployment URLs and keys.
    Azure(tollgate_providers::Provider<UpstreamClient, tollgate_providers::azure::Azure>),
    /// Vertex AI: Gemini and Claude models, with a service account's token.
    Vertex(tollgate_providers::vertex::VertexService<UpstreamClient>),
    /// Google's Gemini API (AI Studio).
    Gemini(tollgate_providers::Provider<UpstreamClient, tollgate_providers::gemini::Gemini>),
    /// AWS Bedrock's Converse API, signed with SigV4.
    Bedrock(tollgate_providers::Provider<UpstreamClient, tollgate_providers::bedrock::Bedrock>),
}

/// How a deployment is reached.
pub(crate) enum DeploymentProvider {
    /// A plain OpenAI-compatible upstream.
    Http(Arc<Endpoint>),
    /// OpenRouter, through its normalizer.
    OpenRouter(Box<OpenRouterDeployment>),
    /// A provider with its own API, translated.
    Native(Box<NativeDeployment>),
    Mock(MockDeployment),
    /// A deployment that cannot take traffic (see
    /// [`DeploymentConfig::disabled`](crate::config::DeploymentConfig::disabled)):
    /// it fails at once, as unavailable, so the cascade moves on.
    Disabled(Arc<str>),
}
